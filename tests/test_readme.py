import re

from conftest import REPO


def _quick_start_commands():
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.+?)\n```", section)


def test_quick_start_is_two_commands_and_ci_runs_the_test_one_verbatim():
    install_and_train, install_and_test = _quick_start_commands()
    assert install_and_train == "pip install -e . && python -m iclrec_tf.fit --dataset toys"
    ci_lines = (REPO / ".ci" / "run").read_text().strip().splitlines()
    assert ci_lines[-1] == install_and_test
    assert "ruff check ." in ci_lines


def test_the_site_home_page_has_the_same_quick_start():
    home = (REPO / "docs" / "index.md").read_text()
    section = home.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    assert re.findall(r"```bash\n(.+?)\n```", section) == _quick_start_commands()


def test_every_fit_flag_is_documented_in_the_training_guide():
    from iclrec_tf.fit import build_parser

    guide = (REPO / "docs" / "training.md").read_text()
    table = guide.split("## Every flag", 1)[1].split("\n## ", 1)[0]
    flags = {option for action in build_parser()._actions for option in action.option_strings
             if option.startswith("--") and option not in ("--help",)}
    missing = {flag for flag in flags if f"`{flag.replace('--no-', '--')}`" not in table}
    assert not missing


def test_the_results_table_is_the_reports_compact_form():
    """The README's results are the report's, as drawn from the committed records."""
    report = (REPO / "docs" / "paper" / "table1.md").read_text()
    compact = report.split("## Compact form", 1)[1].split("\n\n", 2)[1]
    assert compact.startswith("| model |")
    assert compact in (REPO / "README.md").read_text()

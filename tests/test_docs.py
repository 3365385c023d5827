"""The README and the guides stay true: their commands parse, their links resolve.

Every command of this project's own command lines (`python -m iclrec_tf.*`, `python
pipelines/*.py`, `python benchmarks/*.py`) in a shell code block of README.md or a
page under docs/ is parsed by the real parser of that command line. Other tools'
commands (pip, tensorboard, docker, curl) are left alone. `mkdocs build --strict`
(.ci/run) checks the site's links; the README is not part of the site, so every
relative link of every page is checked here too, its anchor included.
"""

import argparse
import contextlib
import importlib
import importlib.util
import io
import re
import shlex
import sys

import pytest
from conftest import REPO

from iclrec_tf import cli
from iclrec_tf.errors import UserError

PAGES = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
SHELL_BLOCK = re.compile(r"^```(?:bash|sh|shell|console)\n(.*?)^```", re.MULTILINE | re.DOTALL)
ANY_BLOCK = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)
SHELL_OPERATORS = {"&&", "||", ";", "|", "&", "(", ")"}
ENVIRONMENT_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")


def _relative(path):
    return path.relative_to(REPO).as_posix()


def _is_complete(line):
    """Whether a shell line ends outside quotes."""
    try:
        shlex.split(line, comments=True)
    except ValueError:  # "No closing quotation": the quote goes on on the next line
        return False
    return True


def _shell_lines(text):
    """`(line number, logical line)` of each shell code block's lines, with
    backslash continuations and quotes open across lines joined onto the line they
    start on."""
    for block in SHELL_BLOCK.finditer(text):
        first_line = text.count("\n", 0, block.start(1)) + 1
        pending, start = "", None
        for offset, line in enumerate(block.group(1).splitlines()):
            if start is None:
                start = first_line + offset
            if line.endswith("\\"):
                pending += line[:-1] + " "
                continue
            if not _is_complete(pending + line):
                pending += line + "\n"
                continue
            yield start, pending + line
            pending, start = "", None
        assert not pending, f"a shell block's last line goes on: {pending!r}"


def _own_commands(line):
    """The argument lists of our own command lines in one shell line: `(what, args)`,
    where `what` is `iclrec_tf.<module>` or a script path relative to the repository."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    tokens, command = list(lexer), []
    for token in [*tokens, ";"]:
        if token not in SHELL_OPERATORS:
            command.append(token)
            continue
        while command and ENVIRONMENT_ASSIGNMENT.match(command[0]):
            command = command[1:]
        if len(command) >= 3 and command[0] in ("python", "python3"):
            if command[1] == "-m" and command[2].split(".")[0] == "iclrec_tf":
                yield command[2], command[3:]
            elif command[1].startswith(("pipelines/", "benchmarks/")):
                yield command[1], command[2:]
        command = []


def documented_commands():
    commands = []
    for page in PAGES:
        for number, line in _shell_lines(page.read_text()):
            for what, args in _own_commands(line):
                commands.append(pytest.param(page, number, line, what, args,
                                             id=f"{_relative(page)}:{number}"))
    return commands


class _ParserFound(Exception):
    def __init__(self, parser):
        super().__init__()
        self.parser = parser


def _parser_of_main(main):
    """The parser `main()` builds: caught at its `parse_args`, before any work."""
    original = argparse.ArgumentParser.parse_args

    def catch(parser, *args, **kwargs):
        raise _ParserFound(parser)

    argparse.ArgumentParser.parse_args = catch
    try:
        main()
    except _ParserFound as found:
        return found.parser
    finally:
        argparse.ArgumentParser.parse_args = original
    raise AssertionError(f"{main.__module__}.main() never parsed its arguments")


def _load_script(path):
    """A script under pipelines/ or benchmarks/ as a module (not run as __main__);
    its folder is on sys.path while it loads, as it is when Python runs it."""
    spec = importlib.util.spec_from_file_location(f"documented_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(path.parent))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(path.parent))
    return module


def real_parser(what):
    """The parser of `python -m <what>` or `python <what>`: its module's
    `build_parser()`, that of the module its `main` comes from (pipelines/prepare.py
    runs `iclrec_tf.prepare.cli`'s), else the one its `main()` builds."""
    if what.startswith("iclrec_tf"):
        module = importlib.import_module(what)
    else:
        path = REPO / what
        assert path.is_file(), f"{what} does not exist"
        module = _load_script(path)
    if hasattr(module, "build_parser"):
        return module.build_parser()
    assert hasattr(module, "main"), f"{what} has neither build_parser() nor main()"
    home = sys.modules.get(module.main.__module__)
    if home is not module and hasattr(home, "build_parser"):
        return home.build_parser()
    return _parser_of_main(module.main)


COMMANDS = documented_commands()


def test_the_command_check_sees_the_documented_commands():
    seen = {(_relative(page), what) for page, _, _, what, _ in (c.values for c in COMMANDS)}
    assert ("README.md", "iclrec_tf.fit") in seen
    assert ("docs/training.md", "iclrec_tf.sweep") in seen
    assert ("docs/reproducing.md", "benchmarks/learning_curve.py") in seen
    assert ("docs/serving.md", "benchmarks/serve_latency.py") in seen


def test_the_command_check_reads_shell_lines_as_a_shell_would():
    line = ("TF_CONFIG='{\"task\": 0}' python -m iclrec_tf.fit --dataset toys & "
            "python benchmarks/ablation_table.py runs/a-*   # the table so far")
    assert list(_own_commands(line)) == [
        ("iclrec_tf.fit", ["--dataset", "toys"]),
        ("benchmarks/ablation_table.py", ["runs/a-*"])]
    assert list(_own_commands("pip install -e . && python -m pytest")) == []
    text = "```bash\npython -m iclrec_tf.fit \\\n  --epochs 5\n```\n"
    assert list(_shell_lines(text)) == [(2, "python -m iclrec_tf.fit    --epochs 5")]


def command_error(what, args):
    """Why `args` do not parse with the real parser of `what`, or None. A flag must
    be written whole: argparse would take `--epoch` for `--epochs`, a reader might
    not. A `fit` command's settings must also make a valid `TrainConfig`, as `fit`
    checks them before it reads any file."""
    parser = real_parser(what)
    errors = io.StringIO()
    try:
        with contextlib.redirect_stderr(errors), contextlib.redirect_stdout(io.StringIO()):
            parsed = parser.parse_args(args)
    except SystemExit as exit_:
        if exit_.code not in (0, None):  # 0: --help
            return errors.getvalue().strip()
        return None
    flags = {arg.split("=", 1)[0] for arg in args if arg.startswith("--")}
    abbreviated = sorted(flags - set(parser._option_string_actions))
    if abbreviated:
        return f"abbreviated flags: {', '.join(abbreviated)}"
    if what == "iclrec_tf.fit":
        try:
            cli.config_from_flags(parsed)
        except UserError as error:
            return str(error)
    return None


def test_the_command_check_fails_unknown_and_abbreviated_flags():
    assert "unrecognized arguments: --epochz" in command_error("iclrec_tf.fit",
                                                               ["--epochz", "5"])
    assert command_error("iclrec_tf.fit", ["--epoch", "5"]) == "abbreviated flags: --epoch"
    assert "invalid choice" in command_error("iclrec_tf.fit", ["--strategy", "mirror"])
    assert "--preset must be one of" in command_error("iclrec_tf.fit", ["--preset", "plsu"])
    assert command_error("iclrec_tf.fit", ["--dataset", "toys", "--epochs", "5"]) is None


@pytest.mark.parametrize("page, number, line, what, args", COMMANDS)
def test_documented_command_parses(page, number, line, what, args):
    error = command_error(what, args)
    assert error is None, f"{_relative(page)}:{number}: `{line.strip()}`: {error}"


def _slug(heading):
    """The anchor MkDocs (Python-Markdown's toc) and GitHub give a heading."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).replace("`", "")
    text = re.sub(r"[^\w\s-]", "", text).strip().lower()
    return re.sub(r"[-\s]+", "-", text)


def _anchors(page):
    text = ANY_BLOCK.sub("", page.read_text())
    return {_slug(match) for match in re.findall(r"^#+ (.+)$", text, re.MULTILINE)}


def _links(page):
    """`(line number, target)` of each Markdown link and image outside code."""
    text = ANY_BLOCK.sub(lambda block: "\n" * block.group(0).count("\n"), page.read_text())
    text = re.sub(r"`[^`\n]*`", "", text)
    for match in re.finditer(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)", text):
        yield text.count("\n", 0, match.start()) + 1, match.group(1)


def broken_links(page):
    """`file:line: target: why` of each relative link of `page` that does not resolve."""
    broken = []
    for number, target in _links(page):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        destination = (page.parent / path).resolve() if path else page
        where = f"{page.name}:{number}: {target}"
        if not destination.exists():
            broken.append(f"{where}: no such file")
        elif anchor and destination.suffix == ".md" and anchor not in _anchors(destination):
            broken.append(f"{where}: no such heading")
    return broken


@pytest.mark.parametrize("page", PAGES, ids=_relative)
def test_relative_links_resolve(page):
    broken = broken_links(page)
    assert not broken, "\n".join(broken)


def test_the_link_check_finds_missing_files_and_headings(tmp_path):
    (tmp_path / "guide.md").write_text("# A guide\n\n## Sweeps: a queue of runs\n")
    page = tmp_path / "page.md"
    page.write_text("[ok](guide.md#sweeps-a-queue-of-runs) [web](https://example.org/x)\n"
                    "`[in code](nowhere.md)`\n\n```\n[in a block](nowhere.md)\n```\n"
                    "[gone](missing.md) ![plot](guide.md#no-such-heading)\n")
    assert broken_links(page) == ["page.md:7: missing.md: no such file",
                                  "page.md:7: guide.md#no-such-heading: no such heading"]


def test_the_link_check_sees_links_and_headings():
    readme_links = dict(_links(REPO / "README.md")).values()
    assert "docs/training.md" in readme_links
    assert "several-devices-and-workers" in _anchors(REPO / "docs" / "training.md")
    assert _slug("ICLRec+") == "iclrec" and _slug("Sweeps: a queue of runs") == \
        "sweeps-a-queue-of-runs"

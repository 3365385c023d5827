"""The package's layout: subsystems import one way, and preparation needs no TensorFlow."""

import ast
import subprocess
import sys

from conftest import REPO

PACKAGE = REPO / "iclrec_tf"
SHARED = {"iclrec_tf", "errors", "files", "config", "cli"}
# What each subsystem may import besides the shared modules: the stages before it.
ALLOWED = {
    "prepare": {"data"},  # the dataset and vocabulary formats it writes
    "data": set(),
    "model": set(),
    "serve": {"model"},
    "train": {"data", "model", "serve"},
}


def _imports(path):
    """The `iclrec_tf` modules `path` imports, as their first component after `iclrec_tf`."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names
                                     if node.module == "iclrec_tf"]
        found |= {name.split(".")[1] if "." in name else "iclrec_tf" for name in names
                  if name == "iclrec_tf" or name.startswith("iclrec_tf.")}
    return found


def test_each_subsystem_imports_only_the_stages_before_it():
    violations = []
    for subsystem, allowed in ALLOWED.items():
        for path in (PACKAGE / subsystem).glob("*.py"):
            imported = _imports(path) - SHARED - {subsystem} - allowed
            violations += [f"{path.relative_to(REPO)} imports iclrec_tf.{name}"
                           for name in sorted(imported)]
    assert violations == []


def test_shared_modules_import_no_subsystem():
    for name in SHARED - {"iclrec_tf", "cli"}:
        assert _imports(PACKAGE / f"{name}.py") <= SHARED, name
    # The CLI plumbing is shared by `pipelines/prepare.py`: no subsystem either.
    assert _imports(PACKAGE / "cli.py") <= SHARED


def _loads_tensorflow(code):
    result = subprocess.run([sys.executable, "-c", code + "\nimport sys\n"
                             "print(sorted(m for m in sys.modules if m.split('.')[0] in "
                             "('tensorflow', 'tf_keras', 'keras')))"],
                            capture_output=True, text=True, cwd=REPO, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout.strip().splitlines()[-1]


def test_preparing_data_loads_no_tensorflow():
    modules = "logs query duckdb_engine spark_engine write run cli".split()
    code = "\n".join(f"import iclrec_tf.prepare.{name}" for name in modules)
    assert _loads_tensorflow(code) == "[]"


def test_prepare_script_help_loads_no_tensorflow():
    code = ("import runpy, sys\nsys.argv = ['prepare.py', '--help']\n"
            "try:\n    runpy.run_path('pipelines/prepare.py', run_name='__main__')\n"
            "except SystemExit as exit:\n    assert exit.code == 0\n")
    assert _loads_tensorflow(code) == "[]"


def test_the_checker_sees_a_forbidden_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("from iclrec_tf.train.run import train\nimport iclrec_tf.model.tasks\n")
    assert _imports(bad) == {"train", "model"}

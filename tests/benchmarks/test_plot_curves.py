"""benchmarks/plot_curves.py, run as a user would: its PNG, its JSON line, its errors."""

import csv
import json
import os
import struct
import subprocess
import sys

import pytest
from conftest import REPO

SCRIPT = REPO / "benchmarks" / "plot_curves.py"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# The script's figure: 10 x 4 inches at 100 dpi.
EXPECTED_PIXELS = (1000, 400)
COLUMNS = ["epoch", "loss", "rec_loss", "val_HR@20", "val_NDCG@20"]
# (val_NDCG@20, val_HR@20) after epochs 1, 2, ...
TOYS_CURVE = [(0.0017, 0.0046), (0.0031, 0.0090), (0.0030, 0.0088)]
BEAUTY_CURVE = [(0.0011, 0.0035), (0.0019, 0.0052), (0.0024, 0.0061), (0.0041, 0.0077)]


def write_history(run_dir, curve, columns=COLUMNS):
    """A CSVLogger-like history.csv: epochs from 0, metrics in alphabetical order."""
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / "history.csv", "w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        for epoch, (ndcg, hr) in enumerate(curve):
            writer.writerow({"epoch": epoch, "loss": 9.5 - epoch, "rec_loss": 1.3,
                             "val_HR@20": hr, "val_NDCG@20": ndcg})
    return run_dir


def plot(*arguments):
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, arguments)],
                          capture_output=True, text=True, cwd=REPO, timeout=300)


def png_size(data):
    """(width, height) from the IHDR chunk, the first after the signature."""
    length, chunk_type, width, height = struct.unpack(">I4sII", data[8:24])
    assert (length, chunk_type) == (13, b"IHDR")
    return width, height


@pytest.fixture
def run_dirs(tmp_path):
    toys = write_history(tmp_path / "runs" / "toys", TOYS_CURVE)
    # Not the epoch of the highest NDCG@20, so that the report shows metrics.json is read.
    (toys / "metrics.json").write_text(json.dumps({"best_epoch": 1, "epochs_trained": 3}))
    beauty = write_history(tmp_path / "runs" / "beauty", BEAUTY_CURVE)
    return toys, beauty


def test_plot_curves_writes_a_png_and_reports_each_run(run_dirs, tmp_path):
    out = tmp_path / "curves.png"
    result = plot(*run_dirs, "--out", out, "--title", "two runs")
    assert result.returncode == 0, result.stderr
    data = out.read_bytes()
    assert data.startswith(PNG_SIGNATURE)
    assert png_size(data) == EXPECTED_PIXELS
    assert len(data) < 100_000
    assert json.loads(result.stdout.splitlines()[-1]) == {"out": str(out), "runs": {
        "toys": {"epochs": 3, "best_val_NDCG@20": 0.0017, "best_epoch": 1},
        "beauty": {"epochs": 4, "best_val_NDCG@20": 0.0041, "best_epoch": 4},
    }}


def test_plot_curves_no_reference_leaves_the_reference_out(run_dirs, tmp_path):
    with_reference, without = tmp_path / "with.png", tmp_path / "without.png"
    assert plot(*run_dirs, "--out", with_reference).returncode == 0
    result = plot(*run_dirs, "--out", without, "--no-reference")
    assert result.returncode == 0, result.stderr
    # Agg draws the same figure to the same bytes: a difference is the reference line.
    assert png_size(without.read_bytes()) == EXPECTED_PIXELS
    assert without.read_bytes() != with_reference.read_bytes()


def history_without_ndcg(run_dir):
    return write_history(run_dir, TOYS_CURVE, [c for c in COLUMNS if c != "val_NDCG@20"])


def history_with_a_word(run_dir):
    write_history(run_dir, TOYS_CURVE)
    lines = (run_dir / "history.csv").read_text().splitlines()
    lines[2] = lines[2].replace("0.0031", "oops")
    (run_dir / "history.csv").write_text("\n".join(lines) + "\n")
    return run_dir


@pytest.mark.parametrize("make_bad_run, named_file, named_line", [
    (lambda run_dir: run_dir.mkdir(), "history.csv", None),
    (lambda run_dir: None, None, None),
    (history_without_ndcg, "history.csv", None),
    (history_with_a_word, "history.csv", "line 3"),
], ids=["no-history", "no-directory", "no-ndcg-column", "not-a-number"])
def test_plot_curves_rejects_bad_input_with_one_line(run_dirs, tmp_path, make_bad_run,
                                                     named_file, named_line):
    bad_run = tmp_path / "runs" / "bad"
    make_bad_run(bad_run)
    out = tmp_path / "curves.png"
    result = plot(run_dirs[0], bad_run, "--out", out)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    (line,) = result.stderr.splitlines()
    assert line.startswith("plot_curves.py: error: ")
    assert str(bad_run / named_file if named_file else bad_run) in line
    if named_line:
        assert named_line in line
    assert not out.exists()
    assert list(tmp_path.glob(".curves.png*")) == []


def test_plot_curves_without_matplotlib_says_how_to_install_it(run_dirs, tmp_path):
    shadow = tmp_path / "shadow" / "matplotlib"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('shadowed by the test')\n")
    out = tmp_path / "curves.png"
    result = subprocess.run([sys.executable, str(SCRIPT), str(run_dirs[0]), "--out", str(out)],
                            capture_output=True, text=True, cwd=REPO, timeout=300,
                            env={**os.environ, "PYTHONPATH": str(shadow.parent)})
    assert result.returncode == 2
    assert result.stderr == (
        'plot_curves.py: error: matplotlib is missing; pip install -e ".[plots]"\n')
    assert not out.exists()

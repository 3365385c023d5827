"""benchmarks/memory_phases.py, run as a user would, on a small synthetic dataset."""

import json
import subprocess
import sys

import pytest
from conftest import REPO, synthetic_sequences, write_dataset

SCRIPT = REPO / "benchmarks" / "memory_phases.py"
PHASES = ["import_mb", "prepared_mb", "estep_mb", "first_step_mb", "steps_mb"]

pytestmark = pytest.mark.heavy


def test_each_phase_is_measured_and_the_peak_bounds_them(tmp_path):
    # `--preset plus` would skip intents for 10 epochs: the benchmark still has its E-step.
    path = write_dataset(tmp_path / "d.txt", synthetic_sequences(num_users=80, num_items=25))
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--dataset", str(path), "--preset", "plus",
         "--num-intent-clusters", "4", "--num-blocks", "1", "--batch-size", "16",
         "--threads", "1"],
        capture_output=True, text=True, cwd=REPO, timeout=600)
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout.splitlines()[-1])
    assert list(figures) == [*PHASES, "peak_rss_mb", "train_graph_ops"]
    # TensorFlow alone takes hundreds of megabytes; a phase can only add to a peak.
    assert figures["import_mb"] > 100
    assert figures["peak_rss_mb"] >= max(figures[phase] for phase in PHASES) - 1
    assert figures["train_graph_ops"] > 100


def test_a_run_without_intents_has_no_e_step_phase(tmp_path):
    path = write_dataset(tmp_path / "d.txt", synthetic_sequences(num_users=40, num_items=25))
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--dataset", str(path), "--contrast-type", "none",
         "--num-blocks", "1", "--batch-size", "16", "--threads", "1"],
        capture_output=True, text=True, cwd=REPO, timeout=600)
    assert result.returncode == 0, result.stderr
    assert "estep_mb" not in json.loads(result.stdout.splitlines()[-1])

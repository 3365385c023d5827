"""benchmarks/train_speed.py, run as a user would, on a small synthetic dataset."""

import json
import subprocess
import sys

import pytest
from conftest import REPO, synthetic_sequences, write_dataset

SCRIPT = REPO / "benchmarks" / "train_speed.py"
FIGURES = {"step_s", "estep_s", "eval_s", "epoch_s", "peak_rss_mb"}

pytestmark = pytest.mark.heavy


def test_the_measured_epoch_of_the_plus_preset_has_its_e_step(tmp_path):
    # `--preset plus` warms up for 10 epochs without intents; the benchmark's
    # second epoch must still be a steady-state one, E-step included.
    path = write_dataset(tmp_path / "d.txt", synthetic_sequences(num_users=80, num_items=25))
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--dataset", str(path), "--preset", "plus",
         "--num-intent-clusters", "4", "--num-blocks", "1", "--batch-size", "16",
         "--threads", "1"],
        capture_output=True, text=True, cwd=REPO, timeout=600)
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout.splitlines()[-1])
    assert set(figures) == FIGURES
    assert figures["estep_s"] > 0
    assert figures["epoch_s"] >= figures["estep_s"] + figures["eval_s"]
    assert 0 < figures["step_s"] < figures["epoch_s"]

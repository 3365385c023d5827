"""benchmarks/train_speed.py, run as a user would, on a small synthetic dataset."""

import pytest
from conftest import run_benchmark

pytestmark = pytest.mark.heavy


def test_the_measured_epoch_of_the_plus_preset_has_its_e_step(tmp_path):
    # `--preset plus` warms up for 10 epochs without intents; the benchmark's
    # second epoch must still be a steady-state one, E-step included.
    figures = run_benchmark("train_speed.py", tmp_path, "--preset", "plus")
    assert set(figures) == {"step_s", "train_s", "estep_s", "eval_s", "epoch_s",
                            "peak_rss_mb"}
    assert figures["estep_s"] > 0
    assert figures["epoch_s"] >= figures["estep_s"] + figures["eval_s"]
    assert 0 < figures["step_s"] < figures["train_s"] < figures["epoch_s"]

"""benchmarks/analysis_cost.py, run as a user would on a small trained run."""

import json
import subprocess
import sys

import pytest
from conftest import REPO

pytestmark = pytest.mark.heavy


def test_it_times_each_analysis_against_a_plain_evaluation(toys_run, data_dir):
    run_dir, _ = toys_run
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "analysis_cost.py"), "--run", str(run_dir),
         "--data-dir", str(data_dir), "--threads", "1", "--repeats", "1"],
        capture_output=True, text=True, cwd=REPO, timeout=900)
    assert result.returncode == 0, result.stderr[-2000:]
    figures = json.loads(result.stdout.splitlines()[-1])
    assert (figures["users"], figures["noise_ratio"]) == (5000, 0.2)
    for name in ("evaluate_s", "by_length_s", "noise_inputs_s", "noise_s"):
        assert figures[name] > 0
    # the noisy evaluation draws its inputs, then evaluates
    assert figures["noise_s"] > figures["noise_inputs_s"]
    assert figures["noise_per_evaluate"] == pytest.approx(
        figures["noise_s"] / figures["evaluate_s"], abs=0.01)

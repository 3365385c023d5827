"""benchmarks/first_step.py, run as a user would, on a small synthetic dataset."""

import pytest
from conftest import run_benchmark

pytestmark = pytest.mark.heavy


def test_the_first_step_of_the_plus_preset_follows_its_e_step(tmp_path):
    # Without `report.STEADY_STATE`, `--preset plus` would skip the E-step of epoch 0.
    figures = run_benchmark("first_step.py", tmp_path, "--preset", "plus")
    assert set(figures) == {"prepare_s", "estep_s", "first_step_s", "step_s", "trace_s"}
    assert figures["estep_s"] > 0
    # The first step pays for tracing: it is slower than the later ones, by trace_s.
    assert figures["first_step_s"] > figures["step_s"] > 0
    assert figures["trace_s"] == pytest.approx(figures["first_step_s"] - figures["step_s"],
                                               abs=0.02)

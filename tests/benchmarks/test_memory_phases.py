"""benchmarks/memory_phases.py, run as a user would, on a small synthetic dataset."""

import pytest
from conftest import run_benchmark

PHASES = ["import_mb", "prepared_mb", "estep_mb", "first_step_mb", "steps_mb"]

pytestmark = pytest.mark.heavy


def test_each_phase_is_measured_and_the_peak_bounds_them(tmp_path):
    # `--preset plus` would skip intents for 10 epochs: the benchmark still has its E-step.
    figures = run_benchmark("memory_phases.py", tmp_path, "--preset", "plus")
    assert list(figures) == [*PHASES, "peak_rss_mb", "library_mb", "train_graph_ops"]
    # TensorFlow alone takes hundreds of megabytes; a phase can only add to a peak.
    assert figures["import_mb"] > 100
    assert figures["peak_rss_mb"] >= max(figures[phase] for phase in PHASES) - 1
    assert figures["train_graph_ops"] > 100
    # TensorFlow's shared libraries are resident, and are only a part of the whole.
    assert 50 < figures["library_mb"] < figures["steps_mb"]


def test_a_run_without_intents_has_no_e_step_phase(tmp_path):
    figures = run_benchmark("memory_phases.py", tmp_path, "--contrast-type", "none",
                            num_users=40)
    assert "estep_mb" not in figures

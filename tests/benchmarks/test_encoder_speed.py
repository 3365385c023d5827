"""benchmarks/encoder_speed.py, run as a user would, on a small synthetic dataset."""

import sys

import pytest
from conftest import REPO, run_benchmark

pytestmark = pytest.mark.heavy


def test_the_encoders_take_turns_forwards_then_backwards():
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        from encoder_speed import interleaved
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    assert interleaved(["a", "b", "c"], 3) == [
        (0, "a"), (0, "b"), (0, "c"), (1, "c"), (1, "b"), (1, "a"),
        (2, "a"), (2, "b"), (2, "c")]


def test_each_encoder_gets_an_epoch_a_peak_and_its_ratios_to_the_default_and_the_peer(
        tmp_path):
    """The default and the non-causal encoder, beside a stand-in peer that prints a fixed
    epoch: the ratios are theirs over the default's and over the peer's."""
    peer = tmp_path / "peer.py"
    peer.write_text("import json\nprint('training...')\n"
                    "print(json.dumps({'seconds': 1000.0, 'peak_rss_mb': 900}))\n")
    figures = run_benchmark("encoder_speed.py", tmp_path, "--repeats", "1",
                            "--encoders", "attention,fourier",
                            "--peer", f"{sys.executable} {peer}")
    assert list(figures) == ["attention", "fourier", "peer"]
    assert figures["peer"] == {"epoch_s": 1000.0, "peak_rss_mb": 900}
    for name in ("attention", "fourier"):
        values = figures[name]
        assert set(values) == {"epoch_s", "train_s", "step_s", "peak_rss_mb", "samples",
                               "epoch_ratio", "peak_ratio", "train_ratio_to_peer"}
        assert 0 < values["step_s"] < values["train_s"] < values["epoch_s"]
        assert values["peak_rss_mb"] > 100
        assert values["samples"] == ("prefixes" if name == "fourier" else "users")
        assert values["train_ratio_to_peer"] == round(values["train_s"] / 1000.0, 3)
    assert figures["attention"]["epoch_ratio"] == figures["attention"]["peak_ratio"] == 1.0
    # The prefixes of the non-causal encoder make more steps in its epoch.
    assert figures["fourier"]["epoch_ratio"] > 1.0

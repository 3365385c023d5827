"""benchmarks/encoder_speed.py, run as a user would, on a small synthetic dataset."""

import sys

import pytest
from conftest import REPO, run_benchmark

from iclrec_tf.config import ENCODERS

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


def test_every_encoder_gets_an_epoch_and_a_peak_against_the_default(tmp_path):
    figures = run_benchmark("encoder_speed.py", tmp_path, "--repeats", "1")
    assert list(figures) == list(ENCODERS)
    for name, values in figures.items():
        assert set(values) == {"epoch_s", "train_s", "step_s", "peak_rss_mb", "samples",
                               "epoch_ratio", "peak_ratio"}
        assert 0 < values["step_s"] < values["train_s"] < values["epoch_s"]
        assert values["peak_rss_mb"] > 100
        assert values["samples"] == ("prefixes" if name == "fourier" else "users")
    assert figures["attention"]["epoch_ratio"] == figures["attention"]["peak_ratio"] == 1.0
    # The prefixes of the non-causal encoder make more steps in its epoch.
    assert figures["fourier"]["epoch_ratio"] > 1.0


def test_a_peer_command_takes_its_turn_and_each_encoder_gets_its_ratio(tmp_path):
    """The peer here is a stand-in that prints a fixed epoch: the ratio is ours over it."""
    peer = tmp_path / "peer.py"
    peer.write_text("import json\nprint('training...')\n"
                    "print(json.dumps({'seconds': 1000.0, 'peak_rss_mb': 900}))\n")
    figures = run_benchmark("encoder_speed.py", tmp_path, "--repeats", "1",
                            "--encoders", "attention,filter",
                            "--peer", f"{sys.executable} {peer}")
    assert list(figures) == ["attention", "filter", "peer"]
    assert figures["peer"] == {"epoch_s": 1000.0, "peak_rss_mb": 900}
    for name in ("attention", "filter"):
        assert figures[name]["train_ratio_to_peer"] == round(
            figures[name]["train_s"] / 1000.0, 3)

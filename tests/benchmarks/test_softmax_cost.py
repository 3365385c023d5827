"""benchmarks/softmax_cost.py, run as a user would, on a small synthetic dataset."""

import pytest
from conftest import run_benchmark, synthetic_sequences

pytestmark = pytest.mark.heavy


def test_it_scores_every_real_target_of_one_epoch_against_every_item(tmp_path):
    figures = run_benchmark("softmax_cost.py", tmp_path, "--preset", "plus",
                            "--next-item-loss", "softmax", "--hidden-size", "8",
                            "--num-heads", "1", "--repeats", "2")
    sequences = synthetic_sequences(80, num_items=25)  # the benchmark's dataset
    # A user of n items trains on its first n - 3 inputs (valid and test hold the last
    # two), each with its next item as the target.
    assert figures["targets"] == sum(len(items) - 3 for items in sequences)
    assert figures["items"] == 25 + 2  # the padding and mask ids are in the table
    assert figures["steps"] == 5  # 80 users in batches of 16
    assert figures["gflop"] == pytest.approx(6 * figures["targets"] * 27 * 8 / 1e9, abs=1e-4)
    assert figures["softmax_s"] > 0

import numpy as np
import pytest
from conftest import synthetic_sequences, write_dataset

from iclrec_tf.config import TrainConfig
from iclrec_tf.data.datasets import load_sequences
from iclrec_tf.data.pipeline import SequencePipelines
from iclrec_tf.model.iclrec import build_model
from iclrec_tf.train.analyses import ModelAnalyses, length_groups, metrics_by_group
from iclrec_tf.train.metrics import METRIC_NAMES, RankingEvaluator, ranking_metrics


def test_length_groups_are_named_by_their_lengths_and_hold_every_user_once():
    lengths = np.repeat([2, 4, 5, 9, 10, 19, 20, 60], 100)
    groups = length_groups(lengths)
    assert [name for name, _ in groups] == ["1-4", "5-9", "10-19", "20+"]
    assert [int(members.sum()) for _, members in groups] == [200, 200, 200, 200]
    np.testing.assert_array_equal(sum(members.astype(int) for _, members in groups), 1)


def test_a_group_too_small_for_a_stable_figure_is_merged_into_its_neighbour():
    lengths = np.array([2] * 600 + [6] * 600 + [12] * 100 + [30] * 700)
    groups = length_groups(lengths, min_users=500)
    assert [(name, int(m.sum())) for name, m in groups] == [
        ("1-4", 600), ("5-9", 600), ("10+", 800)]
    # the last group merges backwards
    lengths = np.array([2] * 600 + [6] * 600 + [12] * 600 + [30] * 10)
    assert [name for name, _ in length_groups(lengths, min_users=500)] == [
        "1-4", "5-9", "10+"]
    # nothing small: one group at most
    assert [name for name, _ in length_groups(np.array([3, 7]), min_users=5)] == ["1+"]


def test_the_user_weighted_mean_of_the_groups_is_the_overall_metric():
    rng = np.random.default_rng(0)
    ranks = rng.integers(0, 40, size=3000)
    lengths = rng.integers(2, 60, size=3000)
    groups = metrics_by_group(ranks, length_groups(lengths))
    assert sum(group["users"] for group in groups) == 3000
    overall = ranking_metrics(ranks)
    for name in METRIC_NAMES:
        weighted = sum(group[name] * group["users"] for group in groups) / 3000
        assert weighted == pytest.approx(overall[name], abs=1e-12)


@pytest.fixture(scope="module")
def analyses_setup(tmp_path_factory):
    sequences = synthetic_sequences(num_users=90, num_items=50, seed=2, max_len=40)
    data = load_sequences(write_dataset(tmp_path_factory.mktemp("d") / "d.txt", sequences))
    config = TrainConfig(max_seq_length=12, hidden_size=8, num_blocks=1)
    return data, build_model(config, data.item_size)


def test_clean_analyses_equal_the_evaluator_and_groups_cover_its_users(analyses_setup):
    data, model = analyses_setup
    expected = RankingEvaluator(model, SequencePipelines(data, 12).evaluation("test", 32),
                                "reference", data.mask_id)()
    analyses = ModelAnalyses(model, data, 12, "test", "reference", 16, length_buckets=True)
    assert analyses.metrics() == pytest.approx(expected)
    assert analyses.metrics(0.0, seed=9) == pytest.approx(expected)
    groups = analyses.by_length()
    assert sum(group["users"] for group in groups) == data.num_users
    for name in METRIC_NAMES:
        weighted = sum(g[name] * g["users"] for g in groups) / data.num_users
        assert weighted == pytest.approx(expected[name], abs=1e-9)


def test_noisy_ranks_depend_on_the_seed_only_not_on_batching(analyses_setup):
    data, model = analyses_setup
    ranks = [ModelAnalyses(model, data, 12, "valid", "exclude", batch, buckets).ranks(0.3, 4)
             for batch, buckets in ((7, False), (64, True), (90, False))]
    np.testing.assert_array_equal(ranks[0], ranks[1])
    np.testing.assert_array_equal(ranks[0], ranks[2])
    clean = ModelAnalyses(model, data, 12, "valid", "exclude", 64, True).ranks()
    assert not np.array_equal(ranks[0], clean)

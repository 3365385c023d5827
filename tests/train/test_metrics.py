import math

import numpy as np
import pytest
import tensorflow as tf
from conftest import synthetic_sequences, write_dataset

from iclrec_tf.config import TrainConfig
from iclrec_tf.data.datasets import load_sequences
from iclrec_tf.data.pipeline import SequencePipelines
from iclrec_tf.model.iclrec import build_model
from iclrec_tf.train.metrics import METRIC_NAMES, RankingEvaluator, answer_ranks, ranking_metrics


def _brute_force(scores, answer, history, protocol, mask_id):
    """Sort every candidate; ties are broken in the answer's favour."""
    scores = scores.astype(np.float64).copy()
    candidates = list(range(len(scores)))
    if protocol == "reference":
        scores[list(history)] = 0.0
    else:
        removed = set(history) | {0, mask_id}
        candidates = [i for i in candidates if i not in removed]
        if answer in removed:
            return len(candidates)  # behind every remaining candidate: a miss
    order = sorted(candidates, key=lambda i: (-scores[i], i != answer))
    return order.index(answer)


def _brute_metrics(ranks):
    metrics = {}
    for k in (5, 10, 20):
        metrics[f"HR@{k}"] = np.mean([r < k for r in ranks])
        metrics[f"NDCG@{k}"] = np.mean([1 / math.log2(r + 2) if r < k else 0.0 for r in ranks])
    return metrics


@pytest.mark.parametrize("protocol", ["reference", "exclude"])
def test_ranks_match_a_brute_force_ranking(protocol):
    rng = np.random.default_rng(0)
    batch, item_size = 40, 60
    mask_id = item_size - 1
    scores = rng.standard_normal((batch, item_size)).astype(np.float32)
    scores[:5] = np.abs(scores[:5])  # all positive: a history scored 0 falls to the bottom
    scores[5:10] = -np.abs(scores[5:10])  # all negative: a history scored 0 rises to the top
    histories = [list(rng.choice(np.arange(1, mask_id), rng.integers(1, 15), replace=False))
                 for _ in range(batch)]
    answers = [int(rng.integers(1, mask_id)) for _ in range(batch)]
    answers[3] = histories[3][0]  # a repeat purchase: its answer is in its history
    answers[7] = 0  # the padding id competes too, under the reference protocol
    ranks = answer_ranks(tf.constant(scores), tf.constant(answers),
                         tf.ragged.constant(histories), protocol, mask_id).numpy()
    expected = [_brute_force(scores[u], answers[u], histories[u], protocol, mask_id)
                for u in range(batch)]
    np.testing.assert_array_equal(ranks, expected)
    if protocol == "exclude":
        assert ranks[3] >= 20 and ranks[7] >= 20
    got, want = ranking_metrics(ranks), _brute_metrics(expected)
    assert list(got) == list(METRIC_NAMES)
    for name in METRIC_NAMES:
        assert got[name] == pytest.approx(want[name])


def test_ranking_metrics_by_hand():
    # ranks 0, 4, 9, 19, 30: HR@5 = 2/5; NDCG@5 = (1 + 1/log2(6)) / 5
    metrics = ranking_metrics([0, 4, 9, 19, 30])
    assert metrics["HR@5"] == pytest.approx(0.4)
    assert metrics["NDCG@5"] == pytest.approx((1 + 1 / math.log2(6)) / 5)
    assert metrics["HR@20"] == pytest.approx(0.8)


def test_an_unknown_protocol_is_refused():
    with pytest.raises(ValueError, match="protocol must be"):
        answer_ranks(tf.zeros((1, 3)), tf.constant([1]), tf.ragged.constant([[1]]), "x", 2)


@pytest.mark.parametrize("length_buckets", [False, True])
@pytest.mark.parametrize("protocol", ["reference", "exclude"])
def test_evaluator_over_a_dataset_matches_brute_force(tmp_path, protocol, length_buckets):
    data = load_sequences(write_dataset(tmp_path / "d.txt", synthetic_sequences(num_users=70)))
    model = build_model(TrainConfig(max_seq_length=10, hidden_size=8, num_blocks=1),
                        data.item_size)
    pipelines = SequencePipelines(data, 10)
    evaluator = RankingEvaluator(model, pipelines.evaluation("test", 32, length_buckets),
                                 protocol, data.mask_id)
    metrics = evaluator()
    inputs = np.concatenate([b["input_ids"] for b in pipelines.evaluation("test", 70)])
    scores = model.score_items(tf.constant(inputs)).numpy()
    expected = [_brute_force(scores[u], int(data.sequence(u)[-1]), data.sequence(u)[:-1],
                             protocol, data.mask_id) for u in range(data.num_users)]
    want = _brute_metrics(expected)
    for name in METRIC_NAMES:
        assert metrics[name] == pytest.approx(want[name])

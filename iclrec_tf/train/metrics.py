"""Full-ranking HR@K and NDCG@K, batched in TensorFlow, under two protocols.

- `reference`: every id 0..item_size-1 is a candidate and the user's history
  is scored 0 (not removed), exactly as the reference evaluates; use it to
  compare with published numbers.
- `exclude`: the history, the padding id 0 and the mask id are removed from
  the candidates, as a deployed recommender would.

The rank of the answer is the number of candidates scored strictly higher
(rank 0 is the top). HR@K = [rank < K]; NDCG@K = [rank < K] / log2(rank + 2).
"""

import numpy as np
import tensorflow as tf

TOP_KS = (5, 10, 20)
METRIC_NAMES = tuple(f"{name}@{k}" for k in TOP_KS for name in ("HR", "NDCG"))


def answer_ranks(scores, answers, history, protocol, mask_id):
    """The rank of each answer among the candidates.

    Args:
      scores: [batch, item_size] float scores of every id.
      answers: [batch] the held-out item ids.
      history: [batch, None] ragged ids the user already has.
      protocol: `reference` or `exclude`.
      mask_id: the vocabulary's mask id (`item_size - 1`).

    Returns:
      [batch] int32 ranks, 0 for the top.
    """
    if protocol not in ("reference", "exclude"):
        raise ValueError(f"protocol must be 'reference' or 'exclude', got {protocol!r}")
    history = tf.cast(history, tf.int64)
    positions = tf.stack([history.value_rowids(), history.values], axis=1)
    fill = 0.0 if protocol == "reference" else float("-inf")
    scores = tf.tensor_scatter_nd_update(
        scores, positions, tf.fill(tf.shape(history.values), tf.constant(fill, scores.dtype)))
    if protocol == "exclude":
        ids = tf.range(tf.shape(scores)[1])
        special = (ids == 0) | (ids == mask_id)
        scores = tf.where(special[None, :], tf.constant(float("-inf"), scores.dtype), scores)
    answer_scores = tf.gather(scores, answers, batch_dims=1)
    return tf.reduce_sum(tf.cast(scores > answer_scores[:, None], tf.int32), axis=1)


def ranking_metrics(ranks):
    """`{"HR@5": ..., "NDCG@5": ..., ..., "NDCG@20": ...}` averaged over `ranks`."""
    ranks = np.asarray(ranks, dtype=np.float64)
    metrics = {}
    for k in TOP_KS:
        hit = ranks < k
        metrics[f"HR@{k}"] = float(hit.mean())
        metrics[f"NDCG@{k}"] = float(np.where(hit, 1.0 / np.log2(ranks + 2.0), 0.0).mean())
    return metrics


class RankingEvaluator:
    """Evaluates a model's full ranking on one evaluation dataset.

    Args:
      model: an `ICLRecModel` (anything with `score_items(item_ids)`).
      dataset: `SequencePipelines.evaluation(...)`, or None where every call
        of `ranks` gives its own.
      protocol: `reference` or `exclude`.
      mask_id: the vocabulary's mask id.

    Example:
      >>> evaluator = RankingEvaluator(model, pipelines.evaluation("test", 1024),
      ...                              "reference", data.mask_id)
      >>> evaluator()["NDCG@20"]
    """

    def __init__(self, model, dataset, protocol, mask_id):
        self.model = model
        self.dataset = dataset
        self.protocol = protocol
        self.mask_id = mask_id
        self._batch_ranks = tf.function(self._ranks, reduce_retracing=True)

    def _ranks(self, batch):
        scores = self.model.score_items(batch["input_ids"])
        return answer_ranks(scores, batch["answer"], batch["history"], self.protocol,
                            self.mask_id)

    def ranks(self, dataset=None):
        """[num_users] rank of every user's answer, in the dataset file's order of users
        (whatever order the batches take), on `dataset` if given, else on the
        evaluator's own: another evaluation dataset of the same model traces no
        new step."""
        ranks, users = [], []
        for batch in self.dataset if dataset is None else dataset:
            ranks.append(self._batch_ranks(batch).numpy())
            users.append(batch["user"].numpy())
        ranks, users = np.concatenate(ranks), np.concatenate(users)
        in_file_order = np.empty_like(ranks)
        in_file_order[users] = ranks
        return in_file_order

    def __call__(self):
        return ranking_metrics(self.ranks())

"""The paper's analyses of a trained model, without training: metrics by user group
(Fig. 3) and under noise (Fig. 4).

Both rank every user's answer once with a `RankingEvaluator`, the same full
ranking as validation and `evaluate`, then average the ranks of a group, or
rank again on noisy inputs (`iclrec_tf.data.noise`). An analysis costs one or a
few evaluations, never an epoch.
"""

import numpy as np

from iclrec_tf.data.noise import noisy_inputs
from iclrec_tf.data.pipeline import SequencePipelines
from iclrec_tf.train.metrics import RankingEvaluator, ranking_metrics

# Lower bounds of the user groups by train-history length: "1-4", "5-9", "10-19", "20+".
# On the four datasets the smallest, "20+", holds 745 to 2,188 users.
LENGTH_EDGES = (1, 5, 10, 20)
# A group with fewer users than this (or than a tenth of all users, on a small
# dataset) is merged into its neighbour: its metrics would be noise.
MIN_GROUP_USERS = 500


def length_groups(lengths, edges=LENGTH_EDGES, min_users=None):
    """Groups users by the length of their train history.

    Args:
      lengths: [num_users] train-history lengths.
      edges: the groups' lower bounds, increasing; the last group is open.
      min_users: the fewest users a group may hold before it is merged into its
        neighbour (default: `MIN_GROUP_USERS`, or a tenth of the users if fewer).

    Returns:
      A list of `(name, members)`, shortest histories first: `name` such as
      `"5-9"` or `"20+"`, `members` a [num_users] bool mask. Every user is in
      exactly one group.
    """
    lengths = np.asarray(lengths)
    if min_users is None:
        min_users = min(MIN_GROUP_USERS, max(1, len(lengths) // 10))
    lows = [min(int(lengths.min()), edges[0]), *edges[1:]]
    ranges = [[low, high] for low, high in zip(lows, [*lows[1:], None], strict=True)]

    def members(low, high):
        return (lengths >= low) & (lengths < (np.inf if high is None else high))

    while len(ranges) > 1:
        sizes = [int(members(*group).sum()) for group in ranges]
        smallest = int(np.argmin(sizes))
        if sizes[smallest] >= min_users:
            break
        # The last group merges into the one before it; any other into the next.
        first = smallest - 1 if smallest == len(ranges) - 1 else smallest
        ranges[first:first + 2] = [[ranges[first][0], ranges[first + 1][1]]]
    return [(_group_name(low, high), members(low, high)) for low, high in ranges]


def _group_name(low, high):
    """`"20+"`, `"5-9"` or `"3"` for the lengths in `[low, high)`."""
    if high is None:
        return f"{low}+"
    return f"{low}" if high == low + 1 else f"{low}-{high - 1}"


def metrics_by_group(ranks, groups):
    """The six metrics of each group, with its user count.

    Args:
      ranks: [num_users] answer ranks in file order (`RankingEvaluator.ranks`).
      groups: from `length_groups`.

    Returns:
      A list of `{"name": ..., "users": ..., "HR@5": ..., ...}`, one per group.
    """
    return [{"name": name, "users": int(members.sum()), **ranking_metrics(ranks[members])}
            for name, members in groups]


class ModelAnalyses:
    """Ranks a model's answers on one split, clean or noisy, and groups users.

    Args:
      model: an `ICLRecModel` (anything with `score_items`).
      data: the `SequenceData` it is evaluated on.
      max_len: the model's `max_seq_length`.
      split: `valid` or `test`.
      protocol: `reference` or `exclude`.
      batch_size: users per evaluation batch.
      length_buckets: evaluate in length-bucketed batches (the same ranks, faster).

    Example:

    >>> analyses = ModelAnalyses(model, data, 50, "test", "reference", 1024, True)
    >>> analyses.metrics(noise_ratio=0.1, seed=1)["NDCG@5"]
    >>> [group["name"] for group in analyses.by_length()]
    ['1-4', '5-9', '10-19', '20+']
    """

    def __init__(self, model, data, max_len, split, protocol, batch_size, length_buckets):
        self.data = data
        self.split = split
        self.batch_size = batch_size
        self.length_buckets = length_buckets
        self._pipelines = SequencePipelines(data, max_len)
        self._evaluator = RankingEvaluator(model, None, protocol, data.mask_id)
        self._clean_ranks = None

    def ranks(self, noise_ratio=0.0, seed=1):
        """[num_users] answer ranks in file order, on inputs with `noise_ratio` noise."""
        if noise_ratio == 0 and self._clean_ranks is not None:
            return self._clean_ranks
        inputs = None if noise_ratio == 0 else noisy_inputs(self.data, self.split,
                                                            noise_ratio, seed)
        ranks = self._evaluator.ranks(self._pipelines.evaluation(
            self.split, self.batch_size, self.length_buckets, inputs=inputs))
        if noise_ratio == 0:
            self._clean_ranks = ranks
        return ranks

    def metrics(self, noise_ratio=0.0, seed=1):
        """The six metrics on inputs with `noise_ratio` noise drawn from `seed`."""
        return ranking_metrics(self.ranks(noise_ratio, seed))

    def by_length(self):
        """The six metrics and user count of each train-history length group
        (`length_groups`), on clean inputs."""
        train_lengths = self.data.lengths - 3  # the train input is items[:-3]
        return metrics_by_group(self.ranks(), length_groups(train_lengths))

"""Noisy evaluation inputs: the robustness protocol of the paper's Fig. 4.

The reference family's code (`_add_noise_interactions`, `--noise_ratio`) makes a
user's evaluation sequence noisy as follows, and so does `noisy_inputs`. For the
sequence up to the answer, the answer included (on test, the whole sequence;
on valid, all but the last item), of n items:

- draw `int(ratio * n)` positions among the n, with replacement;
- before each distinct drawn position, insert one item id, drawn uniformly from
  the dataset's item ids that are not in the user's sequence (two inserted ids
  may be equal; padding and the mask id are never drawn).

So at most `int(ratio * n)` ids go in, and the answer stays last. The input is
the noisy sequence less its answer; it is longer than the clean one and is cut
to its last `max_seq_length` items like any other. The ids excluded from the
ranking stay the user's clean history (`SequencePipelines.evaluation`).

Everything is drawn by one numpy generator over the users in file order, so one
seed gives one set of inputs whatever the batch size, bucketing or thread count.
"""

import numpy as np

from iclrec_tf.data.datasets import SequenceData

# How many items each user's sequence keeps after the answer: on test none, on valid
# the test answer.
_DROP_AFTER_ANSWER = {"valid": 1, "test": 0}


def noisy_inputs(data: SequenceData, split, ratio, seed):
    """Every user's evaluation input of `split` with noise items inserted.

    Args:
      data: a `SequenceData`.
      split: `valid` or `test`.
      ratio: the noise ratio R >= 0; 0 returns the clean inputs.
      seed: seeds the positions and the ids drawn.

    Returns:
      `(values, row_splits)`: user u's input is `values[row_splits[u]:row_splits[u+1]]`,
      in the layout of `SequenceData.prefixes`.
    """
    if split not in _DROP_AFTER_ANSWER:
        raise ValueError(f"split must be 'valid' or 'test', got {split!r}")
    if not ratio >= 0:
        raise ValueError(f"ratio must be a non-negative number, got {ratio!r}")
    drop = _DROP_AFTER_ANSWER[split]
    if ratio == 0:
        return data.prefixes(drop_last=drop + 1)
    rng = np.random.default_rng(seed)
    values, splits = data.prefixes(drop_last=drop)  # each sequence up to its answer
    n = np.diff(splits)
    users = np.repeat(np.arange(data.num_users), n)
    at = np.unique(drawn_positions(rng, splits, ratio))  # sorted: user after user
    noise = _draw_outside(rng, np.unique(data.items), users[at], data)
    # Each noise id sorts just before the item at its position; then every user's
    # last item, its answer, is dropped.
    order = np.argsort(np.concatenate([2 * np.arange(len(values)) + 1, 2 * at]), kind="stable")
    noisy = np.concatenate([values, noise])[order]
    noisy_n = n + np.bincount(users[at], minlength=data.num_users)
    keep = np.ones(len(noisy), dtype=bool)
    keep[np.cumsum(noisy_n) - 1] = False
    return noisy[keep], np.concatenate([[0], np.cumsum(noisy_n - 1)])


def drawn_positions(rng, splits, ratio):
    """`int(ratio * n)` positions drawn with replacement among each sequence's n,
    user after user, as indices into the sequences' concatenation.

    Args:
      rng: a numpy `Generator`.
      splits: [num_users + 1] row splits of the sequences up to their answers.
      ratio: the noise ratio.
    """
    n = np.diff(splits)
    draws = (ratio * n).astype(np.int64)  # int(ratio * n), in float64 as Python has it
    owners = np.repeat(np.arange(len(n)), draws)
    return splits[:-1][owners] + rng.integers(0, n[owners])


def _draw_outside(rng, pool, owners, data):
    """An id drawn uniformly from `pool` for each of `owners` (user indices), redrawn
    while it is an item of its owner's whole sequence."""
    width = int(data.items.max()) + 1
    owned = np.unique(np.repeat(np.arange(data.num_users), data.lengths) * width + data.items)
    drawn = pool[rng.integers(0, len(pool), size=len(owners))]
    clashes = np.isin(owners * width + drawn, owned)
    for _ in range(1000):
        if not clashes.any():
            return drawn
        drawn[clashes] = pool[rng.integers(0, len(pool), size=int(clashes.sum()))]
        clashes = np.isin(owners * width + drawn, owned)
    raise ValueError("after 1,000 rounds some user's noise id is still one of its items: "
                     "does a user's sequence hold nearly every item id?")

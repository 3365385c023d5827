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
    pool = np.unique(data.items)  # the real item ids, sorted
    inputs = []
    for user in range(data.num_users):
        sequence = data.sequence(user)
        own_items = sequence  # never inserted, whichever split
        sequence = sequence[:len(sequence) - drop]
        n = len(sequence)
        positions = np.unique(rng.integers(0, n, size=int(ratio * n)))
        noise = _draw_outside(rng, pool, own_items, len(positions))
        # np.insert puts noise[i] before sequence[positions[i]]: the answer stays last.
        inputs.append(np.insert(sequence, positions, noise)[:-1])
    lengths = np.array([len(row) for row in inputs], dtype=np.int64)
    return (np.concatenate(inputs).astype(data.items.dtype),
            np.concatenate([[0], np.cumsum(lengths)]))


def _draw_outside(rng, pool, excluded, count):
    """`count` ids drawn uniformly from `pool`, redrawn while they are in `excluded`."""
    drawn = pool[rng.integers(0, len(pool), size=count)]
    clashes = np.isin(drawn, excluded)
    if clashes.any() and np.isin(pool, excluded).all():
        raise ValueError("a user's sequence holds every item id: no noise id can be drawn")
    while clashes.any():
        drawn[clashes] = pool[rng.integers(0, len(pool), size=int(clashes.sum()))]
        clashes = np.isin(drawn, excluded)
    return drawn

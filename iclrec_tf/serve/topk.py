"""Top-k of a score matrix, pruned to the few scores that can be in it.

`TopKV2` costs about 5 ns per score on CPU: most of the serving time at batch
256. `pruned_top_k` finds a threshold cheaply, then runs it on the scores above.
"""

import tensorflow as tf

# `pruned_top_k` deals each row's scores into about this many groups per
# recommendation (Toys, k = 100: 412 groups of 29); 2 and 8 measured close.
GROUPS_PER_K = 4


def group_threshold(maxima, k, steps=8):
    """[batch, 1] a value with at least k of each row's `maxima` at or above it.

    Bisects between the smallest finite and the largest maximum, then rounds
    up to the smallest maximum at or above the result: close to the k-th largest,
    which `tf.math.top_k` would find at several times the cost. A row that
    has fewer than k finite maxima gets -inf.

    Args:
      maxima: [batch, groups] float32, groups >= k, no NaN (-inf is fine).
      k: a Python int.
      steps: bisection steps; more give a tighter value, never a wrong one.
    """
    def enough(value):
        return tf.reduce_sum(tf.cast(maxima >= value, tf.int32), axis=1, keepdims=True) >= k

    high = tf.reduce_max(maxima, axis=1, keepdims=True)
    low = tf.reduce_min(tf.where(tf.math.is_finite(maxima), maxima, high), axis=1, keepdims=True)
    for _ in range(steps):
        middle = (low + high) / 2
        below = enough(middle)
        low, high = tf.where(below, middle, low), tf.where(below, high, middle)
    low = tf.reduce_min(tf.where(maxima >= low, maxima, float("inf")), axis=1, keepdims=True)
    # The check, not the bisection, is what makes the value right.
    return tf.where(enough(low), low, float("-inf"))


def pruned_top_k(scores, k):
    """`tf.math.top_k(scores, k)`, found among the few scores that can be in it.

    `TopKV2` costs about 5 ns per score on CPU: most of the scoring time at
    batch 256 over Toys' 11,926 items. Here the columns are dealt into about
    `GROUPS_PER_K * k` groups (column `c` to group `c % groups`), and `t` is
    a value with at least k group maxima at or above it (`group_threshold`),
    hence at least k scores: the top-k are all `>= t`, about 160 of the 11,926
    on Toys. Those are packed, in column order, into a `[batch, width]` matrix
    padded with -inf, and its `tf.math.top_k` is the answer, ties included
    (the lower column first, as `tf.math.top_k`). A row with fewer than k
    finite group maxima keeps all its scores.

    Args:
      scores: [batch, n] float32, no NaN (-inf is fine); n known when traced.
      k: a Python int, 1 <= k <= n.

    Returns:
      values [batch, k] float32 and indices [batch, k] int32, sorted, equal to
      those of `tf.math.top_k(scores, k)`.
    """
    n = scores.shape[-1]
    size = n // (GROUPS_PER_K * k)
    if size < 2:  # a group of one score prunes nothing
        top = tf.math.top_k(scores, k)
        return top.values, top.indices
    groups = -(-n // size)
    batch = tf.shape(scores, out_type=tf.int64)[0]
    padded = tf.pad(scores, [[0, 0], [0, groups * size - n]], constant_values=float("-inf"))
    # Strided groups: a max over the middle axis vectorises, one over a short last axis does not.
    maxima = tf.reduce_max(tf.reshape(padded, [batch, size, groups]), axis=1)  # (B, groups)
    kept = tf.where(scores >= group_threshold(maxima, k))  # (m, 2): row, column; row-major
    columns = tf.RaggedTensor.from_value_rowids(tf.cast(kept[:, 1], tf.int32), kept[:, 0],
                                                nrows=batch)
    lengths = columns.row_lengths()
    # At least k wide: a batch of 0 rows keeps nothing.
    width = tf.maximum(tf.reduce_max(lengths), tf.constant(k, tf.int64))
    columns = columns.to_tensor(shape=[batch, width])
    values = tf.where(tf.sequence_mask(lengths, width),
                      tf.gather(scores, columns, batch_dims=1), float("-inf"))
    top = tf.math.top_k(values, k)
    return top.values, tf.gather(columns, top.indices, batch_dims=1)

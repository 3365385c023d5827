"""`iclrec_tf.serve.topk`: the pruned top-k equals `tf.math.top_k`."""

import numpy as np
import pytest
import tensorflow as tf

from iclrec_tf.serve import topk


def top_k_cases():
    """`{name: [batch, n] float32 scores}` for `pruned_top_k`, k = 10."""
    rng = np.random.default_rng(0)
    normal = rng.standard_normal((6, 1003)).astype(np.float32)  # 1003: groups of 25, one short
    normal[::2, 0] = 5.0  # the best, in column 0: the one the packing pads with
    ties = rng.integers(0, 4, (6, 1000)).astype(np.float32)  # ~250 ties at the top value
    holes = normal.copy()
    holes[0] = -np.inf  # nothing to recommend
    holes[1, 5:] = -np.inf  # 5 finite scores, fewer than k
    holes[2, ::41] = -np.inf  # a whole group (column c is in group c % 41)
    holes[3, :980] = -np.inf  # 23 finite scores in 23 groups
    return {"normal": normal, "ties": ties, "minus_inf": holes,
            "no_rows": np.zeros((0, 1003), np.float32),
            "too_narrow_to_prune": normal[:, :30]}


@pytest.mark.parametrize("name", sorted(top_k_cases()))
def test_pruned_top_k_equals_tf_math_top_k(name):
    scores = top_k_cases()[name]
    pruned = tf.function(lambda scores: topk.pruned_top_k(scores, 10),
                         input_signature=[tf.TensorSpec([None, scores.shape[1]], tf.float32)])
    values, indices = pruned(tf.constant(scores))
    expected = tf.math.top_k(scores, 10)
    np.testing.assert_array_equal(values.numpy(), expected.values.numpy())
    np.testing.assert_array_equal(indices.numpy(), expected.indices.numpy())


def test_group_threshold_keeps_k_maxima():
    # Row 0: bisecting [1, 5] goes 3 (three maxima >= 3: up), 4 (two: up), 4.5 (one:
    # down), ... and rounds up to the smallest maximum above, 4 = the 2nd largest.
    # Row 1 has one finite maximum, fewer than k = 2: -inf, keep everything.
    maxima = tf.constant([[1.0, 5.0, 3.0, 4.0], [-np.inf, 2.0, -np.inf, -np.inf]])
    np.testing.assert_array_equal(topk.group_threshold(maxima, 2).numpy(), [[4.0], [-np.inf]])

    maxima = np.random.default_rng(1).standard_normal((50, 400)).astype(np.float32)
    threshold = topk.group_threshold(tf.constant(maxima), 100).numpy()
    kth_largest = np.sort(maxima, axis=1)[:, -100:-99]
    assert ((maxima >= threshold).sum(axis=1) >= 100).all()
    assert (threshold <= kth_largest).all()
    assert ((maxima >= threshold).sum(axis=1) <= 110).all()  # and close to it

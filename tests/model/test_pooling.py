"""`iclrec_tf.model.pooling`: which positions each representation reads."""

import numpy as np
import pytest
import tensorflow as tf

from iclrec_tf.model.pooling import PADDING_FREE, pool


@pytest.fixture
def batch():
    rng = np.random.default_rng(0)
    ids = np.array([[0, 0, 3, 4], [0, 5, 0, 6], [7, 8, 9, 1]])  # left padding, a masked item
    return rng.standard_normal((3, 4, 2)).astype(np.float32), ids


def test_masked_mean_averages_the_items_only(batch):
    hidden, ids = batch
    pooled = pool(tf.constant(hidden), tf.constant(ids), "masked_mean").numpy()
    np.testing.assert_allclose(pooled[0], hidden[0, 2:].mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(pooled[1], hidden[1, [1, 3]].mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(pooled[2], hidden[2].mean(axis=0), rtol=1e-6)


def test_masked_mean_ignores_what_padding_holds(batch):
    hidden, ids = batch
    noisy = np.where((ids > 0)[..., None], hidden, 1e6).astype(np.float32)
    for method in PADDING_FREE:
        np.testing.assert_allclose(pool(tf.constant(noisy), tf.constant(ids), method),
                                   pool(tf.constant(hidden), tf.constant(ids), method))
    # The reference's mean is not padding-free: it reads every position.
    assert not np.allclose(pool(tf.constant(noisy), tf.constant(ids), "mean"),
                           pool(tf.constant(hidden), tf.constant(ids), "mean"))


def test_padding_free_representations_survive_trimming_left_padding(batch):
    hidden, ids = batch
    trimmed_hidden, trimmed_ids = hidden[:1, 2:], ids[:1, 2:]
    for method in PADDING_FREE:
        np.testing.assert_allclose(pool(tf.constant(trimmed_hidden), tf.constant(trimmed_ids),
                                        method),
                                   pool(tf.constant(hidden[:1]), tf.constant(ids[:1]), method),
                                   rtol=1e-6)


def test_last_flatten_and_mean_and_an_unknown_method(batch):
    hidden, ids = batch
    np.testing.assert_array_equal(pool(hidden, ids, "last"), hidden[:, -1])
    assert pool(tf.constant(hidden), ids, "flatten").shape == (3, 8)
    np.testing.assert_allclose(pool(hidden, ids, "mean"), hidden.mean(axis=1), rtol=1e-6)
    with pytest.raises(ValueError, match="pooling must be one of"):
        pool(hidden, ids, "max")

"""`iclrec_tf.model.softmax`: full-softmax cross entropy, whole and chunked."""

import numpy as np
import pytest
import tensorflow as tf

from iclrec_tf.model.softmax import softmax_cross_entropy_sum

ITEMS, DIM, ROWS = 50, 8, 37
EXCLUDED = (0, ITEMS - 1)  # padding and the mask id


@pytest.fixture(scope="module")
def problem():
    rng = np.random.default_rng(0)
    hidden = rng.standard_normal((ROWS, DIM)).astype(np.float32)
    table = rng.standard_normal((ITEMS, DIM)).astype(np.float32)
    targets = rng.integers(1, ITEMS - 1, ROWS)
    return hidden, table, targets


def numpy_loss_and_gradients(hidden, table, targets):
    """The loss and its gradients, by hand: d/dlogits = softmax - one_hot."""
    logits = hidden.astype(np.float64) @ table.T
    logits[:, list(EXCLUDED)] = -np.inf
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    probabilities = shifted / shifted.sum(axis=1, keepdims=True)
    loss = -np.log(probabilities[np.arange(ROWS), targets]).sum()
    residual = probabilities.copy()
    residual[np.arange(ROWS), targets] -= 1.0
    return loss, residual @ table, residual.T @ hidden


def tf_loss_and_gradients(hidden, table, targets, max_logits):
    hidden, table = tf.Variable(hidden), tf.Variable(table)
    with tf.GradientTape() as tape:
        loss = softmax_cross_entropy_sum(hidden, tf.constant(targets), table, EXCLUDED,
                                         max_logits)
    gradients = tape.gradient(loss, [hidden, table])
    return loss.numpy(), *(tf.convert_to_tensor(g).numpy() for g in gradients)


@pytest.mark.parametrize("max_logits", [10**6, ITEMS * 5, ITEMS])  # whole; chunks of 5; of 1
def test_whole_and_chunked_match_numpy(problem, max_logits):
    expected = numpy_loss_and_gradients(*problem)
    actual = tf_loss_and_gradients(*problem, max_logits)
    np.testing.assert_allclose(actual[0], expected[0], rtol=1e-5)
    for got, want in zip(actual[1:], expected[1:], strict=True):
        np.testing.assert_allclose(got, want, atol=1e-5)


def test_chunked_equals_unchunked_inside_a_function(problem):
    hidden, table, targets = (tf.constant(x) for x in problem)
    traced = tf.function(lambda budget: softmax_cross_entropy_sum(
        hidden, targets, table, EXCLUDED, budget), reduce_retracing=True)
    whole = tf.function(lambda: softmax_cross_entropy_sum(hidden, targets, table, EXCLUDED))
    np.testing.assert_allclose(traced(ITEMS * 4).numpy(), whole().numpy(), rtol=1e-6)


def test_excluded_ids_are_never_candidates(problem):
    hidden, table, targets = problem
    loud = table.copy()
    loud[list(EXCLUDED)] = 100.0 * hidden.mean(axis=0)  # would win every softmax
    quiet = tf_loss_and_gradients(hidden, table, targets, 10**6)[0]
    assert tf_loss_and_gradients(hidden, loud, targets, 10**6)[0] == pytest.approx(quiet)

import numpy as np
import pytest
import tensorflow as tf
from conftest import encoder_config, padded_rows

from iclrec_tf.model.encoder import SequenceEncoder, TransformerBlock
from iclrec_tf.model.fourier import FourierBlock, LowPassBranch, low_pass_matrix


def test_the_lowest_frequency_alone_is_the_mean_of_the_window():
    # c = 1 keeps bin 0 only, the mean: every weight 1/L (orthonormal rfft then irfft)
    np.testing.assert_allclose(low_pass_matrix(6, cutoff=1), np.full((6, 6), 1 / 6), atol=1e-7)
    # causal: position t averages over the window that ends at t, 1/L per position
    # of it, the positions before 0 zeros: row t holds 1/6 at columns 0 .. t
    np.testing.assert_allclose(low_pass_matrix(6, cutoff=1, causal=True),
                               np.tril(np.full((6, 6), 1 / 6)), atol=1e-7)


def test_every_frequency_kept_is_the_identity_and_the_filter_is_a_projection():
    np.testing.assert_allclose(low_pass_matrix(8, cutoff=8), np.eye(8), atol=1e-6)
    matrix = low_pass_matrix(50, cutoff=5)
    np.testing.assert_allclose(matrix @ matrix, matrix, atol=1e-6)
    # bins 0, 1, 2 of 26: rank 1 + 2 + 2
    assert np.linalg.matrix_rank(matrix, tol=1e-4) == 5
    x = np.cos(2 * np.pi * np.arange(50) / 50)  # frequency 1 passes, frequency 3 does not
    np.testing.assert_allclose(matrix @ x, x, atol=1e-5)
    np.testing.assert_allclose(matrix @ np.cos(6 * np.pi * np.arange(50) / 50), 0, atol=1e-5)


def _branch(**settings):
    config = encoder_config(item_size=30, max_seq_length=6, hidden_size=4, num_heads=1,
                            encoder="fourier", **settings)
    branch = LowPassBranch(config)
    branch(tf.zeros((1, 6, 4)), tf.ones((1, 6)))
    return branch


def test_the_branch_scales_the_high_frequencies_by_beta_squared_and_skips_padding():
    branch = _branch(fourier_cutoff=1, hidden_dropout=0.0)
    hidden = tf.random.stateless_normal((2, 6, 4), (3, 4))
    is_item = tf.constant([[0, 0, 1, 1, 1, 1], [1] * 6], tf.float32)
    branch.sqrt_beta.assign([1.0, -1.0, 0.0, 0.5])
    output = branch(hidden, is_item).numpy()
    items = hidden.numpy() * is_item.numpy()[..., None]
    low = items.sum(axis=1, keepdims=True) / 6  # c = 1: the mean over the window, padding 0
    filtered = low + np.array([1.0, 1.0, 0.0, 0.25]) * (items - low)
    residual = filtered + hidden.numpy()
    expected = (residual - residual.mean(-1, keepdims=True)) / np.sqrt(
        residual.var(-1, keepdims=True) + 1e-12)
    np.testing.assert_allclose(output, expected, atol=1e-5)


@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_alpha_weighs_the_branch_against_attention(alpha):
    """alpha 0 is the attention block alone; alpha 1 the branch alone, then the
    feed-forward sublayer."""
    config = encoder_config(item_size=30, max_seq_length=12, encoder="fourier",
                            fourier_alpha=alpha)
    ids = tf.constant(padded_rows([3, 12]))
    hidden = tf.random.stateless_normal((2, 12, 64), (1, 2))
    block = FourierBlock(config)
    output = block(hidden, FourierBlock.context_of(ids)).numpy()
    if alpha == 0.0:
        attention_block = TransformerBlock(config)
        attention_block(hidden, TransformerBlock.context_of(ids))
        attention_block.attention.set_weights(block.attention.get_weights())
        attention_block.feed_forward.set_weights(block.feed_forward.get_weights())
        expected = attention_block(hidden, TransformerBlock.context_of(ids)).numpy()
    else:
        _, is_item = FourierBlock.context_of(ids)
        expected = block.feed_forward(block.low_pass(hidden, is_item)).numpy()
    np.testing.assert_allclose(output, expected, atol=1e-5)


def test_with_one_block_the_causal_filter_gives_the_last_position_fouriers_output():
    """`causal_fourier` filters each prefix as `fourier` filters the window at its
    last position: with one block and the same weights, the next-item state (the
    last position's) is the same."""
    encoders = [SequenceEncoder(encoder_config(item_size=30, max_seq_length=12, num_blocks=1,
                                               encoder=kind), name=kind)
                for kind in ("fourier", "causal_fourier")]
    ids = padded_rows([1, 4, 12, 9])
    for encoder in encoders:
        encoder(ids)
    encoders[1].set_weights(encoders[0].get_weights())
    fourier, causal = (encoder(ids, training=False).numpy() for encoder in encoders)
    np.testing.assert_allclose(causal[:, -1], fourier[:, -1], atol=1e-5)
    assert np.abs(causal[:, :-1] - fourier[:, :-1]).max() > 1e-3  # elsewhere they differ

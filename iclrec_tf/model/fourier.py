"""Attention with a low-pass branch beside it, in BSARec's manner (`fourier`, `causal_fourier`).

BSARec (Shin et al., AAAI 2024) keeps self-attention and adds a branch that
splits the sequence over its positions into low frequencies and the rest, and
scales the rest by a learned weight per dimension:
`LayerNorm(dropout(low + beta^2 * (x - low)) + x)`. The block's output is
`alpha * branch + (1 - alpha) * attention`, then the feed-forward sublayer.

The low-pass is linear over positions: a constant `[max_len, max_len]` matrix
(`low_pass_matrix`) applied by one matmul, which takes bfloat16 (the FFT ops do
not) and costs less than an FFT's several ops over 50 positions. Unlike
BSARec, the branch filters the items only: padding (and masked items) enter it
as zeros, so its output does not depend on how much padding a window carries.

- `fourier`: BSARec's filter, the low frequencies of the whole window. Not
  causal: a position's output depends on the items after it, so it trains on
  prefixes (`TrainConfig`: a prefix has no items after its target).
- `causal_fourier`: each position gets what `fourier`'s filter gives the last
  position of the window that ends there, a filter over each prefix rather
  than over the whole window. Causal, so it trains on every position at once.
  With one block, both give the last position the same output.
"""

import numpy as np
import tensorflow as tf
import tf_keras as keras

from iclrec_tf.model.encoder import (
    Block,
    EncoderLayer,
    FeedForward,
    SelfAttention,
    attention_bias,
    layer_norm,
)


def low_pass_matrix(max_len, cutoff, causal=False):
    """[max_len, max_len] float32 `M`: `(M @ x)[t]` is the low-pass of `x` at position t.

    `fourier`: BSARec's rfft over the window (orthonormal), its bins above
    `cutoff // 2` set to zero, then the inverse rfft. `causal`: row t applies
    the window's last row to the positions up to t, as a convolution: lower
    triangular, the same weights at every position.

    Args:
      max_len: the window's positions.
      cutoff: BSARec's c; the frequencies 0 .. c // 2 pass.
      causal: the prefix filter of `causal_fourier`.
    """
    keep = np.arange(max_len // 2 + 1) <= cutoff // 2
    spectrum = np.fft.rfft(np.eye(max_len), axis=0, norm="ortho") * keep[:, None]
    matrix = np.fft.irfft(spectrum, n=max_len, axis=0, norm="ortho")  # column j: e_j filtered
    if causal:
        kernel = matrix[-1, ::-1]  # kernel[k]: the weight of x[t - k] at the window's end t
        lags = np.arange(max_len)[:, None] - np.arange(max_len)[None, :]
        matrix = np.where(lags >= 0, kernel[np.maximum(lags, 0)], 0.0)
    return matrix.astype(np.float32)


@keras.utils.register_keras_serializable("iclrec_tf")
class LowPassBranch(EncoderLayer):
    """BSARec's frequency branch: `LayerNorm(dropout(low + beta^2 * (x - low)) + x)`.

    `low` is `low_pass_matrix` applied to the items (padding as zeros); `beta`
    is a learned weight per dimension, initialised standard normal as in BSARec.
    A window narrower than `max_len` is its last positions (the matrix's
    bottom-right block): exact, as the positions cut hold padding, a zero input.

    Call arguments:
      hidden: [batch, len, hidden].
      is_item: [batch, len] float, 1 where the position holds an item.
      training: whether dropout is active.
      last_position_only: the last position's output only.
      dropout_seed: optional seed of the dropout's mask (`Dropout`).

    Returns:
      [batch, len, hidden] ([batch, 1, hidden] for the last position only).
    """

    def __init__(self, config, **kwargs):
        super().__init__(config, **kwargs)
        self.matrix = tf.constant(low_pass_matrix(
            config.max_len, config.fourier_cutoff, causal=config.encoder == "causal_fourier"))
        self.dropout = config.dropout(config.hidden_dropout)
        self.layer_norm = layer_norm()

    def build(self, input_shape):
        # BSARec's sqrt_beta: the high frequencies are scaled by its square.
        self.sqrt_beta = self.add_weight(
            name="sqrt_beta", shape=(self.encoder_config.hidden_size,),
            initializer=keras.initializers.RandomNormal(stddev=1.0))
        super().build(input_shape)

    def call(self, hidden, is_item, training=None, last_position_only=False, dropout_seed=None):
        compute = self.encoder_config.compute_dtype
        width = tf.shape(hidden)[1]
        items = hidden * is_item[..., None]  # (B, W, D), padding as zeros
        matrix = self.matrix[-width:, -width:]  # (W, W): the window's positions
        queries = hidden
        if last_position_only:
            matrix, queries, items_out = matrix[-1:], hidden[:, -1:], items[:, -1:]
        else:
            items_out = items
        low = tf.cast(tf.matmul(tf.cast(matrix, compute)[None], tf.cast(items, compute)),
                      tf.float32)  # (B, Q, D)
        filtered = low + tf.square(self.sqrt_beta) * (items_out - low)
        output = self.dropout(filtered, training=training, seed=dropout_seed)
        return self.layer_norm(tf.cast(output, queries.dtype) + queries)


@keras.utils.register_keras_serializable("iclrec_tf")
class FourierBlock(Block):
    """`alpha * LowPassBranch + (1 - alpha) * SelfAttention`, then `FeedForward`.

    The block of the `fourier` and `causal_fourier` encoders; `alpha` is
    `EncoderConfig.fourier_alpha`. Causal with `causal_fourier`, not with
    `fourier` (module docstring). Its context is the attention mask and which
    positions hold items; its four dropout masks are the attention
    probabilities', the attention output's, the branch's and the feed-forward
    output's.

    Example:
      >>> config = EncoderConfig.from_train_config(
      ...     TrainConfig(encoder="causal_fourier", fourier_alpha=0.3), item_size=100)
      >>> encoder = SequenceEncoder(config)  # its blocks are FourierBlocks
    """

    def __init__(self, config, **kwargs):
        super().__init__(config, **kwargs)
        self.attention = SelfAttention(config, name="attention")
        self.low_pass = LowPassBranch(config, name="low_pass")
        self.feed_forward = FeedForward(config, name="intermediate")

    @staticmethod
    def context_of(item_ids):
        return attention_bias(item_ids), tf.cast(item_ids > 0, tf.float32)

    @property
    def dropouts(self):
        return [self.attention.probability_dropout, self.attention.output_dropout,
                self.low_pass.dropout, self.feed_forward.dropout]

    def _forward(self, hidden, context, training, last_position_only, dropout_seeds):
        bias, is_item = context
        seeds = dropout_seeds or (None,) * 4
        alpha = self.encoder_config.fourier_alpha
        attended = self.attention(hidden, bias, training=training,
                                  last_position_only=last_position_only,
                                  dropout_seeds=tuple(seeds[:2]))
        filtered = self.low_pass(hidden, is_item, training=training,
                                 last_position_only=last_position_only, dropout_seed=seeds[2])
        hidden = alpha * filtered + (1.0 - alpha) * attended  # (B, Q, D)
        return self.feed_forward(hidden, training=training, dropout_seed=seeds[3])

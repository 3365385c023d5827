"""An attention-free encoder block: a position-dependent causal filter, in TV-Rec's manner.

TV-Rec (Shin et al., NeurIPS 2025) replaces attention (and the position
embeddings) by a graph filter on the sequence's path graph. Written out, it is a
convolution whose weights depend on the output position:
`y[t] = sum_k h[t, k] * x[t - k]`, with `h[t] = sum_m c[t, m] * b[m] / |b[m]|`, a mix
of `bases` shared filters `b` with a coefficient per position `c`. Padding is set
to zero before every block. TV-Rec's graph is a cycle over the window and K - 1
zeros after it, which adds one wrap-around term (the last item into position 0);
here the filter is strictly causal, a lower-triangular `[max_len, max_len]`
matrix applied by one matmul.

Positions are absolute within the `max_len` window (the last item is always at
position `max_len - 1`); a narrower window is its last positions, exactly, as
the positions cut are zeros. Nothing in the block reads padding, so the whole
encoder output, padding positions included, does not depend on the width.
"""

import numpy as np
import tensorflow as tf
import tf_keras as keras

from iclrec_tf.model.encoder import Block, EncoderLayer, FeedForward, layer_norm

# TV-Rec's initial scale of its bases and coefficients: the filter starts near
# zero, so each block starts near its residual path.
FILTER_INIT_STDDEV = 1e-3


def orthogonality_penalty(bases):
    """`|B B^T - I|^2` (squared Frobenius) of the row-normalised `bases` [m, lags]:
    TV-Rec's regulariser, 0 when the shared filters are orthogonal."""
    normalized = tf.math.l2_normalize(bases, axis=1)
    gram = tf.matmul(normalized, normalized, transpose_b=True)
    return tf.reduce_sum(tf.square(gram - tf.eye(tf.shape(bases)[0])))


@keras.utils.register_keras_serializable("iclrec_tf")
class PositionFilter(EncoderLayer):
    """`LayerNorm(dropout(W @ x) + x)`, W the lower-triangular position-dependent filter.

    `W[t, s] = h[t, t - s]` for `s <= t`, with `h = coefficients @ normalised bases`:
    `coefficients` [max_len, filter_bases], `bases` [filter_bases, max_len] (one
    weight per lag 0 .. max_len - 1). With `filter_reg_weight` > 0 the layer adds
    `filter_reg_weight * orthogonality_penalty(bases)` to its losses.

    Call arguments:
      hidden: [batch, len, hidden], padding already zero.
      training: whether dropout is active.
      last_position_only: the last position's output only.
      dropout_seed: optional seed of the dropout's mask (`Dropout`).

    Returns:
      [batch, len, hidden] ([batch, 1, hidden] for the last position only).
    """

    def __init__(self, config, **kwargs):
        super().__init__(config, **kwargs)
        lags = np.arange(config.max_len)[:, None] - np.arange(config.max_len)[None, :]
        self.lags = tf.constant(np.maximum(lags, 0), tf.int32)
        self.lower = tf.constant(lags >= 0)
        self.dropout = config.dropout(config.hidden_dropout)
        self.layer_norm = layer_norm()

    def build(self, input_shape):
        config = self.encoder_config
        self.coefficients = self.add_weight(
            name="coefficients", shape=(config.max_len, config.filter_bases),
            initializer=keras.initializers.RandomNormal(stddev=FILTER_INIT_STDDEV))
        self.bases = self.add_weight(
            name="bases", shape=(config.filter_bases, config.max_len),
            initializer=keras.initializers.RandomNormal(stddev=FILTER_INIT_STDDEV))
        if config.filter_reg_weight > 0:
            # A loss of the variables alone: Keras evaluates it once per `model.losses`.
            self.add_loss(lambda: config.filter_reg_weight * orthogonality_penalty(self.bases))
        super().build(input_shape)

    def filter_matrix(self):
        """[max_len, max_len] `W`: row t holds the weights of positions 0 .. t at t."""
        taps = tf.matmul(self.coefficients, tf.math.l2_normalize(self.bases, axis=1))  # (t, lag)
        return tf.where(self.lower, tf.gather(taps, self.lags, batch_dims=1), 0.0)

    def call(self, hidden, training=None, last_position_only=False, dropout_seed=None):
        compute = self.encoder_config.compute_dtype
        width = tf.shape(hidden)[1]
        matrix = self.filter_matrix()[-width:, -width:]  # (W, W): the window's positions
        queries = hidden
        if last_position_only:
            matrix, queries = matrix[-1:], hidden[:, -1:]
        filtered = tf.matmul(tf.cast(matrix, compute)[None], tf.cast(hidden, compute))  # (B, Q, D)
        output = self.dropout(filtered, training=training, seed=dropout_seed)
        return self.layer_norm(tf.cast(output, queries.dtype) + queries)


@keras.utils.register_keras_serializable("iclrec_tf")
class FilterBlock(Block):
    """Padding set to zero, `PositionFilter`, then `FeedForward`: the `filter` encoder's block.

    Causal: `W` is lower triangular, so a position's output does not depend on
    the items after it. No attention, and no position embeddings before the
    blocks (`uses_positions`): the filter's weights depend on the position.
    Its context is which positions hold items; its two dropout masks are the
    filter's and the feed-forward output's.

    Example:
      >>> config = EncoderConfig.from_train_config(
      ...     TrainConfig(encoder="filter", filter_bases=16), item_size=100)
      >>> encoder = SequenceEncoder(config)  # its blocks are FilterBlocks
    """

    uses_positions = False

    def __init__(self, config, **kwargs):
        super().__init__(config, **kwargs)
        self.position_filter = PositionFilter(config, name="filter")
        self.feed_forward = FeedForward(config, name="intermediate")

    @staticmethod
    def context_of(item_ids):
        return tf.cast(item_ids > 0, tf.float32)

    @property
    def dropouts(self):
        return [self.position_filter.dropout, self.feed_forward.dropout]

    def _forward(self, hidden, is_item, training, last_position_only, dropout_seeds):
        seeds = dropout_seeds or (None, None)
        hidden = hidden * is_item[..., None]  # (B, L, D): padding and masked items as zeros
        hidden = self.position_filter(hidden, training=training,
                                      last_position_only=last_position_only,
                                      dropout_seed=seeds[0])
        return self.feed_forward(hidden, training=training, dropout_seed=seeds[1])

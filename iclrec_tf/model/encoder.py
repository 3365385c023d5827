"""The SASRec-style sequence encoder of ICLRec.

Read top to bottom: `EncoderConfig`, the attention mask, then the layers from
the inside out: `SelfAttention` and `FeedForward`, each "sublayer -> dropout ->
residual -> LayerNorm" as in the reference (post-norm, BERT style), a
`TransformerBlock` of the two, and the `SequenceEncoder`: embeddings -> blocks.
The CPU kernels they call are in `iclrec_tf.model.kernels`.

With `compute_dtype="bfloat16"` the sublayers' matmuls, GELU and dropout
run in bfloat16 (Keras's `mixed_bfloat16` policy: float32 variables).
The residual stream, every LayerNorm, the attention softmax, the embeddings
and the encoder's output stay float32, so the losses, scores and k-means after
it are float32 as before.
"""

import dataclasses
import math

import tensorflow as tf
import tf_keras as keras

from iclrec_tf.model.kernels import Dropout, LayerNormalization, gelu

# The reference's LayerNorm puts epsilon inside the square root, as Keras does.
LAYER_NORM_EPSILON = 1e-12
# Additive attention mask of the reference; not -inf: a left-padded query whose
# keys are all masked then attends to every key, exactly as the reference does.
MASK_VALUE = -10000.0
# The widths `encode_by_length` groups rows into (and the encoder's `max_len`):
# histories are short (Toys: two train inputs in three have at most 4 items), so most
# rows need 4 or 8 positions, not 50. A group of 4 cut the CPU time of ICLRec+'s step by
# 12-18% at one thread; more groups cut no more, as each adds a pass's fixed cost
# (docs/BENCHMARKS.md).
GROUP_WIDTHS = (4, 8, 16, 32)


@dataclasses.dataclass(frozen=True)
class EncoderConfig:
    """The encoder's hyper-parameters, shared by all its layers.

    Their defaults are `TrainConfig`'s; `from_train_config` is how a run makes one.

    Attributes:
      item_size: vocabulary size; id 0 is padding: its embedding row is never
        trained, as in the reference, and the attention mask hides it as a key.
      max_len: sequence length, the number of learned positions.
      hidden_size: model width (64 in the reference).
      num_blocks: transformer blocks.
      num_heads: attention heads; scores are scaled by `1 / sqrt(hidden_size / num_heads)`.
      hidden_dropout: dropout after the embeddings and in every sublayer.
      attention_dropout: dropout on attention probabilities.
      initializer_range: stddev of the normal initializer of every kernel and
        embedding.
      compute_dtype: "float32", or "bfloat16" for mixed precision (see the
        module docstring).
      recompute: in training, each block's forward pass runs again in the
        backward pass instead of keeping its activations (`TransformerBlock`).
    """

    item_size: int
    max_len: int
    hidden_size: int
    num_blocks: int
    num_heads: int
    hidden_dropout: float
    attention_dropout: float
    initializer_range: float
    compute_dtype: str = "float32"
    recompute: bool = False

    @classmethod
    def from_train_config(cls, config, item_size):
        """The encoder of a `TrainConfig`, over `item_size` ids."""
        return cls(item_size=item_size, max_len=config.max_seq_length,
                   hidden_size=config.hidden_size, num_blocks=config.num_blocks,
                   num_heads=config.num_heads, hidden_dropout=config.hidden_dropout,
                   attention_dropout=config.attention_dropout,
                   initializer_range=config.initializer_range,
                   compute_dtype=config.mixed_precision,
                   recompute=config.recompute_blocks)

    @property
    def head_size(self):
        return self.hidden_size // self.num_heads

    @property
    def sublayer_policy(self):
        """The Keras dtype policy of the layers inside a sublayer."""
        return "mixed_bfloat16" if self.compute_dtype == "bfloat16" else "float32"

    def dense(self, units, name):
        """A dense layer with the reference's initialisation: normal kernel, zero bias."""
        return keras.layers.Dense(
            units, name=name, bias_initializer="zeros", dtype=self.sublayer_policy,
            kernel_initializer=keras.initializers.RandomNormal(stddev=self.initializer_range))

    def dropout(self, rate):
        """A sublayer's dropout, in its compute dtype."""
        return Dropout(rate, dtype=self.sublayer_policy)

    def embedding(self, rows, name):
        """An embedding table with the reference's normal initialisation."""
        return keras.layers.Embedding(
            rows, self.hidden_size, name=name,
            embeddings_initializer=keras.initializers.RandomNormal(
                stddev=self.initializer_range))


def _layer_norm():
    # float32 whatever the compute dtype: mean and variance in bfloat16 lose too much.
    return LayerNormalization(epsilon=LAYER_NORM_EPSILON, name="LayerNorm", dtype="float32")


def attention_bias(item_ids):
    """[batch, 1, len, len] additive mask: -10000 where a key is padding or in the future."""
    length = tf.shape(item_ids)[1]
    key_is_item = tf.cast(item_ids > 0, tf.float32)[:, None, None, :]
    causal = tf.linalg.band_part(tf.ones((length, length)), -1, 0)[None, None]
    return (1.0 - key_is_item * causal) * MASK_VALUE


class EncoderLayer(keras.layers.Layer):
    """A layer built from an `EncoderConfig`, which is its whole Keras config.

    Args:
      config: the `EncoderConfig`.
    """

    def __init__(self, config, **kwargs):
        super().__init__(**kwargs)
        self.encoder_config = config

    def get_config(self):
        return {**super().get_config(), **dataclasses.asdict(self.encoder_config)}

    @classmethod
    def from_config(cls, config):
        fields = {field.name for field in dataclasses.fields(EncoderConfig)}
        encoder_config = EncoderConfig(**{k: v for k, v in config.items() if k in fields})
        return cls(encoder_config, **{k: v for k, v in config.items() if k not in fields})


@keras.utils.register_keras_serializable("iclrec_tf")
class SelfAttention(EncoderLayer):
    """Multi-head self-attention with the reference's layer names and mask.

    Call arguments:
      hidden: [batch, len, hidden].
      bias: [batch, 1, len, len] additive attention mask.
      training: whether dropout is active.
      last_position_only: attend from the last position only (inference of
        the next item needs nothing else from the last block).
      dropout_seeds: optional seeds of the two dropouts' masks (`Dropout`).

    Returns:
      [batch, len, hidden] (or [batch, 1, hidden] for the last position only):
      `LayerNorm(dropout(dense(attention)) + hidden)`.
    """

    def __init__(self, config, **kwargs):
        super().__init__(config, **kwargs)
        self.query = config.dense(config.hidden_size, "query")
        self.key = config.dense(config.hidden_size, "key")
        self.value = config.dense(config.hidden_size, "value")
        self.dense = config.dense(config.hidden_size, "dense")
        self.probability_dropout = config.dropout(config.attention_dropout)
        self.output_dropout = config.dropout(config.hidden_dropout)
        self.layer_norm = _layer_norm()

    def build(self, input_shape):
        # Their kernels are used concatenated (see `call`), never through the layers.
        for layer in (self.query, self.key, self.value):
            with tf.name_scope(layer.name):  # the names a call would give
                layer.build(input_shape)
        super().build(input_shape)

    def call(self, hidden, bias, training=None, last_position_only=False,
             dropout_seeds=(None, None)):
        config = self.encoder_config
        batch, length = tf.shape(hidden)[0], tf.shape(hidden)[1]
        compute = config.compute_dtype
        # Query, key and value in one matmul: their kernels side by side.
        kernel = tf.concat([self.query.kernel, self.key.kernel, self.value.kernel], axis=1)
        offset = tf.concat([self.query.bias, self.key.bias, self.value.bias], axis=0)
        rows = tf.cast(tf.reshape(hidden, (-1, config.hidden_size)), compute)
        projected = tf.nn.bias_add(tf.matmul(rows, tf.cast(kernel, compute)),
                                   tf.cast(offset, compute))  # (B*L, 3*D)
        projected = tf.reshape(projected,
                               (batch, length, 3, config.num_heads, config.head_size))
        query, key, value = tf.unstack(tf.transpose(projected, (2, 0, 3, 1, 4)))  # (B, H, L, D/H)
        queries = hidden
        if last_position_only:
            query, queries, bias = query[:, :, -1:], hidden[:, -1:], bias[:, :, -1:]
        # Scores and softmax in float32: next to the -10000 mask, bfloat16 keeps no
        # digit of a score, and a padding query (every key masked) needs them all.
        scores = tf.cast(tf.matmul(query, key, transpose_b=True), tf.float32)
        scores = scores / math.sqrt(config.head_size) + bias
        probabilities = tf.cast(tf.nn.softmax(scores), compute)
        probabilities = self.probability_dropout(probabilities, training=training,
                                                 seed=dropout_seeds[0])
        context = tf.transpose(tf.matmul(probabilities, value), (0, 2, 1, 3))  # (B, Q, H, D/H)
        context = tf.reshape(context, (-1, config.hidden_size))  # (B*Q, D)
        output = self.output_dropout(self.dense(context), training=training,
                                     seed=dropout_seeds[1])
        output = tf.cast(tf.reshape(output, tf.shape(queries)), queries.dtype)
        return self.layer_norm(output + queries)


@keras.utils.register_keras_serializable("iclrec_tf")
class FeedForward(EncoderLayer):
    """Position-wise `hidden -> 4 * hidden -> hidden` with exact (erf) GELU.

    Call arguments:
      hidden: [batch, len, hidden].
      training: whether dropout is active.
      dropout_seed: optional seed of the dropout's mask (`Dropout`).

    Returns:
      [batch, len, hidden]: `LayerNorm(dropout(ffn(hidden)) + hidden)`.
    """

    def __init__(self, config, **kwargs):
        super().__init__(config, **kwargs)
        self.dense_1 = config.dense(4 * config.hidden_size, "dense_1")
        self.dense_2 = config.dense(config.hidden_size, "dense_2")
        self.dropout = config.dropout(config.hidden_dropout)
        self.layer_norm = _layer_norm()

    def call(self, hidden, training=None, dropout_seed=None):
        rows = tf.reshape(hidden, (-1, self.encoder_config.hidden_size))  # (B*L, D)
        inner = self.dense_1(rows)
        # In inference, TensorFlow's own GELU: oneDNN fuses it into the matmul.
        inner = gelu(inner) if training else tf.nn.gelu(inner, approximate=False)
        output = self.dropout(self.dense_2(inner), training=training, seed=dropout_seed)
        output = tf.cast(tf.reshape(output, tf.shape(hidden)), hidden.dtype)
        return self.layer_norm(output + hidden)


@keras.utils.register_keras_serializable("iclrec_tf")
class TransformerBlock(EncoderLayer):
    """`SelfAttention` then `FeedForward`; arguments as theirs.

    With `recompute` in its config, a training call keeps only the block's input
    for the backward pass, which runs the block's forward pass again
    (`tf.recompute_grad`): the activations of every block but one are never held
    at once. Its three dropout masks are drawn as seeds before the block, so the
    backward pass redraws the same masks and the gradient is exact.

    Call arguments:
      dropout_seeds: optional seeds of the block's three dropout masks
        (attention probabilities, attention output, feed-forward output).
    """

    def __init__(self, config, **kwargs):
        super().__init__(config, **kwargs)
        self.attention = SelfAttention(config, name="attention")
        self.feed_forward = FeedForward(config, name="intermediate")

    def call(self, hidden, bias, training=None, last_position_only=False, dropout_seeds=None):
        if not (training and self.encoder_config.recompute):
            return self._forward(hidden, bias, training, last_position_only, dropout_seeds)
        if dropout_seeds is None:
            dropout_seeds = [layer.draw_seed() for layer in self.dropouts]

        # The mask and the seeds are captured, not arguments: they take no gradient.
        def forward(hidden):
            return self._forward(hidden, bias, training, last_position_only, dropout_seeds)

        return tf.recompute_grad(forward)(hidden)

    @property
    def dropouts(self):
        """The block's `Dropout` layers, in the order of `dropout_seeds`."""
        return [self.attention.probability_dropout, self.attention.output_dropout,
                self.feed_forward.dropout]

    def _forward(self, hidden, bias, training, last_position_only, dropout_seeds):
        seeds = dropout_seeds or (None, None, None)
        hidden = self.attention(hidden, bias, training=training,
                                last_position_only=last_position_only,
                                dropout_seeds=tuple(seeds[:2]))
        return self.feed_forward(hidden, training=training, dropout_seed=seeds[2])


@keras.utils.register_keras_serializable("iclrec_tf")
class SequenceEncoder(EncoderLayer):
    """Item ids -> one hidden state per position (SASRec, as in ICLRec).

    Args:
      config: an `EncoderConfig`.

    Call arguments:
      item_ids: [batch, max_len] int, left-padded with 0; a narrower window is
        taken as the last positions.
      training: whether dropout is active.
      last_position_only: compute the last block for the last position only.

    Returns:
      [batch, max_len, hidden_size] hidden states of every position, or
      [batch, 1, hidden_size] of the last one with `last_position_only`.

    Example:
      >>> config = EncoderConfig.from_train_config(TrainConfig(num_blocks=2), item_size=100)
      >>> encoder = SequenceEncoder(config)
      >>> encoder(tf.zeros((8, 50), tf.int32)).shape
      TensorShape([8, 50, 64])
    """

    def __init__(self, config, **kwargs):
        super().__init__(config, **kwargs)
        self.item_embeddings = config.embedding(config.item_size, "item_embeddings")
        self.position_embeddings = config.embedding(config.max_len, "position_embeddings")
        self.layer_norm = _layer_norm()
        self.dropout = Dropout(config.hidden_dropout, dtype="float32")
        self.blocks = [TransformerBlock(config, name=f"layer_{i}")
                       for i in range(config.num_blocks)]

    @property
    def embedding_table(self):
        """[item_size, hidden] item embeddings, shared by input and output."""
        return self.item_embeddings.embeddings

    def call(self, item_ids, training=None, last_position_only=False):
        # A window narrower than max_len holds the last positions of a left-padded
        # sequence (serving trims padding the last position cannot see).
        max_len = self.encoder_config.max_len
        positions = tf.range(max_len - tf.shape(item_ids)[1], max_len)
        items = self.item_embeddings(item_ids)
        # The padding row keeps its initial values, as with PyTorch's padding_idx=0
        # in the reference (its released weights still have the row at std 0.02).
        items = tf.where((item_ids > 0)[..., None], items, tf.stop_gradient(items))
        hidden = items + self.position_embeddings(positions)[None]
        hidden = self.dropout(self.layer_norm(hidden), training=training)  # (B, L, D)
        bias = attention_bias(item_ids)  # (B, 1, L, L)
        for index, block in enumerate(self.blocks):
            last_block = index == len(self.blocks) - 1
            hidden = block(hidden, bias, training=training,
                           last_position_only=last_position_only and last_block)
        return hidden


def encode_by_length(encoder, item_ids, lengths, training=None, last_position_only=False):
    """`encoder(item_ids)`, each row encoded only as wide as its length needs.

    Rows are grouped by length, and each group is encoded at the narrowest of
    `GROUP_WIDTHS` (or `max_len`) that holds it: nine positions in ten of these
    datasets are padding. An item's state does not depend on the padding before
    it (padding keys are masked), so the states of the items are the same as
    in `encoder(item_ids)`; the padding positions left of a group's width come
    back as zeros, so a loss may read the items' positions only. A row of
    length 0 is encoded at full width (its output depends on the width).

    Args:
      encoder: a `SequenceEncoder`.
      item_ids: [batch, width] left-padded ids, `width <= max_len`.
      lengths: [batch] int, positions each row needs (its items, masked ones
        included, from its first to its last).
      training: whether dropout is active.
      last_position_only: as the encoder's.

    Returns:
      [batch, width, hidden] ([batch, 1, hidden] with `last_position_only`).
    """
    max_len = encoder.encoder_config.max_len
    hidden_size = encoder.encoder_config.hidden_size
    widths = [w for w in GROUP_WIDTHS if w < max_len] + [max_len]
    width = tf.shape(item_ids)[1]
    lengths = tf.cast(lengths, tf.int32)
    lengths = tf.where(lengths > 0, lengths, max_len)
    # The number of widths a row is longer than: the index of the first that holds it.
    group = tf.reduce_sum(
        tf.cast(lengths[:, None] > tf.constant(widths[:-1], tf.int32)[None, :], tf.int32),
        axis=1)
    rows = tf.dynamic_partition(tf.range(tf.shape(item_ids)[0]), group, len(widths))
    parts = tf.dynamic_partition(item_ids, group, len(widths))
    out_width = 1 if last_position_only else width

    def encode(part, group_width):
        group_width = tf.minimum(group_width, width)
        states = encoder(part[:, width - group_width:], training=training,
                         last_position_only=last_position_only)
        return tf.pad(states, [[0, 0], [out_width - tf.shape(states)[1], 0], [0, 0]])

    if training:
        # No cond: its gradient is a third of a training step's tracing time, and a
        # training batch rarely has an empty group (its ops on no rows cost little).
        states = [encode(part, w) for part, w in zip(parts, widths, strict=True)]
    else:
        # The cond skips the ops of an empty group: most of a small batch's latency.
        empty = tf.zeros([0, out_width, hidden_size])
        states = [tf.cond(tf.size(part) > 0, lambda part=part, w=w: encode(part, w),
                          lambda: empty)
                  for part, w in zip(parts, widths, strict=True)]
    return tf.dynamic_stitch(rows, states)

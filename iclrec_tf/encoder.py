"""The SASRec-style sequence encoder of ICLRec.

Read top to bottom: embeddings -> `TransformerBlock` x L, each an attention
sublayer then a feed-forward sublayer, both "sublayer -> dropout -> residual ->
LayerNorm" as in the reference (post-norm, BERT style). `Dropout`, `gelu` and
`LayerNormalization` compute what Keras's and TensorFlow's do, more cheaply on
CPU (see docs/BENCHMARKS.md, "Training speed and memory").
"""

import math

import tensorflow as tf
import tf_keras as keras

# The reference's LayerNorm puts epsilon inside the square root, as Keras does.
LAYER_NORM_EPSILON = 1e-12
# Additive attention mask of the reference; not -inf: a left-padded query whose
# keys are all masked then attends to every key, exactly as the reference does.
MASK_VALUE = -10000.0


def _dense(units, initializer_range, name):
    return keras.layers.Dense(
        units, name=name,
        kernel_initializer=keras.initializers.RandomNormal(stddev=initializer_range),
        bias_initializer="zeros")


def attention_bias(item_ids):
    """[batch, 1, len, len] additive mask: -10000 where a key is padding or in the future."""
    length = tf.shape(item_ids)[1]
    key_is_item = tf.cast(item_ids > 0, tf.float32)[:, None, None, :]
    causal = tf.linalg.band_part(tf.ones((length, length)), -1, 0)[None, None]
    return (1.0 - key_is_item * causal) * MASK_VALUE


@keras.utils.register_keras_serializable("iclrec_tf")
class Dropout(keras.layers.Dropout):
    """`keras.layers.Dropout` with a cheaper keep mask at rate 0.5.

    At rate 0.5 (the rate of every preset) an element is kept when the top bit of
    its own random byte is 0, the bytes drawn eight to a random int64: exactly
    Bernoulli(0.5), with a quarter of the random bits of one float per element.
    Kept elements are scaled by 2, as Keras does. Other rates are Keras's own.
    """

    def call(self, inputs, training=None):
        if self.rate != 0.5 or self.noise_shape is not None:
            return super().call(inputs, training=training)
        if training is None:
            training = keras.backend.learning_phase()
        return tf.__internal__.smart_cond.smart_cond(
            training, lambda: tf.where(self._keep_half(inputs), inputs * 2.0, 0.0),
            lambda: tf.identity(inputs))

    def _keep_half(self, inputs):
        size = tf.size(inputs, out_type=tf.int64)
        seed = self._random_generator.random_uniform((2,), 0, 2**31 - 1, tf.int32)
        words = tf.random.stateless_uniform(((size + 7) // 8,), seed, minval=None,
                                            maxval=None, dtype=tf.int64)
        random_bytes = tf.reshape(tf.bitcast(words, tf.uint8), (-1,))[:size]
        return tf.reshape(random_bytes < 128, tf.shape(inputs))


def _normal_cdf(x):
    return 0.5 * tf.math.erfc(-x * math.sqrt(0.5))


@tf.custom_gradient
def gelu(x):
    """Exact (erf) GELU, `x * Phi(x)`, as `tf.nn.gelu(x, approximate=False)`.

    The same forward arithmetic; the gradient, `Phi(x) + x * phi(x)`, is written
    out so that the backward pass keeps only `x` (autodiff keeps three tensors of
    its size) and runs fewer element-wise ops.
    """

    def gradient(upstream):
        density = tf.exp(-0.5 * tf.square(x)) * (1.0 / math.sqrt(2.0 * math.pi))
        return upstream * (_normal_cdf(x) + x * density)

    return x * _normal_cdf(x), gradient


@keras.utils.register_keras_serializable("iclrec_tf")
class LayerNormalization(keras.layers.LayerNormalization):
    """`keras.layers.LayerNormalization` over the last axis, with a written-out gradient.

    The forward arithmetic is Keras's own (unfused: its fused kernel cannot take
    an epsilon below 1e-5); the backward pass is the closed form
    `dx = (g' - mean(g') - x^ * mean(g' * x^)) / sigma` with `g' = gamma * g` and
    `x^` the normalised input: fewer element-wise ops than autodiff's, and only
    `x` kept for the backward pass.
    """

    def call(self, inputs):
        if self.axis != [inputs.shape.rank - 1]:
            return super().call(inputs)
        return _layer_norm(inputs, tf.convert_to_tensor(self.gamma),
                           tf.convert_to_tensor(self.beta), self.epsilon)


def _layer_norm(inputs, gamma, beta, epsilon):
    @tf.custom_gradient
    def normalize(x, gamma, beta):
        mean, variance = tf.nn.moments(x, [-1], keepdims=True)
        inverse_std = tf.math.rsqrt(variance + epsilon)
        scale = inverse_std * gamma
        output = x * scale + (beta - mean * scale)

        def gradient(upstream):
            normalized = (x - mean) * inverse_std
            scaled = upstream * gamma
            inputs_gradient = inverse_std * (
                scaled - tf.reduce_mean(scaled, -1, keepdims=True)
                - normalized * tf.reduce_mean(scaled * normalized, -1, keepdims=True))
            outer_axes = list(range(x.shape.rank - 1))
            return (inputs_gradient, tf.reduce_sum(upstream * normalized, outer_axes),
                    tf.reduce_sum(upstream, outer_axes))

        return output, gradient

    return normalize(inputs, gamma, beta)


@keras.utils.register_keras_serializable("iclrec_tf")
class SelfAttention(keras.layers.Layer):
    """Multi-head self-attention with the reference's layer names and mask.

    Args:
      hidden_size: model width.
      num_heads: heads; scores are scaled by `1 / sqrt(hidden_size / num_heads)`.
      attention_dropout: dropout on the attention probabilities.
      hidden_dropout: dropout on the output before the residual.
      initializer_range: stddev of the normal kernel initializer.

    Call arguments:
      hidden: [batch, len, hidden].
      bias: [batch, 1, len, len] additive attention mask.
      training: whether dropout is active.
      last_position_only: attend from the last position only (inference of
        the next item needs nothing else from the last block).

    Returns:
      [batch, len, hidden] (or [batch, 1, hidden] for the last position only):
      `LayerNorm(dropout(dense(attention)) + hidden)`.
    """

    def __init__(self, hidden_size, num_heads, attention_dropout, hidden_dropout,
                 initializer_range, **kwargs):
        super().__init__(**kwargs)
        self.hidden_size = hidden_size
        self.num_heads = num_heads
        self.attention_dropout = attention_dropout
        self.hidden_dropout = hidden_dropout
        self.initializer_range = initializer_range
        self.head_size = hidden_size // num_heads
        self.query = _dense(hidden_size, initializer_range, "query")
        self.key = _dense(hidden_size, initializer_range, "key")
        self.value = _dense(hidden_size, initializer_range, "value")
        self.dense = _dense(hidden_size, initializer_range, "dense")
        self.probability_dropout = Dropout(attention_dropout)
        self.output_dropout = Dropout(hidden_dropout)
        self.layer_norm = LayerNormalization(epsilon=LAYER_NORM_EPSILON, name="LayerNorm")

    def build(self, input_shape):
        # Their kernels are used concatenated (see `call`), never through the layers.
        for layer in (self.query, self.key, self.value):
            with tf.name_scope(layer.name):  # the names a call would give
                layer.build(input_shape)
        super().build(input_shape)

    def call(self, hidden, bias, training=None, last_position_only=False):
        batch, length = tf.shape(hidden)[0], tf.shape(hidden)[1]
        # Query, key and value in one matmul: their kernels side by side.
        kernel = tf.concat([self.query.kernel, self.key.kernel, self.value.kernel], axis=1)
        offset = tf.concat([self.query.bias, self.key.bias, self.value.bias], axis=0)
        projected = tf.nn.bias_add(tf.matmul(tf.reshape(hidden, (-1, self.hidden_size)),
                                             kernel), offset)  # (B*L, 3*D)
        projected = tf.reshape(projected, (batch, length, 3, self.num_heads, self.head_size))
        query, key, value = tf.unstack(tf.transpose(projected, (2, 0, 3, 1, 4)))  # (B, H, L, D/H)
        queries = hidden
        if last_position_only:
            query, queries, bias = query[:, :, -1:], hidden[:, -1:], bias[:, :, -1:]
        scores = tf.matmul(query, key, transpose_b=True) / math.sqrt(self.head_size) + bias
        probabilities = self.probability_dropout(tf.nn.softmax(scores), training=training)
        context = tf.transpose(tf.matmul(probabilities, value), (0, 2, 1, 3))  # (B, Q, H, D/H)
        context = tf.reshape(context, (-1, self.hidden_size))  # (B*Q, D)
        output = self.output_dropout(self.dense(context), training=training)
        return self.layer_norm(tf.reshape(output, tf.shape(queries)) + queries)

    def get_config(self):
        return {**super().get_config(), "hidden_size": self.hidden_size,
                "num_heads": self.num_heads, "attention_dropout": self.attention_dropout,
                "hidden_dropout": self.hidden_dropout,
                "initializer_range": self.initializer_range}


@keras.utils.register_keras_serializable("iclrec_tf")
class FeedForward(keras.layers.Layer):
    """Position-wise `hidden -> 4 * hidden -> hidden` with exact (erf) GELU.

    Args:
      hidden_size: model width; the inner width is four times it.
      hidden_dropout: dropout on the output before the residual.
      initializer_range: stddev of the normal kernel initializer.

    Call arguments:
      hidden: [batch, len, hidden].
      training: whether dropout is active.

    Returns:
      [batch, len, hidden]: `LayerNorm(dropout(ffn(hidden)) + hidden)`.
    """

    def __init__(self, hidden_size, hidden_dropout, initializer_range, **kwargs):
        super().__init__(**kwargs)
        self.hidden_size = hidden_size
        self.hidden_dropout = hidden_dropout
        self.initializer_range = initializer_range
        self.dense_1 = _dense(4 * hidden_size, initializer_range, "dense_1")
        self.dense_2 = _dense(hidden_size, initializer_range, "dense_2")
        self.dropout = Dropout(hidden_dropout)
        self.layer_norm = LayerNormalization(epsilon=LAYER_NORM_EPSILON, name="LayerNorm")

    def call(self, hidden, training=None):
        rows = tf.reshape(hidden, (-1, self.hidden_size))  # (B*L, D)
        inner = self.dense_1(rows)
        # In inference, TensorFlow's own GELU: oneDNN fuses it into the matmul.
        inner = gelu(inner) if training else tf.nn.gelu(inner, approximate=False)
        output = self.dropout(self.dense_2(inner), training=training)
        return self.layer_norm(tf.reshape(output, tf.shape(hidden)) + hidden)

    def get_config(self):
        return {**super().get_config(), "hidden_size": self.hidden_size,
                "hidden_dropout": self.hidden_dropout,
                "initializer_range": self.initializer_range}


@keras.utils.register_keras_serializable("iclrec_tf")
class TransformerBlock(keras.layers.Layer):
    """`SelfAttention` then `FeedForward`; arguments as theirs."""

    def __init__(self, hidden_size, num_heads, attention_dropout, hidden_dropout,
                 initializer_range, **kwargs):
        super().__init__(**kwargs)
        self.attention = SelfAttention(hidden_size, num_heads, attention_dropout,
                                       hidden_dropout, initializer_range, name="attention")
        self.feed_forward = FeedForward(hidden_size, hidden_dropout, initializer_range,
                                        name="intermediate")

    def call(self, hidden, bias, training=None, last_position_only=False):
        hidden = self.attention(hidden, bias, training=training,
                                last_position_only=last_position_only)
        return self.feed_forward(hidden, training=training)

    def get_config(self):
        attention = self.attention
        return {**super().get_config(), "hidden_size": attention.hidden_size,
                "num_heads": attention.num_heads,
                "attention_dropout": attention.attention_dropout,
                "hidden_dropout": attention.hidden_dropout,
                "initializer_range": attention.initializer_range}


@keras.utils.register_keras_serializable("iclrec_tf")
class SequenceEncoder(keras.layers.Layer):
    """Item ids -> one hidden state per position (SASRec, as in ICLRec).

    Args:
      item_size: vocabulary size; id 0 is padding: its embedding row is never
        trained, as in the reference, and the attention mask hides it as a key.
      max_len: sequence length, the number of learned positions.
      hidden_size: model width (64 in the reference).
      num_blocks: transformer blocks.
      num_heads: attention heads.
      hidden_dropout: dropout after the embeddings and in every sublayer.
      attention_dropout: dropout on attention probabilities.
      initializer_range: stddev of the normal initializer of every kernel
        and embedding.

    Call arguments:
      item_ids: [batch, max_len] int, left-padded with 0; a narrower window is
        taken as the last positions.
      training: whether dropout is active.
      last_position_only: compute the last block for the last position only.

    Returns:
      [batch, max_len, hidden_size] hidden states of every position, or
      [batch, 1, hidden_size] of the last one with `last_position_only`.

    Example:

    >>> encoder = SequenceEncoder(item_size=100, max_len=50, num_blocks=2)
    >>> encoder(tf.zeros((8, 50), tf.int32)).shape
    TensorShape([8, 50, 64])
    """

    def __init__(self, item_size, max_len=50, hidden_size=64, num_blocks=2, num_heads=2,
                 hidden_dropout=0.5, attention_dropout=0.5, initializer_range=0.02,
                 **kwargs):
        super().__init__(**kwargs)
        self.item_size = item_size
        self.max_len = max_len
        self.hidden_size = hidden_size
        self.num_blocks = num_blocks
        self.num_heads = num_heads
        self.hidden_dropout = hidden_dropout
        self.attention_dropout = attention_dropout
        self.initializer_range = initializer_range
        self.item_embeddings = keras.layers.Embedding(
            item_size, hidden_size,
            embeddings_initializer=keras.initializers.RandomNormal(stddev=initializer_range),
            name="item_embeddings")
        self.position_embeddings = keras.layers.Embedding(
            max_len, hidden_size,
            embeddings_initializer=keras.initializers.RandomNormal(stddev=initializer_range),
            name="position_embeddings")
        self.layer_norm = LayerNormalization(epsilon=LAYER_NORM_EPSILON, name="LayerNorm")
        self.dropout = Dropout(hidden_dropout)
        self.blocks = [
            TransformerBlock(hidden_size, num_heads, attention_dropout, hidden_dropout,
                             initializer_range, name=f"layer_{i}")
            for i in range(num_blocks)
        ]

    def call(self, item_ids, training=None, last_position_only=False):
        # A window narrower than max_len holds the last positions of a left-padded
        # sequence (serving trims padding the last position cannot see).
        positions = tf.range(self.max_len - tf.shape(item_ids)[1], self.max_len)
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

    @property
    def embedding_table(self):
        """[item_size, hidden] item embeddings, shared by input and output."""
        return self.item_embeddings.embeddings

    def get_config(self):
        return {**super().get_config(), "item_size": self.item_size,
                "max_len": self.max_len, "hidden_size": self.hidden_size,
                "num_blocks": self.num_blocks, "num_heads": self.num_heads,
                "hidden_dropout": self.hidden_dropout,
                "attention_dropout": self.attention_dropout,
                "initializer_range": self.initializer_range}

"""CPU kernels of the encoder: what Keras's and TensorFlow's ops compute, more cheaply.

- `Dropout` at rate 0.5 draws one random byte per element, not one float;
- `gelu` and `LayerNormalization` have written-out gradients that keep only
  their input for the backward pass, with fewer element-wise ops than autodiff.

Each equals its Keras or TensorFlow counterpart (tests/model/test_kernels.py);
docs/BENCHMARKS.md, "Training speed and memory", has what they save.
"""

import math

import tensorflow as tf
import tf_keras as keras


@keras.utils.register_keras_serializable("iclrec_tf")
class Dropout(keras.layers.Dropout):
    """`keras.layers.Dropout` with a cheaper keep mask at rate 0.5, and a given seed.

    At rate 0.5 (the rate of every preset) an element is kept when the top bit of
    its own random byte is 0, the bytes drawn eight to a random int64: exactly
    Bernoulli(0.5), with a quarter of the random bits of one float per element.
    Kept elements are scaled by 2, as Keras does. Other rates are Keras's own, but
    with a seed given: then one stateless uniform float an element.

    Call arguments:
      inputs: the tensor to drop elements of.
      training: whether dropout is active.
      seed: optional [2] int32 seed (from `draw_seed`) of a stateless mask: the
        same seed, the same mask. A block recomputed in the backward pass
        (`--recompute-blocks`) needs the forward pass's masks again.
    """

    def call(self, inputs, training=None, seed=None):
        if seed is not None and self.noise_shape is not None:
            raise ValueError("a seeded Dropout takes no noise_shape")
        if seed is None and (self.rate != 0.5 or self.noise_shape is not None):
            return super().call(inputs, training=training)
        if training is None:
            training = keras.backend.learning_phase()
        return tf.__internal__.smart_cond.smart_cond(
            training, lambda: self._drop(inputs, seed), lambda: tf.identity(inputs))

    def draw_seed(self):
        """[2] int32: the seed of a mask, drawn from the layer's random stream."""
        return self._random_generator.random_uniform((2,), 0, 2**31 - 1, tf.int32)

    def _drop(self, inputs, seed):
        if self.rate != 0.5:  # only with a seed given: Keras's own draw otherwise
            keep = tf.random.stateless_uniform(tf.shape(inputs), seed) >= self.rate
            return tf.where(keep, inputs / (1.0 - self.rate), 0.0)
        size = tf.size(inputs, out_type=tf.int64)
        if seed is None:  # drawn after the size, as runs before the seed argument did
            seed = self.draw_seed()
        words = tf.random.stateless_uniform(((size + 7) // 8,), seed, minval=None,
                                            maxval=None, dtype=tf.int64)
        random_bytes = tf.reshape(tf.bitcast(words, tf.uint8), (-1,))[:size]
        keep = tf.reshape(random_bytes < 128, tf.shape(inputs))
        return tf.where(keep, inputs * 2.0, 0.0)


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

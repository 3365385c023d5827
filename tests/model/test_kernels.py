"""The CPU kernels (`iclrec_tf.model.kernels`) against Keras's and TensorFlow's own ops."""

import numpy as np
import tensorflow as tf
import tf_keras as keras

from iclrec_tf.model.kernels import Dropout, LayerNormalization, gelu


def test_half_dropout_keeps_half_and_doubles_exactly():
    inputs = tf.fill((1000, 1000), 1.7)
    outputs = Dropout(0.5)(inputs, training=True).numpy()
    kept = outputs != 0
    # 10^6 Bernoulli(0.5) draws: the kept fraction has standard deviation 0.0005, so
    # 0.003 is six of them; a mask of `byte < 127` (0.496) would fail.
    assert abs(kept.mean() - 0.5) < 0.003
    np.testing.assert_array_equal(outputs[kept], np.float32(1.7) * 2)  # exactly x / keep
    # Each element draws its own bit: rows, columns and neighbours are not tied.
    assert np.abs(kept.mean(axis=0) - 0.5).max() < 0.1
    assert np.abs(kept.mean(axis=1) - 0.5).max() < 0.1
    assert abs(np.mean(kept[:, 1:] == kept[:, :-1]) - 0.5) < 0.003


def test_half_dropout_draws_a_mask_of_odd_sizes_per_call():
    layer = Dropout(0.5)
    first = layer(tf.ones((3, 7, 5)), training=True).numpy()  # 105 elements, not 8k
    second = layer(tf.ones((3, 7, 5)), training=True).numpy()
    assert first.shape == (3, 7, 5) and set(np.unique(first)) <= {0.0, 2.0}
    assert not np.array_equal(first, second)


def test_half_dropout_is_seeded():
    def masks():
        keras.utils.set_random_seed(7)
        layer = Dropout(0.5)

        @tf.function
        def call(inputs):
            return layer(inputs, training=True)

        return [call(tf.ones((64, 50))).numpy() for _ in range(2)]

    first, second = masks(), masks()
    np.testing.assert_array_equal(first[0], second[0])
    np.testing.assert_array_equal(first[1], second[1])
    assert not np.array_equal(first[0], first[1])


def test_dropout_is_the_identity_at_rate_zero_or_in_inference():
    inputs = tf.random.normal((40, 30))
    np.testing.assert_array_equal(Dropout(0.0)(inputs, training=True), inputs)
    np.testing.assert_array_equal(Dropout(0.5)(inputs, training=False), inputs)


def test_other_dropout_rates_are_keras_dropout():
    outputs = Dropout(0.2)(tf.ones((500, 500)), training=True).numpy()
    assert abs(np.mean(outputs != 0) - 0.8) < 0.005
    np.testing.assert_allclose(outputs[outputs != 0], 1.25)


def test_gelu_is_exact_gelu_with_its_gradient():
    inputs = tf.constant(np.linspace(-8, 8, 4001), tf.float32)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(inputs)
        ours, keras_gelu = gelu(inputs), tf.nn.gelu(inputs, approximate=False)
    np.testing.assert_array_equal(ours, keras_gelu)
    # d/dx x Phi(x) = Phi(x) + x phi(x): 0.5 at 0; at x = sqrt(2), its maximum,
    # Phi = 0.92135 and x phi = sqrt(2) exp(-1) / sqrt(2 pi) = 0.20755, 1.1289 in all.
    gradient = tape.gradient(ours, inputs).numpy()
    np.testing.assert_allclose(gradient, tape.gradient(keras_gelu, inputs), atol=1e-6)
    assert gradient[2000] == 0.5 and abs(gradient.max() - 1.1289) < 1e-4


def test_layer_normalization_is_keras_with_the_same_gradients():
    inputs = tf.random.stateless_normal((4, 9, 64), (1, 2)) * 3.0 + 1.0
    upstream = tf.random.stateless_normal((4, 9, 64), (3, 4))
    ours, theirs = LayerNormalization(epsilon=1e-12), keras.layers.LayerNormalization(
        epsilon=1e-12)
    for layer in (ours, theirs):
        layer.build(inputs.shape)
        layer.gamma.assign(tf.random.stateless_normal((64,), (5, 6)))
        layer.beta.assign(tf.random.stateless_normal((64,), (7, 8)))
    gradients = []
    for layer in (ours, theirs):
        with tf.GradientTape() as tape:
            tape.watch(inputs)
            outputs = layer(inputs)
            loss = tf.reduce_sum(outputs * upstream)
        gradients.append((outputs, *tape.gradient(loss, [inputs, layer.gamma, layer.beta])))
    np.testing.assert_array_equal(gradients[0][0], gradients[1][0])
    for ours_gradient, keras_gradient in zip(gradients[0][1:], gradients[1][1:], strict=True):
        np.testing.assert_allclose(ours_gradient, keras_gradient, rtol=1e-5, atol=2e-5)


def test_a_given_seed_gives_its_own_mask_at_any_rate():
    inputs = tf.ones((400, 300))
    for rate, scale in ((0.5, 2.0), (0.2, 1.25)):
        layer = Dropout(rate)
        first, again, other = (layer(inputs, training=True, seed=tf.constant(seed)).numpy()
                               for seed in ([3, 9], [3, 9], [4, 9]))
        np.testing.assert_array_equal(first, again)
        assert not np.array_equal(first, other)
        assert abs(np.mean(first != 0) - (1 - rate)) < 0.005
        np.testing.assert_allclose(first[first != 0], scale)
        np.testing.assert_array_equal(layer(inputs, training=False, seed=tf.constant([3, 9])),
                                      inputs)

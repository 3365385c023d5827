import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras
from reference_numpy import encode, random_state_dict

from iclrec_tf.encoder import (
    Dropout,
    LayerNormalization,
    SequenceEncoder,
    attention_bias,
    gelu,
)
from iclrec_tf.reference import load_reference_weights


def _ids(batch=6, length=10, item_size=30, seed=0):
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, item_size, (batch, length)).astype(np.int32)
    for row, pad in enumerate([0, 3, 9, 1, length - 1, 5][:batch]):
        ids[row, :pad] = 0  # left padding, one row with a single item
    return ids


@pytest.mark.parametrize("num_blocks", [1, 3])
def test_matches_an_independent_numpy_forward_pass(num_blocks):
    encoder = SequenceEncoder(item_size=30, max_len=10, num_blocks=num_blocks)
    encoder(tf.zeros((1, 10), tf.int32))
    arrays = random_state_dict(item_size=30, num_blocks=num_blocks, max_len=10, seed=num_blocks)
    load_reference_weights(encoder, _as_npz(arrays))
    ids = _ids()
    ours = encoder(ids, training=False).numpy()
    np.testing.assert_allclose(ours, encode(arrays, ids), atol=2e-4)


def _as_npz(arrays, path=[]):  # noqa: B006  (one temp file per test session is enough)
    import tempfile

    handle = tempfile.NamedTemporaryFile(suffix=".npz", delete=False)
    np.savez(handle, **arrays)
    handle.close()
    return handle.name


def test_attention_bias_masks_padding_keys_and_the_future():
    bias = attention_bias(tf.constant([[0, 5, 7]])).numpy()[0, 0]
    # query i may see key j when j <= i and key j is an item
    np.testing.assert_array_equal(bias == 0, [[False, False, False],
                                              [False, True, False],
                                              [False, True, True]])
    assert np.all(bias[bias != 0] == -10000.0)


def test_real_positions_ignore_what_padding_holds():
    encoder = SequenceEncoder(item_size=30, max_len=10, num_blocks=2)
    ids = _ids(batch=1)
    ids[0, :3] = 0
    changed = ids.copy()
    changed[0, 7:] = [4, 5, 6]  # change the future: earlier real positions must not move
    before, after = encoder(ids).numpy(), encoder(changed).numpy()
    np.testing.assert_allclose(before[0, 3:7], after[0, 3:7], atol=1e-6)
    # padded positions see every key through the uniform -10000 shift, as the reference does
    assert not np.allclose(before[0, :3], after[0, :3], atol=1e-4)


def test_dropout_only_in_training():
    encoder = SequenceEncoder(item_size=30, max_len=10, num_blocks=1)
    ids = _ids()
    np.testing.assert_array_equal(encoder(ids, training=False), encoder(ids, training=False))
    assert not np.allclose(encoder(ids, training=True), encoder(ids, training=True))


def test_initialisation_follows_the_reference():
    encoder = SequenceEncoder(item_size=2000, max_len=50, num_blocks=1)
    encoder(tf.zeros((1, 50), tf.int32))
    table = encoder.embedding_table.numpy()
    assert abs(table.std() - 0.02) < 0.001 and abs(table.mean()) < 0.001
    block = encoder.blocks[0]
    assert np.all(block.attention.query.bias.numpy() == 0)
    assert np.all(block.feed_forward.layer_norm.gamma.numpy() == 1)
    assert abs(block.feed_forward.dense_1.kernel.numpy().std() - 0.02) < 0.002


def test_config_round_trip_and_reload_give_equal_outputs(tmp_path):
    encoder = SequenceEncoder(item_size=40, max_len=12, hidden_size=32, num_blocks=2,
                              num_heads=4, hidden_dropout=0.2, attention_dropout=0.3,
                              initializer_range=0.05, name="encoder")
    ids = _ids(length=12, item_size=40)
    expected = encoder(ids).numpy()
    config = encoder.get_config()
    clone = keras.layers.deserialize(keras.layers.serialize(encoder))
    assert clone.get_config() == config
    assert (clone.num_heads, clone.hidden_dropout, clone.initializer_range) == (4, 0.2, 0.05)
    inputs = keras.Input((12,), dtype=tf.int32)
    model = keras.Model(inputs, encoder(inputs))
    model.save_weights(str(tmp_path / "weights"))
    reloaded_inputs = keras.Input((12,), dtype=tf.int32)
    reloaded = keras.Model(reloaded_inputs, clone(reloaded_inputs))
    reloaded.load_weights(str(tmp_path / "weights"))
    np.testing.assert_allclose(reloaded(ids).numpy(), expected, atol=1e-6)


def test_last_position_only_equals_the_full_pass_at_the_last_position():
    encoder = SequenceEncoder(item_size=30, max_len=10, num_blocks=3)
    ids = _ids()
    full = encoder(ids, training=False).numpy()[:, -1:]
    last = encoder(ids, training=False, last_position_only=True).numpy()
    assert last.shape == (6, 1, 64)
    np.testing.assert_allclose(last, full, atol=1e-5)


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


def test_every_weight_gets_a_gradient_under_its_reference_name():
    encoder = SequenceEncoder(item_size=30, max_len=10, num_blocks=1)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(tf.square(encoder(_ids(), training=True)))
    gradients = tape.gradient(loss, encoder.trainable_variables)
    names = [variable.name for variable in encoder.trainable_variables]
    assert all(gradient is not None for gradient in gradients), names
    for name in ("query", "key", "value"):
        assert any(f"/{name}/kernel" in variable for variable in names), names

import dataclasses

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras
from conftest import encoder_config, padded_rows
from reference_numpy import encode, random_state_dict

from iclrec_tf.config import ENCODERS, NON_CAUSAL_ENCODERS
from iclrec_tf.model.encoder import (
    EncoderConfig,
    SequenceEncoder,
    TransformerBlock,
    attention_bias,
    block_class,
    encode_by_length,
)
from iclrec_tf.model.reference import load_reference_weights


def _ids(batch=6, length=10, item_size=30, seed=0):
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, item_size, (batch, length)).astype(np.int32)
    for row, pad in enumerate([0, 3, 9, 1, length - 1, 5][:batch]):
        ids[row, :pad] = 0  # left padding, one row with a single item
    return ids


@pytest.mark.parametrize("num_blocks", [1, 3])
def test_matches_an_independent_numpy_forward_pass(num_blocks):
    encoder = SequenceEncoder(encoder_config(item_size=30, max_seq_length=10,
                                             num_blocks=num_blocks))
    encoder(tf.zeros((1, 10), tf.int32))
    arrays = random_state_dict(item_size=30, num_blocks=num_blocks, max_len=10, seed=num_blocks)
    load_reference_weights(encoder, _as_npz(arrays))
    ids = _ids()
    ours = encoder(ids, training=False).numpy()
    # float32 against float64 through three post-norm blocks: up to ~2e-4 apart (seen on
    # this project's CPU with numpy 2.4), far below any real difference.
    np.testing.assert_allclose(ours, encode(arrays, ids), atol=5e-4)


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
    encoder = SequenceEncoder(encoder_config(item_size=30, max_seq_length=10, num_blocks=2))
    ids = _ids(batch=1)
    ids[0, :3] = 0
    changed = ids.copy()
    changed[0, 7:] = [4, 5, 6]  # change the future: earlier real positions must not move
    before, after = encoder(ids).numpy(), encoder(changed).numpy()
    np.testing.assert_allclose(before[0, 3:7], after[0, 3:7], atol=1e-6)
    # padded positions see every key through the uniform -10000 shift, as the reference does
    assert not np.allclose(before[0, :3], after[0, :3], atol=1e-4)


def test_dropout_only_in_training():
    encoder = SequenceEncoder(encoder_config(item_size=30, max_seq_length=10, num_blocks=1))
    ids = _ids()
    np.testing.assert_array_equal(encoder(ids, training=False), encoder(ids, training=False))
    assert not np.allclose(encoder(ids, training=True), encoder(ids, training=True))


def test_initialisation_follows_the_reference():
    encoder = SequenceEncoder(encoder_config(item_size=2000, max_seq_length=50, num_blocks=1))
    encoder(tf.zeros((1, 50), tf.int32))
    table = encoder.embedding_table.numpy()
    assert abs(table.std() - 0.02) < 0.001 and abs(table.mean()) < 0.001
    block = encoder.blocks[0]
    assert np.all(block.attention.query.bias.numpy() == 0)
    assert np.all(block.feed_forward.layer_norm.gamma.numpy() == 1)
    assert abs(block.feed_forward.dense_1.kernel.numpy().std() - 0.02) < 0.002


def test_config_round_trip_and_reload_give_equal_outputs(tmp_path):
    encoder = SequenceEncoder(
        encoder_config(item_size=40, max_seq_length=12, hidden_size=32, num_blocks=2,
                       num_heads=4, hidden_dropout=0.2, attention_dropout=0.3,
                       initializer_range=0.05), name="encoder")
    ids = _ids(length=12, item_size=40)
    expected = encoder(ids).numpy()
    config = encoder.get_config()
    clone = keras.layers.deserialize(keras.layers.serialize(encoder))
    assert clone.get_config() == config
    assert clone.encoder_config == EncoderConfig(40, 12, 32, 2, 4, 0.2, 0.3, 0.05)
    for block in clone.blocks:  # every layer is rebuilt from the same one config
        assert block.attention.encoder_config == clone.encoder_config
    inputs = keras.Input((12,), dtype=tf.int32)
    model = keras.Model(inputs, encoder(inputs))
    model.save_weights(str(tmp_path / "weights"))
    reloaded_inputs = keras.Input((12,), dtype=tf.int32)
    reloaded = keras.Model(reloaded_inputs, clone(reloaded_inputs))
    reloaded.load_weights(str(tmp_path / "weights"))
    np.testing.assert_allclose(reloaded(ids).numpy(), expected, atol=1e-6)


def test_last_position_only_equals_the_full_pass_at_the_last_position():
    encoder = SequenceEncoder(encoder_config(item_size=30, max_seq_length=10, num_blocks=3))
    ids = _ids()
    full = encoder(ids, training=False).numpy()[:, -1:]
    last = encoder(ids, training=False, last_position_only=True).numpy()
    assert last.shape == (6, 1, 64)
    np.testing.assert_allclose(last, full, atol=1e-5)


def test_every_weight_gets_a_gradient_under_its_reference_name():
    encoder = SequenceEncoder(encoder_config(item_size=30, max_seq_length=10, num_blocks=1))
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(tf.square(encoder(_ids(), training=True)))
    gradients = tape.gradient(loss, encoder.trainable_variables)
    names = [variable.name for variable in encoder.trainable_variables]
    assert all(gradient is not None for gradient in gradients), names
    for name in ("query", "key", "value"):
        assert any(f"/{name}/kernel" in variable for variable in names), names


def test_encoding_by_length_equals_the_full_pass_at_every_item():
    encoder = SequenceEncoder(encoder_config(item_size=30, max_seq_length=40, num_blocks=2))
    rng = np.random.default_rng(1)
    lengths = np.array([1, 3, 5, 8, 9, 17, 33, 40, 4])  # every group, both edges of one
    ids = np.zeros((len(lengths), 40), np.int32)
    for row, length in enumerate(lengths):
        ids[row, 40 - length:] = rng.integers(1, 30, length)
    ids[3, 36] = 0  # a masked item inside a row: still within its length
    full = encoder(ids, training=False).numpy()
    grouped = encode_by_length(encoder, tf.constant(ids), tf.constant(lengths),
                               training=False).numpy()
    for row, length in enumerate(lengths):
        np.testing.assert_allclose(grouped[row, 40 - length:], full[row, 40 - length:],
                                   atol=1e-5)
        group_width = min(w for w in (4, 8, 16, 32, 40) if w >= length)
        assert not grouped[row, :40 - group_width].any()  # left of its group: zeros
        assert grouped[row, 40 - group_width:].any(axis=1).all()
    last = encode_by_length(encoder, tf.constant(ids), tf.constant(lengths), training=False,
                            last_position_only=True).numpy()
    np.testing.assert_allclose(last[:, 0], full[:, -1], atol=1e-5)


def test_training_encodes_each_group_without_a_cond_even_an_empty_one():
    """In training no cond guards a group (its gradient is slow to trace): an empty
    group (here 33-40 positions) goes through the encoder as zero rows."""
    encoder = SequenceEncoder(encoder_config(item_size=30, max_seq_length=40, num_blocks=2,
                                             hidden_dropout=0.0, attention_dropout=0.0))
    rng = np.random.default_rng(2)
    lengths = np.array([1, 3, 8, 9, 17, 20])
    ids = np.zeros((6, 40), np.int32)
    for row, length in enumerate(lengths):
        ids[row, 40 - length:] = rng.integers(1, 30, length)
    full = encoder(ids, training=False).numpy()

    def graph_ops(training):
        def run(ids, lengths):
            with tf.GradientTape() as tape:
                states = encode_by_length(encoder, ids, lengths, training=training)
                loss = tf.reduce_sum(tf.square(states))
            return states, tape.gradient(loss, encoder.trainable_variables)
        traced = tf.function(run).get_concrete_function(
            tf.TensorSpec([None, 40], tf.int32), tf.TensorSpec([None], tf.int32))
        return traced, {op.type for op in traced.graph.get_operations()}

    train_step, train_ops = graph_ops(training=True)
    _, inference_ops = graph_ops(training=False)
    assert not train_ops & {"If", "StatelessIf"}
    assert inference_ops & {"If", "StatelessIf"}
    states, gradients = train_step(tf.constant(ids), tf.constant(lengths, tf.int32))
    for row, length in enumerate(lengths):
        np.testing.assert_allclose(states.numpy()[row, 40 - length:], full[row, 40 - length:],
                                   atol=1e-5)
    assert all(np.isfinite(tf.convert_to_tensor(g).numpy()).all()
               for g in gradients if g is not None)


def test_encoding_by_length_with_a_max_len_below_every_group_width():
    encoder = SequenceEncoder(encoder_config(item_size=30, max_seq_length=4, num_blocks=1))
    ids = tf.constant([[0, 0, 3, 4], [1, 2, 3, 4]])
    grouped = encode_by_length(encoder, ids, tf.constant([2, 4]), training=False)
    np.testing.assert_allclose(grouped[:, -2:], encoder(ids, training=False)[:, -2:],
                               atol=1e-5)


def test_bfloat16_runs_the_sublayers_in_bfloat16_around_a_float32_residual_stream():
    float32, bfloat16 = (
        SequenceEncoder(encoder_config(item_size=30, max_seq_length=10, num_blocks=2,
                                       mixed_precision=dtype),
                        name=f"encoder_{dtype}")
        for dtype in ("float32", "bfloat16"))
    ids = _ids()
    float32(ids)
    bfloat16(ids)
    bfloat16.set_weights(float32.get_weights())
    names = [v.name.split("/", 1)[1] for v in bfloat16.weights]
    assert names == [v.name.split("/", 1)[1] for v in float32.weights]
    assert {v.dtype for v in bfloat16.weights} == {tf.float32}  # one checkpoint for both
    block = bfloat16.blocks[0]
    assert block.attention.dense.compute_dtype == block.feed_forward.dense_1.compute_dtype
    assert block.attention.dense.compute_dtype == "bfloat16"
    assert block.attention.layer_norm.compute_dtype == "float32"
    expected = float32(ids, training=False).numpy()
    with tf.GradientTape() as tape:
        hidden = bfloat16(ids, training=False)
        loss = tf.reduce_sum(tf.square(hidden))
    assert hidden.dtype == tf.float32
    difference = np.abs(hidden.numpy() - expected)
    # bfloat16 keeps 8 bits of mantissa: close, and not float32's result (trained
    # weights: tests/model/test_reference.py).
    assert difference.max() > 1e-4
    assert difference.mean() < 0.01 * np.abs(expected).mean(), difference.mean()
    gradients = tape.gradient(loss, bfloat16.trainable_variables)
    assert all(g is not None and g.dtype == tf.float32 for g in gradients)


def test_the_compute_dtype_survives_a_config_round_trip():
    encoder = SequenceEncoder(encoder_config(item_size=30, max_seq_length=10,
                                             mixed_precision="bfloat16"))
    clone = keras.layers.deserialize(keras.layers.serialize(encoder))
    assert clone.encoder_config.compute_dtype == "bfloat16"
    assert clone.blocks[0].feed_forward.dense_2.compute_dtype == "bfloat16"


def test_recompute_survives_a_config_round_trip():
    encoder = SequenceEncoder(encoder_config(item_size=30, max_seq_length=10,
                                             recompute_blocks=True))
    clone = keras.layers.deserialize(keras.layers.serialize(encoder))
    assert clone.encoder_config.recompute and clone.blocks[0].encoder_config.recompute


# Every encoder (docs/encoders.md): its two properties, and what the others share.

def _encoder(encoder, **train_config):
    settings = dict(item_size=30, max_seq_length=12, num_blocks=2, encoder=encoder)
    settings.update(train_config)
    return SequenceEncoder(encoder_config(**settings), name=f"encoder_{encoder}")


@pytest.mark.parametrize("encoder", [e for e in ENCODERS if e not in NON_CAUSAL_ENCODERS])
def test_a_causal_encoder_ignores_the_items_after_a_position(encoder):
    encoder_layer = _encoder(encoder)
    lengths = [12, 9, 5]
    ids = padded_rows(lengths)
    before = encoder_layer(ids, training=False).numpy()
    for t in range(11):  # change every item after position t
        changed = ids.copy()
        changed[:, t + 1:] = np.where(ids[:, t + 1:] > 0, (ids[:, t + 1:] + 7) % 29 + 1, 0)
        after = encoder_layer(changed, training=False).numpy()
        for row, length in enumerate(lengths):
            first = 12 - length  # an item's state; padding before it is another matter
            if first <= t:
                np.testing.assert_allclose(after[row, first:t + 1], before[row, first:t + 1],
                                           atol=1e-6, err_msg=f"{encoder}, t={t}")
        assert not np.allclose(after[:, t + 1:], before[:, t + 1:], atol=1e-4)


@pytest.mark.parametrize("encoder", NON_CAUSAL_ENCODERS)
def test_a_non_causal_encoder_reads_the_items_after_a_position(encoder):
    """Why `TrainConfig` refuses it `--train-samples users`: its earlier states see the
    last item, so a target would be part of its own input."""
    encoder_layer = _encoder(encoder)
    ids = padded_rows([12, 9])
    changed = ids.copy()
    changed[:, -1] = (ids[:, -1] + 7) % 29 + 1
    before, after = (encoder_layer(x, training=False).numpy() for x in (ids, changed))
    assert np.abs(after[:, :-1] - before[:, :-1]).max() > 1e-3


@pytest.mark.parametrize("encoder", ENCODERS)
def test_every_encoder_is_independent_of_the_width_it_is_encoded_at(encoder):
    """`enc(ids[:, -w:]) == enc(ids)[:, -w:]` for every width w that holds the rows'
    items, at every item's position (as `encode_by_length` and the length-bucketed
    evaluation need); `filter` reads no padding at all, so at every position."""
    encoder_layer = _encoder(encoder)
    lengths = [1, 2, 4, 7, 12]
    ids = padded_rows(lengths)
    full = encoder_layer(ids, training=False).numpy()
    for width in range(1, 13):
        rows = [row for row, length in enumerate(lengths) if length <= width]
        narrow = encoder_layer(ids[rows, -width:], training=False).numpy()
        for index, row in enumerate(rows):
            first = -width if encoder == "filter" else -lengths[row]
            np.testing.assert_allclose(narrow[index, first:], full[row, first:], atol=1e-5,
                                       err_msg=f"{encoder}, width {width}")
    grouped = encode_by_length(encoder_layer, tf.constant(ids), tf.constant(lengths),
                               training=False, last_position_only=True).numpy()
    np.testing.assert_allclose(grouped[:, 0], full[:, -1], atol=1e-5)


@pytest.mark.parametrize("encoder", ENCODERS)
def test_every_encoder_survives_a_config_round_trip_with_equal_outputs(encoder, tmp_path):
    encoder_layer = _encoder(encoder, fourier_alpha=0.3, fourier_cutoff=7, filter_bases=5,
                             filter_reg_weight=0.01, hidden_size=32, num_heads=4)
    ids = padded_rows([3, 12, 6])
    expected = encoder_layer(ids, training=False).numpy()
    clone = keras.layers.deserialize(keras.layers.serialize(encoder_layer))
    assert clone.get_config() == encoder_layer.get_config()
    assert clone.encoder_config == encoder_layer.encoder_config
    assert (clone.encoder_config.encoder, clone.encoder_config.fourier_alpha,
            clone.encoder_config.fourier_cutoff, clone.encoder_config.filter_bases,
            clone.encoder_config.filter_reg_weight) == (encoder, 0.3, 7, 5, 0.01)
    assert type(clone.blocks[0]) is type(encoder_layer.blocks[0])
    clone(ids)
    path = str(tmp_path / "weights")
    tf.train.Checkpoint(encoder=encoder_layer).write(path)
    tf.train.Checkpoint(encoder=clone).read(path).assert_consumed()
    np.testing.assert_allclose(clone(ids, training=False).numpy(), expected, atol=1e-6)


@pytest.mark.parametrize("encoder", ENCODERS)
def test_every_encoder_computes_the_last_position_alone_as_in_the_full_pass(encoder):
    encoder_layer = _encoder(encoder, num_blocks=3)
    ids = padded_rows([1, 5, 12])
    full = encoder_layer(ids, training=False).numpy()[:, -1:]
    last = encoder_layer(ids, training=False, last_position_only=True).numpy()
    assert last.shape == (3, 1, 64)
    np.testing.assert_allclose(last, full, atol=1e-5)


@pytest.mark.parametrize("encoder", ENCODERS)
def test_a_recomputed_block_gives_the_same_output_and_gradients_for_the_same_masks(encoder):
    """`recompute` keeps only the block's input and runs the block again in the
    backward pass: with the masks of the same seeds, output and every gradient are
    those of the plain block (a backward pass that drew new masks would differ)."""
    config = encoder_config(item_size=30, max_seq_length=12, encoder=encoder)
    plain_class = block_class(encoder)
    plain = plain_class(config)
    recomputed = plain_class(dataclasses.replace(config, recompute=True))
    ids = tf.constant(padded_rows([3, 12, 7]))
    context = plain_class.context_of(ids)
    hidden = tf.random.stateless_normal((3, 12, 64), (1, 2))
    plain(hidden, context)
    recomputed(hidden, context)
    recomputed.set_weights(plain.get_weights())
    seeds = [tf.constant([index, 5]) for index in range(len(plain.dropouts))]

    @tf.function
    def step(block):
        with tf.GradientTape() as tape:
            tape.watch(hidden)
            output = block(hidden, context, training=True, dropout_seeds=seeds)
            loss = tf.reduce_sum(tf.square(output) * tf.range(64, dtype=tf.float32))
        return output, tape.gradient(loss, [hidden, *block.trainable_variables])

    expected_output, expected_gradients = step(plain)
    output, gradients = step(recomputed)
    np.testing.assert_allclose(output, expected_output, atol=1e-6)
    assert np.mean(expected_output.numpy() != plain(hidden, context).numpy()) > 0.5  # dropout on
    assert len(gradients) == len(expected_gradients) == 1 + len(plain.trainable_variables)
    for gradient, expected in zip(gradients, expected_gradients, strict=True):
        np.testing.assert_allclose(gradient, expected, rtol=1e-5, atol=1e-5)

    def gelu_ops(block):
        graph = step.get_concrete_function(block).graph
        return sum(op.type == "Erfc" for op in graph.get_operations())

    # the recomputation is in the graph: a second forward pass's GELU
    assert gelu_ops(recomputed) == gelu_ops(plain) + 1


@pytest.mark.parametrize("encoder", ENCODERS)
def test_every_encoder_runs_in_bfloat16_around_a_float32_output(encoder):
    float32, bfloat16 = (_encoder(encoder, mixed_precision=dtype, num_blocks=1)
                         for dtype in ("float32", "bfloat16"))
    ids = padded_rows([2, 12, 6])
    float32(ids)
    bfloat16(ids)
    bfloat16.set_weights(float32.get_weights())
    with tf.GradientTape() as tape:
        hidden = bfloat16(ids, training=True)
        loss = tf.reduce_sum(tf.square(hidden))
    assert hidden.dtype == tf.float32
    expected = float32(ids, training=False).numpy()
    difference = np.abs(bfloat16(ids, training=False).numpy() - expected)
    assert 0 < difference.mean() < 0.01 * np.abs(expected).mean()
    gradients = tape.gradient(loss, bfloat16.trainable_variables)
    assert all(g is not None and g.dtype == tf.float32 for g in gradients)


def test_the_default_encoder_is_attention_with_position_embeddings():
    encoder = SequenceEncoder(encoder_config(item_size=30, max_seq_length=10))
    assert encoder.encoder_config.encoder == "attention" == ENCODERS[0]
    assert all(type(block) is TransformerBlock for block in encoder.blocks)
    assert encoder.position_embeddings is not None
    with pytest.raises(ValueError, match="encoder must be one of attention, fourier"):
        block_class("lstm")

import numpy as np
import tensorflow as tf
import tf_keras as keras
from conftest import encoder_config, padded_rows, synthetic_sequences, write_dataset

from iclrec_tf.config import TrainConfig
from iclrec_tf.data.datasets import load_sequences
from iclrec_tf.data.pipeline import SequencePipelines
from iclrec_tf.model.encoder import SequenceEncoder
from iclrec_tf.model.filter import PositionFilter, orthogonality_penalty
from iclrec_tf.model.iclrec import build_model


def test_the_filter_matrix_is_lower_triangular_with_one_filter_per_position():
    config = encoder_config(item_size=30, max_seq_length=5, encoder="filter", filter_bases=5)
    layer = PositionFilter(config)
    layer(tf.zeros((1, 5, 64)))
    # Bases the identity (already unit rows): position t's taps are coefficients[t].
    layer.bases.assign(np.eye(5, dtype=np.float32))
    taps = np.arange(25, dtype=np.float32).reshape(5, 5)
    layer.coefficients.assign(taps)
    expected = np.zeros((5, 5), np.float32)
    for t in range(5):
        for s in range(t + 1):
            expected[t, s] = taps[t, t - s]  # y[t] = sum_k h[t, k] x[t - k]
    np.testing.assert_array_equal(layer.filter_matrix().numpy(), expected)
    # A basis is normalised: scaling it changes nothing.
    layer.bases.assign(np.eye(5, dtype=np.float32) * 3.0)
    np.testing.assert_allclose(layer.filter_matrix().numpy(), expected, rtol=1e-6)


def test_the_encoder_has_no_position_embeddings_and_ignores_what_padding_holds():
    encoder = SequenceEncoder(encoder_config(item_size=30, max_seq_length=12, encoder="filter"))
    ids = padded_rows([3, 12])
    before = encoder(ids, training=False).numpy()
    assert encoder.position_embeddings is None
    assert not any("position" in variable.name for variable in encoder.weights)
    table = encoder.embedding_table
    table.assign(tf.tensor_scatter_nd_update(table, [[0]], tf.ones((1, 64)) * 5.0))
    np.testing.assert_array_equal(encoder(ids, training=False).numpy(), before)


def test_the_orthogonality_loss_is_added_to_the_training_loss(tmp_path):
    path = write_dataset(tmp_path / "d.txt", synthetic_sequences(num_users=40, num_items=20))
    data = load_sequences(path)
    config = TrainConfig(max_seq_length=10, hidden_size=16, num_blocks=2, encoder="filter",
                         filter_bases=3, filter_reg_weight=0.5, contrast_type="none",
                         hidden_dropout=0.0, attention_dropout=0.0)
    model = build_model(config, data.item_size)
    bases = [block.position_filter.bases for block in model.encoder.blocks]
    expected = sum(0.5 * float(orthogonality_penalty(b)) for b in bases)
    assert len(model.losses) == 2 and expected > 0
    np.testing.assert_allclose(float(tf.add_n(model.losses)), expected, rtol=1e-5)
    # Orthogonal unit rows: no penalty (worked out: B B^T = I).
    assert float(orthogonality_penalty(tf.eye(3, 10))) == 0.0
    model.compile(optimizer=keras.optimizers.SGD(0.0))
    batch = next(iter(SequencePipelines(data, 10).train(
        16, 1, "random", {"crop": 0.2, "mask": 0.7, "reorder": 0.2})))
    rec_loss = float(model.task_losses(batch)["rec_loss"])
    logs = model.train_on_batch(batch, return_dict=True)
    np.testing.assert_allclose(logs["loss"], rec_loss + expected, rtol=1e-5)
    # Without a weight, no loss at all.
    plain = build_model(TrainConfig(max_seq_length=10, hidden_size=16, encoder="filter"),
                        data.item_size)
    assert plain.losses == []

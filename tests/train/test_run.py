"""Assembling a training (`iclrec_tf.train.run`): the optimizer and the callback order."""

import numpy as np
import tensorflow as tf
from conftest import synthetic_sequences, write_dataset

from iclrec_tf.config import TrainConfig
from iclrec_tf.data.datasets import load_sequences
from iclrec_tf.train.intents import IntentClustering
from iclrec_tf.train.resume import EpochCheckpoint, ResumableEarlyStopping
from iclrec_tf.train.run import prepare_training, reference_adam
from iclrec_tf.train.validation import RankingValidation


def test_callbacks_run_e_step_validation_early_stopping_board_history_checkpoint(tmp_path):
    import tf_keras as keras

    data = load_sequences(write_dataset(tmp_path / "d.txt", synthetic_sequences(num_users=16)))
    config = TrainConfig(num_intent_clusters=4, num_blocks=1, hidden_size=8,
                         max_seq_length=10).validate()
    training = prepare_training(config, data, checkpoint_dir=tmp_path / "checkpoints")
    board = keras.callbacks.TensorBoard(str(tmp_path / "logs"))
    kinds = [type(callback) for callback in
             training.callbacks(board, tmp_path / "history.csv")]
    assert kinds == [IntentClustering, RankingValidation, ResumableEarlyStopping,
                     keras.callbacks.TensorBoard, keras.callbacks.CSVLogger, EpochCheckpoint]
    # Without intents, a board, a history or a checkpoint directory, those are left out.
    plain = prepare_training(TrainConfig(contrast_type="none", num_blocks=1, hidden_size=8,
                                         max_seq_length=10).validate(), data)
    assert [type(c) for c in plain.callbacks()] == [RankingValidation, ResumableEarlyStopping]


def test_the_seed_fixes_the_initial_weights_and_the_batches(tmp_path):
    # With the killed and extended runs of test_resume.py, which end byte for byte
    # where an uninterrupted run of the same seed does.
    data = load_sequences(write_dataset(tmp_path / "d.txt", synthetic_sequences(num_users=16)))

    def start(seed):
        config = TrainConfig(num_intent_clusters=4, num_blocks=1, hidden_size=8,
                             max_seq_length=10, batch_size=8, seed=seed).validate()
        training = prepare_training(config, data)
        batch = next(iter(training.train_data))
        return ([w.numpy() for w in training.model.weights],
                tf.nest.map_structure(lambda t: t.numpy(), batch))

    (weights, batch), (same_weights, same_batch), (other_weights, other_batch) = (
        start(1), start(1), start(2))
    for value, same in zip(weights, same_weights, strict=True):
        np.testing.assert_array_equal(value, same)
    tf.nest.map_structure(np.testing.assert_array_equal, batch, same_batch)
    assert not all(np.array_equal(a, b) for a, b in zip(weights, other_weights, strict=True))
    assert not all(np.array_equal(a, b) for a, b in
                   zip(tf.nest.flatten(batch), tf.nest.flatten(other_batch), strict=True))


def test_reference_adam_matches_pytorch_adam_with_sparse_and_dense_gradients():
    rng = np.random.default_rng(0)
    table, dense = rng.standard_normal((5, 3)), rng.standard_normal(4)
    variables = [tf.Variable(table, dtype=tf.float64), tf.Variable(dense, dtype=tf.float64)]
    optimizer = reference_adam(0.01)
    expected = [table.copy(), dense.copy()]
    moments = [[np.zeros_like(x), np.zeros_like(x)] for x in expected]
    for step in range(1, 4):
        rows = np.array([1, 3, 1])  # a repeated row: its gradients add up
        # gradients of 1e-6, where epsilon's place in the formula changes the step by ~25%
        row_grads = 1e-6 * rng.standard_normal((3, 3))
        dense_grad = 1e-6 * rng.standard_normal(4)
        optimizer.apply_gradients([
            (tf.IndexedSlices(tf.constant(row_grads), tf.constant(rows), tf.constant([5, 3])),
             variables[0]),
            (tf.constant(dense_grad), variables[1])])
        table_grad = np.zeros((5, 3))
        np.add.at(table_grad, rows, row_grads)
        for value, grad, (m, v) in zip(expected, (table_grad, dense_grad), moments, strict=True):
            # torch.optim.Adam: denominator sqrt(v) / sqrt(1 - b2^t) + eps
            m[:] = 0.9 * m + 0.1 * grad
            v[:] = 0.999 * v + 0.001 * grad ** 2
            denominator = np.sqrt(v) / np.sqrt(1 - 0.999 ** step) + 1e-8
            value -= 0.01 / (1 - 0.9 ** step) * m / denominator
    for variable, value, start in zip(variables, expected, (table, dense), strict=True):
        # Keras holds its hyper-parameters in float32: 1e-5 of a step is that floor
        np.testing.assert_allclose(variable.numpy() - start, value - start, rtol=1e-4, atol=1e-9)

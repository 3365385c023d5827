"""Resuming a run: what an epoch leaves behind so a killed run can continue.

After every completed epoch, `EpochCheckpoint` writes one TensorFlow checkpoint
holding everything the next epoch depends on: the model's weights (the intent
centroids included), the dropout layers' random generators, the optimizer's slots
and step, the early-stopping state (best score, patience counter, best epoch,
best weights and that epoch's logs) and the number of completed epochs. The
training batches are a function of (seed, epoch) (`SequencePipelines.train`),
and the E-step refits k-means from the restored weights with the same seed, so
a run restored at epoch e trains exactly as it would have without the kill.

A checkpoint is written to new files, then the `checkpoint` index is replaced
atomically, so a kill during a save leaves the previous checkpoint in force.
"""

import csv
import json
import pathlib

import numpy as np
import tensorflow as tf
import tf_keras as keras

from iclrec_tf import files
from iclrec_tf.errors import RunDirectoryError

CHECKPOINT_DIR = "checkpoints"


class EarlyStoppingState(tf.Module):
    """`EarlyStopping`'s state as variables, so that a checkpoint carries it.

    Args:
      model: the model whose best weights are kept (one shadow variable each).
    """

    def __init__(self, model):
        super().__init__(name="early_stopping")
        self.best = tf.Variable(-np.inf, dtype=tf.float64, trainable=False)
        self.wait = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.best_epoch = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.stopped = tf.Variable(False, trainable=False)
        self.has_best_weights = tf.Variable(False, trainable=False)
        # JSON of the best epoch's logs: metrics.json's "valid" after a resume.
        self.best_logs = tf.Variable("{}", dtype=tf.string, trainable=False)
        self.best_weights = [tf.Variable(tf.zeros_like(weight), trainable=False)
                             for weight in model.weights]


class ResumableEarlyStopping(keras.callbacks.EarlyStopping):
    """`keras.callbacks.EarlyStopping` whose state survives a restart.

    It behaves as its base class, and mirrors its state into an
    `EarlyStoppingState` after every epoch; at the start of training it takes
    the state back, so a resumed `fit` stops and restores the weights it would
    have without the interruption.

    Args:
      state: the `EarlyStoppingState` to mirror into and resume from.
      **kwargs: `EarlyStopping`'s arguments.

    Attributes:
      best_logs: the logs of the best epoch (this process's or a restored one).
    """

    def __init__(self, state, **kwargs):
        super().__init__(**kwargs)
        self.state = state
        self.best_logs = {}

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        state = self.state
        self.best = float(state.best.numpy())
        self.wait = int(state.wait.numpy())
        self.best_epoch = int(state.best_epoch.numpy())
        self.best_logs = json.loads(state.best_logs.numpy().decode())
        if state.has_best_weights.numpy():
            self.best_weights = [variable.numpy() for variable in state.best_weights]

    @property
    def has_stopped(self):
        """Whether the restored run has stopped early under this `patience`: a run
        resumed with a higher one trains on."""
        state = self.state
        return bool(state.stopped.numpy()) and int(state.wait.numpy()) >= self.patience

    def on_epoch_end(self, epoch, logs=None):
        previous_best_weights = self.best_weights
        super().on_epoch_end(epoch, logs)
        state = self.state
        if self.best_weights is not previous_best_weights:
            for variable, value in zip(state.best_weights, self.best_weights, strict=True):
                variable.assign(value)
            state.has_best_weights.assign(True)
        if self.best_epoch == epoch:
            self.best_logs = {name: float(value) for name, value in (logs or {}).items()}
            state.best_logs.assign(json.dumps(self.best_logs))
        state.best.assign(self.best)
        state.wait.assign(self.wait)
        state.best_epoch.assign(self.best_epoch)
        state.stopped.assign(bool(self.model.stop_training))


def dropout_generators(model):
    """The `tf.random.Generator` behind each built dropout layer of `model`.

    Keras keeps them out of `model.weights` and checkpoints on purpose
    (`BaseRandomLayer`), so a run checkpoints them itself.
    """
    return [layer._random_generator._generator for layer in model.submodules
            if isinstance(layer, keras.layers.Dropout)
            and getattr(layer._random_generator, "_generator", None) is not None]


class RunState(tf.Module):
    """Everything a checkpoint restores, with the number of completed epochs.

    Args:
      model: the compiled model (its optimizer is saved with it).
      early_stopping: an `EarlyStoppingState` for `model`.
      data_fingerprint: a string naming the training data (users, items,
        interactions); a checkpoint of other data is refused.
    """

    def __init__(self, model, early_stopping, data_fingerprint):
        super().__init__(name="run_state")
        self.epochs_done = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.data_fingerprint = tf.Variable(data_fingerprint, dtype=tf.string,
                                            trainable=False)
        self._fingerprint = data_fingerprint
        self.checkpoint = tf.train.Checkpoint(
            model=model, optimizer=model.optimizer, early_stopping=early_stopping,
            dropout=dropout_generators(model), epochs_done=self.epochs_done,
            data_fingerprint=self.data_fingerprint)

    def manager(self, directory):
        return tf.train.CheckpointManager(self.checkpoint, str(directory), max_to_keep=2)

    def restore(self, directory):
        """Restores the latest checkpoint in `directory`, if any.

        Returns:
          The number of completed epochs restored (0 without a checkpoint).

        Raises:
          RunDirectoryError: the checkpoint is of other data or another model.
        """
        latest = tf.train.latest_checkpoint(str(directory))
        if latest is None:
            return 0
        try:
            self.checkpoint.restore(latest).assert_existing_objects_matched()
        except (AssertionError, ValueError, tf.errors.OpError) as error:
            first_line = str(error).strip().splitlines()[0]
            raise RunDirectoryError(f"{latest}: cannot resume from this checkpoint "
                              f"({first_line}); use another --output-dir") from None
        restored = self.data_fingerprint.numpy().decode()
        if restored != self._fingerprint:
            raise RunDirectoryError(f"{latest}: was trained on other data ({restored}), not "
                              f"{self._fingerprint}; use another --output-dir")
        return int(self.epochs_done.numpy())


class EpochCheckpoint(keras.callbacks.Callback):
    """Checkpoints a `RunState` at the end of every epoch.

    It goes after every callback that changes state or writes at the end of an
    epoch (`iclrec_tf.train.run.Training.callbacks`).

    Under a multi-worker strategy every worker must take part in the save;
    the chief writes to `directory`, the others to a scratch folder inside it
    that is removed straight after.

    Args:
      state: the `RunState` to save.
      directory: the checkpoint folder.
      is_chief: whether this worker's checkpoints are the run's.
      worker_id: names a non-chief worker's scratch folder.
    """

    def __init__(self, state, directory, is_chief=True, worker_id=0):
        super().__init__()
        self.state = state
        self.directory = pathlib.Path(directory)
        self.is_chief = is_chief
        write_dir = self.directory if is_chief else self.directory / f".worker-{worker_id}"
        self._write_dir = write_dir
        self._manager = state.manager(write_dir)

    def on_epoch_end(self, epoch, logs=None):
        self.state.epochs_done.assign(epoch + 1)
        self._manager.save(checkpoint_number=epoch + 1)
        if not self.is_chief:
            tf.io.gfile.rmtree(str(self._write_dir))


def keep_history_rows(path, epochs):
    """Drops the rows of `history.csv` for epochs >= `epochs` (written after the
    checkpoint being resumed from), atomically. A missing file is left missing."""
    path = pathlib.Path(path)
    if not path.is_file():
        return
    with path.open(newline="") as stream:
        rows = list(csv.reader(stream))
    kept = rows[:1] + [row for row in rows[1:] if row and int(row[0]) < epochs]
    with files.atomic_file(path, newline="") as stream:
        csv.writer(stream).writerows(kept)

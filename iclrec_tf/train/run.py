"""Assembling and running one training: model, pipelines, callbacks, test, save, export.

`prepare_training` builds everything `model.fit` needs from a `TrainConfig` and
the data, restoring the last checkpoint if there is one; `Training.callbacks`
is the one place that puts the callbacks in their order; `train` runs it all
into a run directory (`python -m iclrec_tf.fit` is its command line).
"""

import contextlib
import dataclasses
import tempfile
import time

import tensorflow as tf
import tf_keras as keras

from iclrec_tf.cli import phase
from iclrec_tf.data.pipeline import SequencePipelines
from iclrec_tf.errors import ConfigError
from iclrec_tf.model.iclrec import build_model
from iclrec_tf.model.softmax import DEFAULT_MAX_LOGITS
from iclrec_tf.serve.saved_model import export_saved_model
from iclrec_tf.train.distribute import worker_role
from iclrec_tf.train.intents import IntentClustering
from iclrec_tf.train.metrics import RankingEvaluator
from iclrec_tf.train.monitoring import ICLRecTensorBoard
from iclrec_tf.train.resume import (
    CHECKPOINT_DIR,
    EarlyStoppingState,
    EpochCheckpoint,
    ResumableEarlyStopping,
    RunState,
    keep_history_rows,
)
from iclrec_tf.train.rundir import HISTORY_FILE, METRICS_FILE, RunDirectory
from iclrec_tf.train.validation import RankingValidation


def reference_adam(learning_rate):
    """Adam exactly as the reference's PyTorch Adam: betas (0.9, 0.999), epsilon 1e-8.

    `adaptive_epsilon` puts epsilon inside the bias correction, as PyTorch does;
    sparse (embedding) gradients are summed per row before the update, so they
    update the moments as dense ones would.
    """
    return keras.optimizers.Adam(learning_rate=learning_rate, beta_1=0.9, beta_2=0.999,
                                 epsilon=1e-8, adaptive_epsilon=True)


@dataclasses.dataclass
class Training:
    """Everything `model.fit` needs for one run, built by `prepare_training`.

    Attributes:
      model: the compiled `ICLRecModel`.
      train_data: the training pipeline, endless, from `first_epoch` on.
      steps_per_epoch: training batches per epoch.
      first_epoch: the epoch to start at (0, or the epochs a checkpoint restored).
      clustering: the E-step's `IntentClustering`, or None for a variant
        without intents.
      validation: the `RankingValidation`.
      early_stopping: the `ResumableEarlyStopping`.
      checkpoint: the `EpochCheckpoint`, or None without a checkpoint directory.
      state: the `RunState` that checkpoints hold.
      evaluator: `evaluator(split, protocol)` -> a `RankingEvaluator`.
    """

    model: object
    train_data: object
    steps_per_epoch: int
    first_epoch: int
    clustering: object
    validation: object
    early_stopping: object
    checkpoint: object
    state: object
    evaluator: object

    @property
    def stopped_early(self):
        """Whether the restored run had already stopped early (it trains no further)."""
        return self.early_stopping.has_stopped

    def callbacks(self, board=None, history_file=None):
        """The callbacks of `model.fit`, in the one order that works.

        1. the E-step (`on_epoch_begin`: the epoch trains against its intents);
        2. validation, which adds the `val_` metrics to the epoch's logs;
        3. early stopping, which reads `val_NDCG@20` from them and, at the end,
           restores the best epoch's weights;
        4. TensorBoard (`board`), which logs the `val_` metrics and shows the
           restored weights in the Projector;
        5. the CSV history (`history_file`), a row with the `val_` metrics;
        6. the checkpoint, last: whatever an epoch wrote (its history row
           included) is then older than its checkpoint, so a resume never
           finds a row of an epoch it will train again but one it has dropped.

        Args:
          board: an `ICLRecTensorBoard`, or None.
          history_file: the path of `history.csv`, appended to, or None.
        """
        history = None
        if history_file is not None:
            history = keras.callbacks.CSVLogger(str(history_file), append=True)
        return [callback for callback in (self.clustering, self.validation,
                                          self.early_stopping, board, history,
                                          self.checkpoint)
                if callback is not None]


def prepare_training(config, data, strategy=None, checkpoint_dir=None, is_chief=True,
                     worker_id=0):
    """Builds the model, pipelines and callbacks of a run, seeded by `config.seed`.

    With `checkpoint_dir`, the latest checkpoint there (if any) is restored and
    the training pipeline starts at the epoch after it.

    Args:
      config: a validated `TrainConfig`.
      data: the `SequenceData` to train on.
      strategy: a `tf.distribute.Strategy`; None is the default strategy.
      checkpoint_dir: where the per-epoch checkpoints go and are resumed from.
      is_chief: whether this worker's checkpoints are the run's.
      worker_id: this worker's index (names its scratch checkpoint folder).

    Returns:
      A `Training`.

    Raises:
      ConfigError: when K exceeds the number of users.
      RunDirectoryError: when the checkpoint is of other data or another model.
    """
    if config.uses_intents and config.num_intent_clusters > data.num_users:
        raise ConfigError(f"--num-intent-clusters ({config.num_intent_clusters}) exceeds "
                          f"the number of users ({data.num_users})")
    strategy = strategy or tf.distribute.get_strategy()
    keras.utils.set_random_seed(config.seed)
    pipelines = SequencePipelines(data, config.max_seq_length, config.train_samples)
    with strategy.scope():
        model = build_model(config, data.item_size, pipelines.target_counts())
        model.compile(optimizer=reference_adam(config.lr))
        model.optimizer.build(model.trainable_variables)  # its slots, for checkpoints
    early_stopping_state = EarlyStoppingState(model)
    state = RunState(model, early_stopping_state,
                     f"{data.num_users} users, {data.max_item} items, "
                     f"{len(data.items)} interactions")
    first_epoch = 0 if checkpoint_dir is None else state.restore(checkpoint_dir)

    # Full ranking holds [users, items] scores: a large catalogue takes fewer users at once.
    eval_batch_size = min(config.eval_batch_size, max(1, DEFAULT_MAX_LOGITS // data.item_size))

    def evaluator(split, protocol=config.validation_protocol):
        # Length-bucketed whatever the preset: the last position's scores, all that
        # ranking reads, do not depend on left padding.
        return RankingEvaluator(model, pipelines.evaluation(split, eval_batch_size,
                                                            length_buckets=True),
                                protocol, data.mask_id)

    clustering = None
    if config.uses_intents:
        clustering = IntentClustering(
            pipelines.estep(config.eval_batch_size, config.length_buckets),
            config.num_intent_clusters, seed=config.seed,
            warm_up_epochs=config.warm_up_epochs, strategy=strategy, is_chief=is_chief,
            method=config.kmeans)
    early_stopping = ResumableEarlyStopping(
        early_stopping_state, monitor="val_NDCG@20", mode="max", patience=config.patience,
        restore_best_weights=True, verbose=1)
    checkpoint = None
    if checkpoint_dir is not None:
        checkpoint = EpochCheckpoint(state, checkpoint_dir, is_chief, worker_id)
    train_data = pipelines.train(
        config.batch_size, config.seed, config.augmentation,
        {"crop": config.crop_ratio, "mask": config.mask_ratio,
         "reorder": config.reorder_ratio}, first_epoch=first_epoch,
        length_buckets=config.length_buckets, negatives=config.next_item_loss == "bce",
        num_sampled=config.num_negatives if config.next_item_loss == "sampled" else 0,
        views=config.contrast_views)
    return Training(model, train_data, pipelines.steps_per_epoch(config.batch_size),
                    first_epoch, clustering, RankingValidation(evaluator("valid")),
                    early_stopping, checkpoint, state, evaluator)


@contextlib.contextmanager
def _own_directory(run_dir, is_chief):
    """The run directory on the chief; elsewhere a scratch one, removed afterwards.

    Saving under a multi-worker strategy is collective: every worker takes part
    in the chief's saves (weights, export), the others into scratch folders.
    """
    if is_chief:
        yield run_dir
    else:
        with tempfile.TemporaryDirectory() as scratch:
            yield RunDirectory(scratch)


def train(config, data, run_dir, verbose=1, logdir=None, log_every=10, histograms=False,
          export_dir=None, top_k=100, keep_history=False, strategy=None):
    """Trains, validates every epoch, restores the best epoch, tests, saves and exports.

    The run checkpoints itself after every epoch into `run_dir/checkpoints/`
    and, run again on the same directory, continues from the last completed
    epoch (see `iclrec_tf.train.resume`). Under a multi-worker strategy, only
    the chief writes files: history, TensorBoard logs, weights, metrics, export.

    Args:
      config: a validated `TrainConfig`.
      data: the `SequenceData` to train on.
      run_dir: a `RunDirectory` to write into.
      verbose: Keras verbosity.
      logdir: the TensorBoard log directory; None writes into `run_dir`.
      log_every: also log the training scalars every this many steps (0: per epoch).
      histograms: log weight histograms every epoch.
      export_dir: a TF Serving model base path to export the trained model to.
      top_k: k of the export's `serving_default`.
      keep_history: whether the export may recommend a user's own items.
      strategy: a `tf.distribute.Strategy`; None is the default strategy.

    Returns:
      The metrics dict written to `metrics.json`, and the exported version
      directory (None without `export_dir`, and on workers other than the chief).
    """
    is_chief, worker_id = (True, 0) if strategy is None else worker_role(strategy)
    training = prepare_training(config, data, strategy, run_dir.file(CHECKPOINT_DIR),
                                is_chief, worker_id)
    first_epoch = training.first_epoch
    board = history_file = None
    if is_chief:
        if first_epoch:
            print(f"Resuming {run_dir.path} after epoch {first_epoch}", flush=True)
        history_file = run_dir.file(HISTORY_FILE)
        keep_history_rows(history_file, first_epoch)
        board = ICLRecTensorBoard(logdir or run_dir.path, config, data, training.clustering,
                                  training.validation, log_every=log_every,
                                  histograms=histograms)
    last_epoch = first_epoch if training.stopped_early else config.epochs
    start = time.perf_counter()
    training.model.fit(training.train_data, epochs=last_epoch, initial_epoch=first_epoch,
                       steps_per_epoch=training.steps_per_epoch,
                       callbacks=training.callbacks(board, history_file), verbose=verbose)
    phase(f"Training ({int(training.state.epochs_done.numpy()) - first_epoch} epochs)", start)

    early_stopping = training.early_stopping
    metrics = {
        "best_epoch": early_stopping.best_epoch + 1,
        "epochs_trained": int(training.state.epochs_done.numpy()),
        "protocol": config.validation_protocol,
        "valid": {name[len("val_"):]: value for name, value in early_stopping.best_logs.items()
                  if name.startswith("val_")},
    }
    if is_chief:
        start = time.perf_counter()
        metrics["test"] = training.evaluator("test")()
        metrics["test_exclude"] = training.evaluator("test", "exclude")()
        phase("Test", start)
        board.write_results(metrics)
    version_dir = None
    with _own_directory(run_dir, is_chief) as own_dir:
        own_dir.save_weights(training.model)
        if is_chief:
            own_dir.write_json(METRICS_FILE, metrics)
        if export_dir is not None:
            version_dir = export_saved_model(
                training.model, export_dir if is_chief else own_dir.path / "export", top_k,
                keep_history, mask_id=data.mask_id, vocabulary=own_dir.vocabulary(),
                config=config)
    return metrics, version_dir if is_chief else None

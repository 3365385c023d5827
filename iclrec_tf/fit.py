"""`python -m iclrec_tf.fit --dataset toys`: train ICLRec, validate, test, save.

The run directory (`--output-dir`, default `runs/<dataset>`) receives
`config.json`, `history.csv` (one row per epoch: losses and `val_` metrics),
`weights/` (the best epoch's weights) and `metrics.json`, and, unless `--logdir`
moves them, the TensorBoard logs (`train/`, `validation/`, `projector/` and the
run's own events; see `iclrec_tf.monitoring`).
"""

import argparse
import dataclasses
import pathlib
import sys
import tempfile
import time

from iclrec_tf import cli
from iclrec_tf.config import ConfigError, TrainConfig, check_top_k


def build_parser():
    parser = cli.ArgumentParser(
        prog="python -m iclrec_tf.fit",
        description="Train ICLRec on a dataset with its released preset.")
    parser.add_argument("--dataset", default="toys",
                        help="toys, beauty, sports, yelp, or a path to a file in their format")
    parser.add_argument("--data-dir", help="folder holding the dataset files "
                        "(else $ICLREC_DATA_DIR, the Keras cache, then a download)")
    parser.add_argument("--output-dir", help="the run directory (default runs/<dataset>)")
    parser.add_argument("--max-users", type=int,
                        help="train on the first N users only (quick experiments)")
    parser.add_argument("--verbose", type=int, choices=(0, 1, 2), default=1,
                        help="Keras verbosity: 0 silent, 1 progress bar, 2 one line per epoch")
    parser.add_argument("--logdir", help="where the TensorBoard logs go (default: the run "
                        "directory)")
    parser.add_argument("--log-every", type=int, default=10, metavar="STEPS",
                        help="also log the training scalars every N steps (0: once an epoch)")
    parser.add_argument("--histograms", action=argparse.BooleanOptionalAction, default=False,
                        help="log weight histograms every epoch (off: they cost time)")
    parser.add_argument("--export", metavar="NAME",
                        help="after training, export a SavedModel to saved_models/NAME/<version>")
    parser.add_argument("--top-k", type=int, default=100,
                        help="with --export: recommendations per user (default 100)")
    parser.add_argument("--keep-history", action="store_true",
                        help="with --export: allow recommending the user's own items")
    parser.add_argument("--strategy", choices=("default", "mirrored", "multi_worker"),
                        default="default",
                        help="tf.distribute strategy: default (one device), mirrored (all "
                        "local devices) or multi_worker (the cluster in TF_CONFIG)")
    parser.add_argument("--deterministic", action=argparse.BooleanOptionalAction,
                        default=True, help="bit-identical results for a seed on one machine "
                        "(TensorFlow op determinism; see docs/BENCHMARKS.md for its cost)")
    cli.add_config_flags(parser, exclude=("dataset",))
    return parser


def _phase(name, start):
    print(f"{name}: {time.perf_counter() - start:.1f} s", flush=True)


def reference_adam(learning_rate):
    """Adam exactly as the reference's PyTorch Adam: betas (0.9, 0.999), epsilon 1e-8.

    `adaptive_epsilon` puts epsilon inside the bias correction, as PyTorch does;
    sparse (embedding) gradients are summed per row before the update, so they
    update the moments as dense ones would.
    """
    import tf_keras as keras

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
      callbacks: E-step (if the variant uses intents), validation, early stopping.
      checkpoint: the `EpochCheckpoint` (None without a checkpoint directory), to
        go after every other callback: whatever an epoch writes (history rows
        included) is then older than its checkpoint.
      clustering: the `IntentClustering` among `callbacks`, or None.
      validation: the `RankingValidation` among `callbacks`.
      early_stopping: the `ResumableEarlyStopping` among `callbacks`.
      state: the `RunState` that checkpoints hold.
      evaluator: `evaluator(split, protocol)` -> a `RankingEvaluator`.
    """

    model: object
    train_data: object
    steps_per_epoch: int
    first_epoch: int
    callbacks: list
    checkpoint: object
    clustering: object
    validation: object
    early_stopping: object
    state: object
    evaluator: object

    @property
    def stopped_early(self):
        """Whether the restored run had already stopped early (it trains no further)."""
        return bool(self.early_stopping.state.stopped.numpy())


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

    Raises:
      ConfigError: when K exceeds the number of users.
      RunDirectoryError: when the checkpoint is of other data or another model.
    """
    import tensorflow as tf
    import tf_keras as keras

    from iclrec_tf.intents import IntentClustering
    from iclrec_tf.metrics import RankingEvaluator
    from iclrec_tf.model import build_model
    from iclrec_tf.pipeline import SequencePipelines
    from iclrec_tf.resume import (
        EarlyStoppingState,
        EpochCheckpoint,
        ResumableEarlyStopping,
        RunState,
    )
    from iclrec_tf.validation import RankingValidation

    if config.uses_intents and config.num_intent_clusters > data.num_users:
        raise ConfigError(f"--num-intent-clusters ({config.num_intent_clusters}) exceeds "
                          f"the number of users ({data.num_users})")
    strategy = strategy or tf.distribute.get_strategy()
    keras.utils.set_random_seed(config.seed)
    pipelines = SequencePipelines(data, config.max_seq_length)
    with strategy.scope():
        model = build_model(config, data.item_size)
        model.compile(optimizer=reference_adam(config.lr))
        model.optimizer.build(model.trainable_variables)  # its slots, for checkpoints
    early_stopping_state = EarlyStoppingState(model)
    state = RunState(model, early_stopping_state,
                     f"{data.num_users} users, {data.max_item} items, "
                     f"{len(data.items)} interactions")
    first_epoch = 0 if checkpoint_dir is None else state.restore(checkpoint_dir)

    def evaluator(split, protocol=config.validation_protocol):
        return RankingEvaluator(model, pipelines.evaluation(split, config.eval_batch_size),
                                protocol, data.mask_id)

    early_stopping = ResumableEarlyStopping(
        early_stopping_state, monitor="val_NDCG@20", mode="max", patience=config.patience,
        restore_best_weights=True, verbose=1)
    clustering = None
    if config.uses_intents:
        clustering = IntentClustering(
            pipelines.estep(config.eval_batch_size), config.num_intent_clusters,
            seed=config.seed, warm_up_epochs=config.warm_up_epochs, strategy=strategy,
            is_chief=is_chief)
    validation = RankingValidation(evaluator("valid"))
    callbacks = [c for c in (clustering, validation, early_stopping) if c is not None]
    checkpoint = None
    if checkpoint_dir is not None:
        checkpoint = EpochCheckpoint(state, checkpoint_dir, is_chief, worker_id)
    train_data = pipelines.train(
        config.batch_size, config.seed, config.augmentation,
        {"crop": config.crop_ratio, "mask": config.mask_ratio,
         "reorder": config.reorder_ratio}, first_epoch=first_epoch)
    return Training(model, train_data, pipelines.steps_per_epoch(config.batch_size),
                    first_epoch, callbacks, checkpoint, clustering, validation,
                    early_stopping, state, evaluator)


def train(config, data, run_dir, verbose=1, logdir=None, log_every=10, histograms=False,
          export_dir=None, top_k=100, keep_history=False, strategy=None):
    """Trains, validates every epoch, restores the best epoch and tests.

    The run checkpoints itself after every epoch into `run_dir/checkpoints/`
    and, run again on the same directory, continues from the last completed
    epoch (see `iclrec_tf.resume`). Under a multi-worker strategy, only the
    chief writes files: history, TensorBoard logs, weights, metrics, export.

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
    import tf_keras as keras

    from iclrec_tf.distribute import worker_role
    from iclrec_tf.monitoring import ICLRecTensorBoard
    from iclrec_tf.resume import CHECKPOINT_DIR, keep_history_rows
    from iclrec_tf.rundir import HISTORY_FILE, METRICS_FILE

    is_chief, worker_id = (True, 0) if strategy is None else worker_role(strategy)
    training = prepare_training(config, data, strategy, run_dir.file(CHECKPOINT_DIR),
                                is_chief, worker_id)
    first_epoch = training.first_epoch
    callbacks = list(training.callbacks)
    board = None
    if is_chief:
        if first_epoch:
            print(f"Resuming {run_dir.path} after epoch {first_epoch}", flush=True)
        keep_history_rows(run_dir.file(HISTORY_FILE), first_epoch)
        board = ICLRecTensorBoard(logdir or run_dir.path, config, data, training.clustering,
                                  training.validation, log_every=log_every,
                                  histograms=histograms)
        # The board after validation (whose val_ metrics it logs) and early stopping
        # (whose restored weights the Projector shows).
        callbacks += [board, keras.callbacks.CSVLogger(str(run_dir.file(HISTORY_FILE)),
                                                       append=True)]
    callbacks.append(training.checkpoint)
    last_epoch = first_epoch if training.stopped_early else config.epochs
    start = time.perf_counter()
    training.model.fit(training.train_data, epochs=last_epoch, initial_epoch=first_epoch,
                       steps_per_epoch=training.steps_per_epoch, callbacks=callbacks,
                       verbose=verbose)
    _phase(f"Training ({last_epoch - first_epoch} epochs)", start)

    early_stopping = training.early_stopping
    metrics = {
        "best_epoch": early_stopping.best_epoch + 1,
        "epochs_trained": int(training.state.epochs_done.numpy()),
        "protocol": config.validation_protocol,
        "valid": {name[len("val_"):]: value for name, value in early_stopping.best_logs.items()
                  if name.startswith("val_")},
    }
    if not is_chief:
        # Saving under a multi-worker strategy is collective: every worker takes
        # part in the chief's saves, the others into a scratch folder.
        with tempfile.TemporaryDirectory() as scratch:
            training.model.save_weights(str(pathlib.Path(scratch) / "model"))
            if export_dir is not None:
                from iclrec_tf.export import export_saved_model

                export_saved_model(training.model, scratch, top_k, keep_history,
                                   mask_id=data.mask_id)
        return metrics, None
    start = time.perf_counter()
    metrics["test"] = training.evaluator("test")()
    metrics["test_exclude"] = training.evaluator("test", "exclude")()
    _phase("Test", start)
    board.write_results(metrics)
    run_dir.save_weights(training.model)
    run_dir.write_json(METRICS_FILE, metrics)
    version_dir = None
    if export_dir is not None:
        from iclrec_tf.export import export_saved_model
        from iclrec_tf.vocabulary import run_vocabulary

        version_dir = export_saved_model(training.model, export_dir, top_k, keep_history,
                                         mask_id=data.mask_id,
                                         vocabulary=run_vocabulary(run_dir))
    return metrics, version_dir


def _previous_run(run_dir, config):
    """Refuses a run directory holding another configuration; returns its
    `metrics.json` if that run has finished, else None."""
    from iclrec_tf.rundir import CONFIG_FILE, METRICS_FILE, RunDirectoryError

    if not run_dir.file(CONFIG_FILE).is_file():
        return None
    previous = run_dir.config()
    if previous != config:
        changed = [field.name for field in dataclasses.fields(TrainConfig)
                   if getattr(previous, field.name) != getattr(config, field.name)]
        flags = ", ".join("--" + name.replace("_", "-") for name in changed)
        raise RunDirectoryError(f"--output-dir {run_dir.path} holds a run with other "
                                f"settings ({flags}); rerun it with the same flags, or "
                                "choose another --output-dir")
    if run_dir.file(METRICS_FILE).is_file():
        return run_dir.read_json(METRICS_FILE)
    return None


def main(argv=None):
    args = build_parser().parse_args(argv)
    from iclrec_tf.data import load_sequences, resolve_dataset
    from iclrec_tf.rundir import CONFIG_FILE, RunDirectory
    from iclrec_tf.vocabulary import sync_run_vocabulary

    config = TrainConfig.for_dataset(
        args.dataset, **cli.config_overrides(args, exclude=("dataset",))).validate()
    if args.max_users is not None and args.max_users < 1:
        raise ConfigError(f"--max-users must be a positive integer, got {args.max_users}")
    if args.log_every < 0:
        raise ConfigError(f"--log-every must be a non-negative integer, got {args.log_every}")
    output_dir = args.output_dir or pathlib.Path("runs") / pathlib.Path(args.dataset).stem
    run_dir = RunDirectory(output_dir, create=True)
    finished = _previous_run(run_dir, config)
    if finished is not None:
        print(f"{run_dir.path} has finished (best epoch {finished['best_epoch']} of "
              f"{finished['epochs_trained']}); nothing to do. Choose another --output-dir "
              "to train again.", flush=True)
        return 0

    start = time.perf_counter()
    dataset_path = resolve_dataset(args.dataset, args.data_dir)
    data = load_sequences(dataset_path)
    if args.max_users is not None:
        data = data.subset(min(args.max_users, data.num_users))
    _phase(f"Data: {data.num_users} users, {data.max_item} items, "
           f"{len(data.items)} interactions", start)
    if args.export is not None:
        check_top_k(args.top_k, data.max_item)  # before training, not after it

    import tensorflow as tf

    from iclrec_tf.distribute import make_strategy, worker_role

    strategy = make_strategy(args.strategy)
    if args.deterministic:
        tf.config.experimental.enable_op_determinism()
    is_chief, _ = worker_role(strategy)
    if is_chief:
        run_dir.write_text(CONFIG_FILE, config.to_json() + "\n")
        sync_run_vocabulary(run_dir, args.dataset, dataset_path, data.max_item)  # items.txt
    export_dir = None if args.export is None else pathlib.Path("saved_models") / args.export
    try:
        metrics, version_dir = train(
            config, data, run_dir, verbose=args.verbose, logdir=args.logdir,
            log_every=args.log_every, histograms=args.histograms, export_dir=export_dir,
            top_k=args.top_k, keep_history=args.keep_history, strategy=strategy)
    except (tf.errors.UnavailableError, tf.errors.CancelledError) as error:
        if args.strategy != "multi_worker":
            raise
        reason = str(error).strip().splitlines()[0][:200]
        print(f"python -m iclrec_tf.fit: error: the cluster lost a worker ({reason}); run "
              "the same command on every worker to resume from the last checkpoint",
              file=sys.stderr, flush=True)
        return 1
    if not is_chief:
        return 0
    test = ", ".join(f"{name} {value:.4f}" for name, value in metrics["test"].items())
    print(f"Best epoch {metrics['best_epoch']}; test ({config.validation_protocol}): {test}")
    print(f"Wrote {run_dir.path}; TensorBoard: tensorboard --logdir "
          f"{pathlib.Path(args.logdir or run_dir.path).parent}", flush=True)
    if version_dir is not None:
        print(version_dir, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main, "python -m iclrec_tf.fit"))

"""`python -m iclrec_tf.fit --dataset toys`: train ICLRec, validate, test, save.

`--config DIR/config.json` trains with the settings a run or a record wrote, as
they were (the presets of today do not enter); flags given beside it override
them (`--seed`, `--epochs`, ...).

The run directory (`--output-dir`, default `runs/<dataset>`) receives
`config.json`, `history.csv` (one row per epoch: losses and `val_` metrics),
`weights/` (the best epoch's weights) and `metrics.json`, and, unless `--logdir`
moves them, the TensorBoard logs (`train/`, `validation/`, `projector/` and the
run's own events; see `iclrec_tf.train.monitoring`). The training itself is
`iclrec_tf.train.run.train`.
"""

import argparse
import pathlib
import sys
import time

from iclrec_tf import cli
from iclrec_tf.config import check_top_k
from iclrec_tf.data.datasets import load_sequences, resolve_dataset
from iclrec_tf.errors import ConfigError
from iclrec_tf.train.rundir import CONFIG_FILE, RunDirectory

PROG = "python -m iclrec_tf.fit"


def build_parser():
    parser = cli.ArgumentParser(
        prog=PROG, description="Train ICLRec on a dataset with its released preset.")
    parser.add_argument("--dataset", default="toys",
                        help="toys, beauty, sports, yelp, or a path to a file in their format")
    parser.add_argument("--config", metavar="CONFIG_JSON",
                        help="train with the settings of this config.json (a run's, or a "
                        "record's under docs/results/) as they were; flags given beside it "
                        "override them")
    parser.add_argument("--data-dir", help="folder holding the dataset files "
                        "(else $ICLREC_DATA_DIR, the Keras cache, then a download)")
    parser.add_argument("--output-dir", help="the run directory (default runs/<dataset>)")
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
    parser.add_argument("--threads", type=int, metavar="N",
                        help="CPU threads of each pool, TensorFlow's and the k-means's "
                        "(default: every core); give each of several trainings on one "
                        "machine its share")
    cli.add_config_flags(parser, exclude=("dataset",))
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.config is not None:
        parser.set_defaults(dataset=None)  # the file's dataset, unless --dataset is given
        config = cli.config_from_file(args.config, parser.parse_args(argv))
    else:
        config = cli.config_from_flags(args)
    if args.log_every < 0:
        raise ConfigError(f"--log-every must be a non-negative integer, got {args.log_every}")
    if args.threads is not None and args.threads < 1:
        raise ConfigError(f"--threads must be a positive integer, got {args.threads}")
    output_dir = args.output_dir or pathlib.Path("runs") / pathlib.Path(config.dataset).stem
    run_dir = RunDirectory(output_dir, create=True)
    finished = run_dir.finished_metrics(config)
    if finished is not None:
        print(f"{run_dir.path} has finished (best epoch {finished['best_epoch']} of "
              f"{finished['epochs_trained']}); nothing to do. Raise --epochs or --patience "
              "to train it on, or choose another --output-dir to train again.", flush=True)
        return 0
    start = time.perf_counter()
    dataset_path = resolve_dataset(config.dataset, args.data_dir)
    data = load_sequences(dataset_path).subset(config.max_users)
    cli.phase(f"Data: {data.num_users} users, {data.max_item} items, "
              f"{len(data.items)} interactions", start)
    if args.export is not None:
        check_top_k(args.top_k, data.max_item)  # before training, not after it

    # TensorFlow loads only now, so that a mistake in the flags or the files above
    # is one line on stderr, without TensorFlow's start-up messages.
    import tensorflow as tf

    from iclrec_tf.train.distribute import limit_threads, make_strategy, worker_role
    from iclrec_tf.train.run import train

    if args.threads is not None:
        limit_threads(args.threads)
    strategy = make_strategy(args.strategy)
    if args.deterministic:
        tf.config.experimental.enable_op_determinism()
    is_chief, _ = worker_role(strategy)
    if is_chief:
        run_dir.write_text(CONFIG_FILE, config.to_json() + "\n")
        run_dir.sync_vocabulary(config.dataset, dataset_path, data.max_item)  # items.txt
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
        print(f"{PROG}: error: the cluster lost a worker ({reason}); run the same command "
              "on every worker to resume from the last checkpoint", file=sys.stderr,
              flush=True)
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
    sys.exit(cli.run(main, PROG))

"""`python -m iclrec_tf.evaluate`: full-ranking test metrics of a run or of the
reference's released weights, as one JSON object on the last stdout line.

Two of the paper's analyses come with it, without training:

- `--by-length` (Fig. 3): the metrics of each group of users by train-history
  length, as `{"groups": [{"name": "1-4", "users": ..., "HR@5": ...}, ...]}`
  beside the overall metrics (`iclrec_tf.train.analyses.length_groups`);
- `--noise-ratio R --seed S` (Fig. 4): the metrics on inputs with noise items
  inserted (`iclrec_tf.data.noise`), with `noise_ratio` and `seed` beside them.
"""

import json
import math
import sys
import time

from iclrec_tf import cli
from iclrec_tf.config import PROTOCOLS, TrainConfig
from iclrec_tf.data.datasets import load_sequences, resolve_dataset
from iclrec_tf.errors import ConfigError, ReferenceWeightsError
from iclrec_tf.model.reference import read_reference_weights, reference_shape
from iclrec_tf.train.rundir import RunDirectory

PROG = "python -m iclrec_tf.evaluate"


def build_parser():
    parser = cli.ArgumentParser(
        prog=PROG,
        description="Evaluate trained weights with full ranking.")
    add_weights_flags(parser)
    parser.add_argument("--split", choices=("valid", "test"), default="test")
    parser.add_argument("--protocol", choices=PROTOCOLS, default="reference")
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--length-buckets", action="store_true",
                        help="users in length order, each batch cut to its longest input: "
                        "the same metrics, faster")
    parser.add_argument("--by-length", action="store_true",
                        help="also the metrics of each group of users by train-history "
                        "length (the paper's Fig. 3)")
    parser.add_argument("--noise-ratio", type=float, metavar="R",
                        help="insert int(R x n) random items into each input of n items "
                        "(the paper's Fig. 4); 0 is the clean evaluation")
    parser.add_argument("--seed", type=int,
                        help="with --noise-ratio: the seed of the noise (default 1)")
    return parser


def add_weights_flags(parser):
    """Adds where the weights come from, `load_evaluation`'s arguments: `--run` or
    `--reference-weights`, then `--dataset` and `--data-dir`."""
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--run", help="a run directory written by iclrec_tf.fit")
    source.add_argument("--reference-weights",
                        help="a released .npz of the reference implementation")
    parser.add_argument("--dataset", help="dataset name or file (default: the run's dataset; "
                        "required with --reference-weights)")
    parser.add_argument("--data-dir", help="folder holding the dataset files")


def check_analysis_flags(args):
    """Raises `ConfigError` for a bad `--noise-ratio`, `--seed` or pair of them."""
    if args.noise_ratio is not None and not (math.isfinite(args.noise_ratio)
                                             and args.noise_ratio >= 0):
        raise ConfigError(f"--noise-ratio must be a non-negative number, got {args.noise_ratio}")
    if args.seed is not None:
        if args.noise_ratio is None:
            raise ConfigError("--seed seeds the noise: it needs --noise-ratio")
        if args.seed < 0:
            raise ConfigError(f"--seed must be a non-negative integer, got {args.seed}")
    if args.by_length and args.noise_ratio is not None:
        raise ConfigError("--by-length groups the clean evaluation: give it without "
                          "--noise-ratio")


def load_evaluation(run=None, reference_weights=None, dataset=None, data_dir=None,
                    threads=None):
    """The configuration, data and model of a run or of released weights.

    Args:
      run: a run directory written by `iclrec_tf.fit`.
      reference_weights: a released `.npz` of the reference (instead of `run`).
      dataset: the dataset name or file (default: the run's; required with
        `reference_weights`).
      data_dir: a folder holding the dataset files.
      threads: TensorFlow's CPU threads (default: every core).

    Returns:
      `(config, data, model)`: the `TrainConfig`, the `SequenceData` and the
      model with its weights.

    Raises:
      ConfigError, DataError, ReferenceWeightsError, RunDirectoryError: a bad
        flag or file, before TensorFlow loads.
    """
    if run:
        run_dir = RunDirectory(run)
        config = run_dir.config()
        weights = run_dir.weights_prefix()
        dataset = dataset or config.dataset
    else:
        if not dataset:
            raise ConfigError("--dataset is required with --reference-weights")
        item_size, num_blocks = reference_shape(read_reference_weights(reference_weights))
        config = TrainConfig.for_dataset(dataset, num_blocks=num_blocks)
    data = load_sequences(resolve_dataset(dataset, data_dir)).subset(config.max_users)
    if not run and item_size != data.item_size:
        raise ReferenceWeightsError(
            f"{reference_weights}: {item_size} item embeddings, but {dataset} "
            f"needs {data.item_size} (max item id + 2)")

    # TensorFlow loads only now: every mistake in the input above is one line.
    from iclrec_tf.model.iclrec import build_model
    from iclrec_tf.model.reference import load_reference_weights
    from iclrec_tf.train.distribute import limit_threads

    if threads is not None:
        limit_threads(threads)
    model = build_model(config, data.item_size)
    if run:
        model.load_weights(weights).expect_partial()
    else:
        load_reference_weights(model.encoder, reference_weights)
    return config, data, model


def main(argv=None):
    args = build_parser().parse_args(argv)
    # Every check of the user's input comes before TensorFlow loads.
    if args.batch_size < 1:
        raise ConfigError(f"--batch-size must be a positive integer, got {args.batch_size}")
    check_analysis_flags(args)
    start = time.perf_counter()
    config, data, model = load_evaluation(args.run, args.reference_weights, args.dataset,
                                          args.data_dir)
    print(f"Loaded {data.num_users} users and the weights: "
          f"{time.perf_counter() - start:.1f} s", file=sys.stderr, flush=True)

    from iclrec_tf.train.analyses import ModelAnalyses

    start = time.perf_counter()
    analyses = ModelAnalyses(model, data, config.max_seq_length, args.split, args.protocol,
                             args.batch_size, args.length_buckets)
    if args.noise_ratio is None:
        result = analyses.metrics()
    else:
        seed = 1 if args.seed is None else args.seed
        result = {**analyses.metrics(args.noise_ratio, seed), "noise_ratio": args.noise_ratio,
                  "seed": seed}
    if args.by_length:
        result["groups"] = analyses.by_length()
    print(f"Evaluated {args.split} ({args.protocol} protocol): "
          f"{time.perf_counter() - start:.1f} s", file=sys.stderr, flush=True)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main, PROG))

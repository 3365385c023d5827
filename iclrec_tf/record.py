"""`python -m iclrec_tf.record`: a run's small, lasting record, analyses included.

A record is a flat folder, `docs/results/<name>/`, of kilobytes that outlive the
machine a run trained on, so that anyone can redraw the paper's tables and
figures (`pipelines/paper/report.py`) without training:

- `record.json`: `{"dataset", "experiment", "row", "seed"}`, where the run
  belongs in the report (`EXPERIMENTS`);
- the run's `config.json`, `history.csv` and `metrics.json` (released weights
  have no history, and their `metrics.json` is measured here, in the same
  `{"valid": {...}, "test": {...}}` shape);
- `by_length.json`: `evaluate --by-length` on test;
- `noise.json`: a list of `evaluate --noise-ratio R --seed S` on test, one for
  each ratio and seed.

The analyses need the weights, which a record never holds, so the sweep writes
the record as soon as a run finishes (`python -m iclrec_tf.sweep --records`).
"""

import json
import pathlib
import sys
import time

from iclrec_tf import cli, files
from iclrec_tf.data.datasets import DATASETS
from iclrec_tf.errors import ConfigError, DataError, StorageError
from iclrec_tf.evaluate import add_weights_flags, load_evaluation
from iclrec_tf.train.rundir import CONFIG_FILE, HISTORY_FILE, METRICS_FILE, RunDirectory

PROG = "python -m iclrec_tf.record"
# Where a record belongs: the results table, the paper's ablation and sweeps, the
# released weights, and encoder tuning (which no table shows).
EXPERIMENTS = ("table1", "table2", "fig5_k", "fig5_lambda", "fig6_batch", "released",
               "encoder_tuning")
RECORD_FILE = "record.json"
BY_LENGTH_FILE = "by_length.json"
NOISE_FILE = "noise.json"
NOISE_RATIOS = (0.0, 0.05, 0.1, 0.15, 0.2)
NOISE_SEEDS = (1, 2, 3)
# The analyses' evaluation batches: length-bucketed, the same ranks as padded ones.
BATCH_SIZE = 1024


def check_record_name(name, where="--out"):
    """Raises `ConfigError` unless `name` can name a record folder: no `/`, not hidden."""
    if not name or "/" in name or name.startswith(".") or name != name.strip():
        raise ConfigError(f"{where}: a record's name is one folder name, without '/' or a "
                          f"leading '.', got {name!r}")


def check_label(experiment, row, where):
    """Raises `ConfigError` for an unknown experiment or an empty row."""
    if experiment not in EXPERIMENTS:
        raise ConfigError(f"{where}: the experiment must be one of {', '.join(EXPERIMENTS)}, "
                          f"got {experiment!r}")
    if not row or any(c.isspace() for c in row):
        raise ConfigError(f"{where}: the row is a short label without spaces, got {row!r}")


def write_record(out, experiment, row, run=None, reference_weights=None, dataset=None,
                 data_dir=None, noise_ratios=NOISE_RATIOS, noise_seeds=NOISE_SEEDS,
                 threads=None, log=print):
    """Runs the analyses and writes the record folder `out`, replacing it atomically.

    Args:
      out: the record folder, `docs/results/<name>`.
      experiment, row: where it belongs (`EXPERIMENTS`).
      run, reference_weights, dataset, data_dir: as `evaluate`'s flags.
      noise_ratios, noise_seeds: the noise analyses, one for each ratio and seed
        (the clean one, ratio 0, is evaluated once).
      threads: TensorFlow's CPU threads (default: every core).
      log: prints one progress line per analysis.

    Raises:
      ConfigError, DataError, RunDirectoryError, ReferenceWeightsError: a bad
        flag or file; nothing is written.
    """
    out = pathlib.Path(out)
    check_record_name(out.name)
    check_label(experiment, row, "--experiment/--row")
    if not (dataset or run):
        raise ConfigError("--dataset is required with --reference-weights")
    dataset_name = str(dataset or RunDirectory(run).config().dataset).lower()
    if dataset_name not in DATASETS:
        raise DataError(f"{dataset or run}: a record is of one of {', '.join(DATASETS)}, "
                        f"not of a file of one's own")
    start = time.perf_counter()
    config, data, model = load_evaluation(run, reference_weights, dataset, data_dir,
                                          threads)
    log(f"Loaded {data.num_users} users and the weights: {time.perf_counter() - start:.1f} s")

    from iclrec_tf.train.analyses import ModelAnalyses

    protocol = config.validation_protocol
    test = ModelAnalyses(model, data, config.max_seq_length, "test", protocol, BATCH_SIZE,
                         length_buckets=True)
    contents = {}
    if run:
        run_dir = RunDirectory(run)
        for name in (CONFIG_FILE, HISTORY_FILE, METRICS_FILE):
            if not run_dir.file(name).is_file():
                raise DataError(f"{run_dir.file(name)}: missing; has the run finished?")
            contents[name] = run_dir.file(name).read_text()
    else:
        valid = ModelAnalyses(model, data, config.max_seq_length, "valid", protocol,
                              BATCH_SIZE, length_buckets=True)
        contents[CONFIG_FILE] = config.to_json() + "\n"
        contents[METRICS_FILE] = _json({"valid": valid.metrics(), "test": test.metrics()})
    start = time.perf_counter()
    by_length = {**test.metrics(), "groups": test.by_length()}
    log(f"By length: {time.perf_counter() - start:.1f} s")
    noise = []
    for ratio in noise_ratios:
        for seed in noise_seeds:
            start = time.perf_counter()
            noise.append({**test.metrics(ratio, seed), "noise_ratio": ratio, "seed": seed})
            log(f"Noise {ratio} seed {seed}: NDCG@5 {noise[-1]['NDCG@5']:.4f}, "
                f"{time.perf_counter() - start:.1f} s")
    contents[RECORD_FILE] = _json({"dataset": dataset_name, "experiment": experiment,
                                   "row": row, "seed": config.seed})
    contents[BY_LENGTH_FILE] = _json(by_length)
    contents[NOISE_FILE] = _json(noise)
    try:
        with files.StagedDirectory(out.parent, out.name) as staged:
            for name, text in contents.items():
                (staged.path / name).write_text(text)
            staged.publish(out, replace=True)
    except OSError as error:
        raise StorageError(f"{out}: cannot write the record ({error.strerror})") from None


def _json(value):
    return json.dumps(value, indent=2, sort_keys=True) + "\n"


def build_parser():
    parser = cli.ArgumentParser(
        prog=PROG, description="Write a run's record (config, history, metrics, and the "
        "by-length and noise analyses on test) into a folder of its own.")
    add_weights_flags(parser)
    parser.add_argument("--out", required=True,
                        help="the record folder, docs/results/NAME (replaced if it exists)")
    parser.add_argument("--experiment", required=True, choices=EXPERIMENTS)
    parser.add_argument("--row", required=True,
                        help="the row within the experiment: table1 paper, plus, sasrec, "
                        "seqcl...; table2 A to F; a sweep's value")
    parser.add_argument("--threads", type=int, metavar="N",
                        help="CPU threads of TensorFlow's pools (default: every core)")
    parser.add_argument("--noise-ratios", type=float, nargs="+", default=list(NOISE_RATIOS),
                        metavar="R")
    parser.add_argument("--noise-seeds", type=int, nargs="+", default=list(NOISE_SEEDS),
                        metavar="S")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    for ratio in args.noise_ratios:
        if not ratio >= 0 or ratio == float("inf"):
            raise ConfigError(f"--noise-ratios must be non-negative numbers, got {ratio}")
    for seed in args.noise_seeds:
        if seed < 0:
            raise ConfigError(f"--noise-seeds must be non-negative integers, got {seed}")
    if args.threads is not None and args.threads < 1:
        raise ConfigError(f"--threads must be a positive integer, got {args.threads}")
    write_record(args.out, args.experiment, args.row, args.run, args.reference_weights,
                 args.dataset, args.data_dir, args.noise_ratios, args.noise_seeds,
                 threads=args.threads, log=lambda line: print(line, flush=True))
    print(f"Wrote {args.out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main, PROG))

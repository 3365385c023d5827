"""`python pipelines/prepare.py`: the command line of `iclrec_tf.prepare.run.prepare`."""

import os
import sys

from iclrec_tf import cli
from iclrec_tf.data.datasets import MIN_ITEMS_PER_USER
from iclrec_tf.errors import ConfigError
from iclrec_tf.prepare.logs import FORMATS, LOG_PRESETS, LogFormat, detect_kind, input_files
from iclrec_tf.prepare.run import DEFAULT_MEMORY_MB, ENGINES, prepare

PROG = "python pipelines/prepare.py"


def build_parser():
    parser = cli.ArgumentParser(
        prog=PROG,
        description="Turn a raw interaction log (string ids) into a dataset iclrec_tf.fit "
                    "trains on: deduplicated, k-core filtered, chronological. "
                    "Guide: docs/own-data.md.")
    parser.add_argument("--input", required=True,
                        help="the log: a file, or a quoted glob of files ('logs/*.parquet'), "
                        "read in sorted path order; CSV/TSV, JSON lines or Parquet, text "
                        "files optionally .gz or .zst")
    parser.add_argument("--output", required=True,
                        help="a new directory: <its name>.txt, items.txt, users.txt, stats.json")
    parser.add_argument("--preset", choices=sorted(LOG_PRESETS),
                        help="amazon: ratings CSV without header (user,item,rating,time); "
                        "yelp: review JSON lines (user_id, business_id, date)")
    parser.add_argument("--format", choices=FORMATS,
                        help="default: from the extension (.csv, .tsv, .json/.jsonl, .parquet; "
                        "under .gz or .zst)")
    parser.add_argument("--columns", help="CSV/TSV without a header: its column names in "
                        "order, comma-separated (e.g. user_id,item_id,rating,timestamp)")
    parser.add_argument("--user-col", default="user_id", help="default user_id")
    parser.add_argument("--item-col", default="item_id", help="default item_id")
    parser.add_argument("--time-col", default="timestamp",
                        help="a number or an ISO 8601 date (default timestamp)")
    parser.add_argument("--rating-col", help="optional; counts in duplicate detection")
    parser.add_argument("--min-user", type=int, default=5,
                        help=f"records a user needs (default 5, at least {MIN_ITEMS_PER_USER})")
    parser.add_argument("--min-item", type=int, default=5, help="records an item needs "
                        "(default 5)")
    parser.add_argument("--engine", choices=ENGINES, default="duckdb",
                        help="duckdb (default): embedded, one machine; spark: Apache Spark, "
                        "local[*] or a cluster (pip install 'iclrec-tf[spark]')")
    parser.add_argument("--memory-mb", type=int,
                        help="the engine's memory in MB (default "
                        f"{', '.join(f'{mb} for {e}' for e, mb in DEFAULT_MEMORY_MB.items())}): "
                        "DuckDB's memory limit, beyond which it spills to a work directory "
                        "beside --output; Spark's driver memory")
    parser.add_argument("--threads", type=int,
                        help="the engine's threads (default: one a core)")
    parser.add_argument("--master", help="--engine spark: the master URL (default "
                        "local[--threads or *]; under spark-submit, its own)")
    return parser


def log_format(args):
    """The `LogFormat` the flags describe."""
    if args.preset is not None:
        given = [flag for flag, value, default in (
            ("--format", args.format, None), ("--columns", args.columns, None),
            ("--user-col", args.user_col, "user_id"), ("--item-col", args.item_col, "item_id"),
            ("--time-col", args.time_col, "timestamp"),
            ("--rating-col", args.rating_col, None)) if value != default]
        if given:
            raise ConfigError(f"--preset {args.preset} sets the columns; drop {given[0]}")
        return LOG_PRESETS[args.preset]
    kind = args.format or detect_kind(input_files(args.input)[0])
    names = ()
    if args.columns is not None:
        names = tuple(name.strip() for name in args.columns.split(","))
        if kind not in ("csv", "tsv"):
            raise ConfigError(f"--columns names the columns of a CSV/TSV without a header; "
                              f"this log is {kind}")
        if not all(names) or len(set(names)) != len(names):
            raise ConfigError(f"--columns {args.columns!r}: give distinct, non-empty names")
    return LogFormat(kind, args.user_col, args.item_col, args.time_col, args.rating_col, names)


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.min_user < MIN_ITEMS_PER_USER:
        raise ConfigError(f"--min-user must be at least {MIN_ITEMS_PER_USER} (leave-one-out "
                          f"holds out 3 items and trains on the rest), got {args.min_user}")
    if args.min_item < 1:
        raise ConfigError(f"--min-item must be a positive integer, got {args.min_item}")
    if args.memory_mb is not None and args.memory_mb < 64:
        raise ConfigError(f"--memory-mb must be at least 64, got {args.memory_mb}")
    if args.threads is not None and not 1 <= args.threads <= (os.cpu_count() or 1) * 4:
        raise ConfigError(f"--threads must be between 1 and {(os.cpu_count() or 1) * 4}, "
                          f"got {args.threads}")
    if args.master is not None and args.engine != "spark":
        raise ConfigError("--master is for --engine spark")
    path, stats = prepare(args.input, log_format(args), args.output, args.min_user,
                          args.min_item, args.engine, args.memory_mb, args.threads, args.master)
    print(f"Removed {stats['removed']}", flush=True)
    print(path, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main, PROG))

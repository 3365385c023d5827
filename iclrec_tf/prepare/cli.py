"""`python pipelines/prepare.py`: the command line of `iclrec_tf.prepare.run.prepare`."""

import sys

from iclrec_tf import cli
from iclrec_tf.data.datasets import MIN_ITEMS_PER_USER
from iclrec_tf.errors import ConfigError
from iclrec_tf.prepare.events import FORMATS, LOG_PRESETS, LogFormat, detect_kind
from iclrec_tf.prepare.run import DEFAULT_MEMORY_MB, prepare

PROG = "python pipelines/prepare.py"


def build_parser():
    parser = cli.ArgumentParser(
        prog=PROG,
        description="Turn a raw interaction log (string ids) into a dataset iclrec_tf.fit "
                    "trains on: deduplicated, k-core filtered, chronological.")
    parser.add_argument("--input", required=True, help="the log: CSV/TSV with a header, or "
                        "JSON lines")
    parser.add_argument("--output", required=True,
                        help="a new directory: <its name>.txt, items.txt, users.txt, stats.json")
    parser.add_argument("--preset", choices=sorted(LOG_PRESETS),
                        help="amazon: ratings CSV without header (user,item,rating,time); "
                        "yelp: review JSON lines (user_id, business_id, date)")
    parser.add_argument("--format", choices=FORMATS,
                        help="default: from the extension (.csv, .tsv, .json/.jsonl)")
    parser.add_argument("--user-col", default="user_id", help="default user_id")
    parser.add_argument("--item-col", default="item_id", help="default item_id")
    parser.add_argument("--time-col", default="timestamp",
                        help="a number or an ISO 8601 date (default timestamp)")
    parser.add_argument("--rating-col", help="optional; counts in duplicate detection")
    parser.add_argument("--min-user", type=int, default=5,
                        help=f"records a user needs (default 5, at least {MIN_ITEMS_PER_USER})")
    parser.add_argument("--min-item", type=int, default=5, help="records an item needs "
                        "(default 5)")
    parser.add_argument("--memory-mb", type=float, default=DEFAULT_MEMORY_MB,
                        help=f"memory for the events sorted at once (default "
                        f"{DEFAULT_MEMORY_MB}); a larger log is split into temporary files "
                        "beside --output, 24-32 bytes an event")
    return parser


def log_format(args):
    """The `LogFormat` the flags describe."""
    if args.preset is not None:
        given = [flag for flag, value, default in (
            ("--format", args.format, None), ("--user-col", args.user_col, "user_id"),
            ("--item-col", args.item_col, "item_id"), ("--time-col", args.time_col, "timestamp"),
            ("--rating-col", args.rating_col, None)) if value != default]
        if given:
            raise ConfigError(f"--preset {args.preset} sets the columns; drop {given[0]}")
        return LOG_PRESETS[args.preset]
    return LogFormat(args.format or detect_kind(args.input), args.user_col, args.item_col,
                     args.time_col, args.rating_col)


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.min_user < MIN_ITEMS_PER_USER:
        raise ConfigError(f"--min-user must be at least {MIN_ITEMS_PER_USER} (leave-one-out "
                          f"holds out 3 items and trains on the rest), got {args.min_user}")
    if args.min_item < 1:
        raise ConfigError(f"--min-item must be a positive integer, got {args.min_item}")
    if not args.memory_mb > 0:
        raise ConfigError(f"--memory-mb must be positive, got {args.memory_mb:g}")
    try:
        path, stats = prepare(args.input, log_format(args), args.output, args.min_user,
                              args.min_item, int(args.memory_mb * 2**20))
    except MemoryError:
        raise ConfigError(f"out of memory with --memory-mb {args.memory_mb:g}: lower it; the "
                          "distinct ids need memory too, about 60 bytes each") from None
    print(f"Removed {stats['removed']}", flush=True)
    print(path, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main, PROG))

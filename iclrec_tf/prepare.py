"""`python pipelines/prepare.py`: a raw interaction log -> a dataset `fit` trains on.

Steps, in order:

1. Read the log (`iclrec_tf.events`): every record becomes integer codes.
2. Drop exact duplicates: records equal in user, item, time and (if read)
   rating; the first one stays.
3. k-core: drop the records of users with fewer than `min_user` records and
   of items with fewer than `min_item`, users then items, repeated until a
   round drops nothing. The result is the largest subset where both hold, so it
   does not depend on the order of removal. Counts are records (events), not
   distinct items: a user who rated the same item twice at two times has two.
4. Order: users are numbered 1..U by their first record in the input (among
   the records kept); each user's records are sorted by time, ties in input
   order. Items are numbered 1..N by first appearance in the written sequence
   file, read top to bottom, left to right.

The output directory receives `<name>.txt` (`name` the directory's own name;
one line per user, `user_id item_1 ... item_n`, the format `load_sequences`
reads), `items.txt` and `users.txt` (line i: the raw id of item or user i) and
`stats.json`. Everything is written into a temporary directory beside it,
then renamed: a failure leaves nothing behind.
"""

import dataclasses
import os
import pathlib
import shutil
import sys
import time
import uuid

import numpy as np

from iclrec_tf import cli
from iclrec_tf.config import ConfigError
from iclrec_tf.data import MIN_ITEMS_PER_USER, DataError
from iclrec_tf.events import FORMATS, PRESETS, LogFormat, detect_kind, read_events
from iclrec_tf.rundir import RunDirectory
from iclrec_tf.vocabulary import ITEMS_FILE, USERS_FILE, vocabulary_text

STATS_FILE = "stats.json"
PROG = "python pipelines/prepare.py"


@dataclasses.dataclass
class PreparedData:
    """Chronological sequences over renumbered ids.

    Attributes:
      items: [interactions] int64 item ids 1..N, user 1's sequence first.
      row_splits: [users + 1] user u (from 1) owns `items[row_splits[u-1]:row_splits[u]]`.
      user_names: raw id of user 1, 2, ...
      item_names: raw id of item 1, 2, ...
      stats: the counts written to `stats.json`.
    """

    items: np.ndarray
    row_splits: np.ndarray
    user_names: list
    item_names: list
    stats: dict


def first_occurrences(*keys):
    """[events] bool, True for the first record of each distinct tuple of `keys`.

    Args:
      *keys: equal-length 1-D arrays, one per field.
    """
    count = len(keys[0])
    order = np.lexsort((np.arange(count),) + keys[::-1])  # by keys, then input order
    repeat = np.ones(count, dtype=bool)
    if count:
        same = np.ones(count - 1, dtype=bool)
        for key in keys:
            ordered = key[order]
            same &= ordered[1:] == ordered[:-1]
        repeat[order[1:]] = same
        repeat[order[0]] = False
    return ~repeat


def k_core(users, items, min_user, min_item):
    """The records of the largest subset in which every user and item has enough.

    Args:
      users: [events] int user codes (0..U-1).
      items: [events] int item codes.
      min_user: records a user needs.
      min_item: records an item needs.

    Returns:
      ([events] bool keep mask, records dropped for users, records dropped for
      items, rounds until a round dropped nothing).
    """
    rows = np.arange(len(users))
    dropped = {"min_user": 0, "min_item": 0}
    rounds = 0
    while True:
        rounds += 1
        before = len(rows)
        for name, codes, minimum in (("min_user", users, min_user),
                                     ("min_item", items, min_item)):
            kept_codes = codes[rows]
            counts = np.bincount(kept_codes)
            enough = counts[kept_codes] >= minimum
            dropped[name] += int(len(rows) - enough.sum())
            rows = rows[enough]  # compacting makes later rounds cheaper
        if len(rows) == before:
            break
    keep = np.zeros(len(users), dtype=bool)
    keep[rows] = True
    return keep, dropped["min_user"], dropped["min_item"], rounds


def dense_ranks(codes):
    """Each code's rank by first appearance in `codes`, as a lookup table by code."""
    distinct, first = np.unique(codes, return_index=True)
    table = np.full(int(codes.max()) + 1 if len(codes) else 0, -1, dtype=np.int64)
    table[distinct[np.argsort(first, kind="stable")]] = np.arange(len(distinct))
    return table


def prepare_events(log, min_user=5, min_item=5):
    """Deduplicates, k-cores, orders and renumbers an `EventLog`.

    Args:
      log: an `EventLog`.
      min_user: records a user needs (at least `MIN_ITEMS_PER_USER`).
      min_item: records an item needs.

    Returns:
      A `PreparedData`.

    Raises:
      DataError: nothing is left after filtering.
    """
    keys = (log.users, log.items, log.times) + (() if log.ratings is None else (log.ratings,))
    unique = first_occurrences(*keys)
    rows = np.flatnonzero(unique)  # input order
    keep, by_user, by_item, rounds = k_core(log.users[rows], log.items[rows],
                                            min_user, min_item)
    rows = rows[keep]
    if not len(rows):
        raise DataError(f"no user has {min_user} records whose items have {min_item} each: "
                        "nothing left after filtering; lower --min-user or --min-item")
    user_rank = dense_ranks(log.users[rows])
    users = user_rank[log.users[rows]]
    order = np.lexsort((rows, log.times[rows], users))  # by user, time, input order
    item_codes = log.items[rows][order]
    item_rank = dense_ranks(item_codes)
    items = item_rank[item_codes] + 1
    lengths = np.bincount(users)
    row_splits = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)

    user_names = [None] * len(lengths)
    for code in np.flatnonzero(user_rank >= 0):
        user_names[user_rank[code]] = log.user_names[code]
    item_names = [None] * (int(items.max()))
    for code in np.flatnonzero(item_rank >= 0):
        item_names[item_rank[code]] = log.item_names[code]
    stats = {
        "input_records": log.num_events,
        "removed": {"duplicates": int(log.num_events - unique.sum()),
                    "min_user": by_user, "min_item": by_item},
        "k_core": {"min_user": min_user, "min_item": min_item, "rounds": rounds},
        "users": len(user_names),
        "items": len(item_names),
        "interactions": len(items),
        "sequence_length": {"min": int(lengths.min()), "max": int(lengths.max()),
                            "mean": round(float(lengths.mean()), 4),
                            "median": float(np.median(lengths))},
    }
    return PreparedData(items, row_splits, user_names, item_names, stats)


def sequence_lines(prepared):
    """The dataset file's text: `user item_1 ... item_n` per line, users from 1."""
    items = prepared.items.tolist()
    splits = prepared.row_splits.tolist()
    return "".join(
        f"{user} {' '.join(map(str, items[start:end]))}\n"
        for user, (start, end) in enumerate(zip(splits[:-1], splits[1:], strict=True), start=1))


def check_output(output):
    """Raises `ConfigError` unless `output` is absent or an empty directory."""
    output = pathlib.Path(output)
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise ConfigError(f"--output {output} already exists; remove it or choose another")


def write_prepared(prepared, output):
    """Writes the dataset files into `output`, atomically: all or nothing.

    Returns:
      The path of the sequence file.

    Raises:
      ConfigError: `output` exists and is not empty, or cannot be written.
    """
    output = pathlib.Path(output)
    check_output(output)
    # Not mkdtemp: its 0700 is for secrets, and a dataset is for everyone who may read it.
    staging = output.parent / f".{output.name}.{uuid.uuid4().hex[:12]}"
    try:
        staging.mkdir(parents=True)
    except OSError as error:
        raise ConfigError(f"--output {output}: not writable ({error.strerror})") from None
    sequences = f"{output.name}.txt"
    try:
        files = RunDirectory(staging)
        files.write_text(sequences, sequence_lines(prepared))
        files.write_text(ITEMS_FILE, vocabulary_text(prepared.item_names))
        files.write_text(USERS_FILE, vocabulary_text(prepared.user_names))
        files.write_json(STATS_FILE, prepared.stats)
        os.replace(staging, output)  # replaces an empty directory, fails on a full one
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return output / sequences


def build_parser():
    parser = cli.ArgumentParser(
        prog=PROG,
        description="Turn a raw interaction log (string ids) into a dataset iclrec_tf.fit "
                    "trains on: deduplicated, k-core filtered, chronological.")
    parser.add_argument("--input", required=True, help="the log: CSV/TSV with a header, or "
                        "JSON lines")
    parser.add_argument("--output", required=True,
                        help="a new directory: <its name>.txt, items.txt, users.txt, stats.json")
    parser.add_argument("--preset", choices=sorted(PRESETS),
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
        return PRESETS[args.preset]
    return LogFormat(args.format or detect_kind(args.input), args.user_col, args.item_col,
                     args.time_col, args.rating_col)


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.min_user < MIN_ITEMS_PER_USER:
        raise ConfigError(f"--min-user must be at least {MIN_ITEMS_PER_USER} (leave-one-out "
                          f"holds out 3 items and trains on the rest), got {args.min_user}")
    if args.min_item < 1:
        raise ConfigError(f"--min-item must be a positive integer, got {args.min_item}")
    output = pathlib.Path(args.output)
    check_output(output)  # before the long read, not after it
    start = time.perf_counter()
    log = read_events(args.input, log_format(args))
    print(f"Read {log.num_events} records ({len(log.user_names)} users, "
          f"{len(log.item_names)} items) in {time.perf_counter() - start:.1f} s", flush=True)
    prepared = prepare_events(log, args.min_user, args.min_item)
    path = write_prepared(prepared, output)
    stats = prepared.stats
    print(f"Kept {stats['interactions']} interactions of {stats['users']} users and "
          f"{stats['items']} items; removed {stats['removed']}", flush=True)
    print(path, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main, PROG))

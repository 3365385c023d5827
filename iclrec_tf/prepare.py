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
import json
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
    order = np.lexsort(keys[::-1])  # stable: equal tuples stay in input order
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
    """Ranks codes by first appearance in `codes`.

    Returns:
      A lookup table, code -> rank (-1 for a code absent from `codes`), and the
      distinct codes in rank order.
    """
    distinct, first = np.unique(codes, return_index=True)
    ordered = distinct[np.argsort(first, kind="stable")]
    table = np.full(int(codes.max()) + 1 if len(codes) else 0, -1, dtype=np.int64)
    table[ordered] = np.arange(len(distinct))
    return table, ordered


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
    # One int64 key for the pair: a sort pass fewer than two int32 keys.
    pairs = log.users.astype(np.int64) * max(len(log.item_names), 1) + log.items
    unique = first_occurrences(pairs, log.times,
                               *(() if log.ratings is None else (log.ratings,)))
    rows = np.flatnonzero(unique)  # input order
    keep, by_user, by_item, rounds = k_core(log.users[rows], log.items[rows],
                                            min_user, min_item)
    rows = rows[keep]
    if not len(rows):
        raise DataError(f"no user has {min_user} records whose items have {min_item} each: "
                        "nothing left after filtering; lower --min-user or --min-item")
    user_rank, user_codes = dense_ranks(log.users[rows])
    users = user_rank[log.users[rows]]
    # By user, then time; a stable sort keeps ties in input order, as `rows` is.
    order = np.lexsort((log.times[rows], users))
    item_codes = log.items[rows][order]
    item_rank, ordered_items = dense_ranks(item_codes)
    items = item_rank[item_codes] + 1
    lengths = np.bincount(users)
    row_splits = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    user_names = [log.user_names[code] for code in user_codes.tolist()]
    item_names = [log.item_names[code] for code in ordered_items.tolist()]
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


def sequence_lines(prepared, users_per_chunk=1 << 16):
    """Yields the dataset file's text, `user item_1 ... item_n` a line, users from 1.

    In chunks of `users_per_chunk` lines: the whole file as Python ints and
    text would be the largest thing in memory (28 bytes an int).
    """
    splits = prepared.row_splits
    for first in range(0, len(splits) - 1, users_per_chunk):
        last = min(first + users_per_chunk, len(splits) - 1)
        items = prepared.items[splits[first]:splits[last]].tolist()
        bounds = (splits[first:last + 1] - splits[first]).tolist()
        yield "".join(f"{user} {' '.join(map(str, items[start:end]))}\n" for user, start, end
                      in zip(range(first + 1, last + 1), bounds[:-1], bounds[1:], strict=True))


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
        # Plain writes: renaming the whole directory is what makes them atomic.
        with open(staging / sequences, "w", encoding="utf-8") as stream:
            stream.writelines(sequence_lines(prepared))
        for name, text in ((ITEMS_FILE, vocabulary_text(prepared.item_names)),
                           (USERS_FILE, vocabulary_text(prepared.user_names)),
                           (STATS_FILE, json.dumps(prepared.stats, indent=2) + "\n")):
            (staging / name).write_text(text, encoding="utf-8")
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

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

Out of core: the events are never all in memory. Reading appends them to
temporary files split by user (`iclrec_tf.partitions`), as many files as it
takes for one to fit in `memory_bytes`. Steps 2 and 3 then make one pass over
the files a k-core round, each file in turn (duplicates and the user counts are
within a file, the item counts are summed over files); step 4 splits the kept
events again, by ranges of the new user numbers, and sorts and writes one range
at a time. What stays in memory is a few numbers per distinct user and item and
the raw ids themselves.
"""

import contextlib
import dataclasses
import glob
import json
import math
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
from iclrec_tf.partitions import Partitions
from iclrec_tf.vocabulary import ITEMS_FILE, USERS_FILE, vocabulary_text

STATS_FILE = "stats.json"
PROG = "python pipelines/prepare.py"
# Memory one event takes at the peak of a partition's processing: the records
# (24-32 bytes), the duplicate sort's keys and order, the masks. Measured: see
# docs/BENCHMARKS.md, "Preparing your own data".
BYTES_PER_EVENT = 128
DEFAULT_MEMORY_MB = 1024
MAX_PARTITIONS = 4096
PARTITIONS_DIR = ".partitions"


def partition_count(path, memory_bytes):
    """How many partitions keep one partition's events within `memory_bytes`.

    The events are estimated from the file's size and the mean length of the
    lines in its first MiB.

    Raises:
      ConfigError: it would take more than `MAX_PARTITIONS`.
    """
    size = pathlib.Path(path).stat().st_size
    with open(path, "rb") as stream:
        sample = stream.read(1 << 20)
    events = size / (len(sample) / max(sample.count(b"\n"), 1)) if sample else 0
    count = max(1, math.ceil(events * BYTES_PER_EVENT / memory_bytes))
    if count > MAX_PARTITIONS:
        raise ConfigError(f"--memory-mb {memory_bytes / 2**20:g}: this log would need {count} "
                          f"temporary partitions (at most {MAX_PARTITIONS}); give more memory")
    return count


def first_occurrences(*keys):
    """[events] bool, True for the first record of each distinct tuple of `keys`.

    Sorts by the first key alone, which should be the most selective: only the
    records that share it with another are compared on all keys.

    Args:
      *keys: equal-length 1-D arrays, one per field.
    """
    count = len(keys[0])
    keep = np.ones(count, dtype=bool)
    ordered = np.argsort(keys[0], kind="stable")
    same = keys[0][ordered[1:]] == keys[0][ordered[:-1]]
    shared = np.zeros(count, dtype=bool)
    shared[ordered[1:][same]] = shared[ordered[:-1][same]] = True
    rows = np.flatnonzero(shared)  # input order
    if len(rows):
        shared_keys = [key[rows] for key in keys]
        order = np.lexsort(shared_keys[::-1])  # stable: ties in input order
        repeat = np.ones(len(rows) - 1, dtype=bool)
        for key in shared_keys:
            ordered_key = key[order]
            repeat &= ordered_key[1:] == ordered_key[:-1]
        keep[rows[order[1:][repeat]]] = False
    return keep


@dataclasses.dataclass
class Filtered:
    """What deduplication and the k-core leave, per user code.

    Attributes:
      lengths: [users] records kept of each user (0: the user is gone).
      first_rows: [users] the input index of each kept user's first kept record.
      removed: records removed as `duplicates`, by `min_user` and by `min_item`.
      rounds: k-core rounds, the last one removing nothing.
    """

    lengths: np.ndarray
    first_rows: np.ndarray
    removed: dict
    rounds: int


def filter_partitions(partitions, min_user, min_item):
    """Drops duplicates, then k-cores, rewriting the partitions in place.

    k-core: users with fewer than `min_user` records, then items with fewer than
    `min_item`, repeated until a round drops nothing. One pass over the
    partitions a round: a partition's users are whole in it, so the user half is
    done file by file; the item counts are summed over the files and the item
    half is applied as the next round reads them.

    Args:
      partitions: `Partitions` by user, as `read_events` filled them.
      min_user: records a user needs.
      min_item: records an item needs.

    Returns:
      A `Filtered`.
    """
    num_users, num_items = len(partitions.user_names), len(partitions.item_names)
    # A few numbers per user are what the filter keeps in memory: as narrow as they can be.
    lengths = np.zeros(num_users, dtype=np.int32)
    first_rows = np.zeros(num_users, dtype=np.int64)
    removed = dict.fromkeys(("duplicates", "min_user", "min_item"), 0)
    rare_items = None  # found by a round, applied by the next
    rounds = 0
    while True:
        rounds += 1
        start = time.perf_counter()
        item_counts = np.zeros(num_items, dtype=np.int64)
        by_user = 0
        for index in range(partitions.count):
            records = partitions.load(index)
            before = len(records)
            if rounds == 1:
                unique = first_occurrences(
                    # One int64 key for the pair: a sort pass fewer than two int32 keys.
                    records["user"].astype(np.int64) * num_items + records["item"],
                    records["time"], *((records["rating"],) if partitions.has_rating else ()))
                removed["duplicates"] += int(before - unique.sum())
                records = records[unique]
            else:  # the previous round's item half
                records = records[~rare_items[records["item"]]]
            # Users of partition `index` are index, index + count, ...: local numbers.
            local = records["user"] // partitions.count
            counts = np.bincount(local, minlength=len(range(index, num_users,
                                                            partitions.count)))
            enough = counts[local] >= min_user
            by_user += int(len(records) - enough.sum())
            records, local = records[enough], local[enough]
            lengths[index::partitions.count] = np.where(counts >= min_user, counts, 0)
            # A user's first kept record: the smallest input index still there.
            firsts = first_rows[index::partitions.count]
            firsts[:] = np.iinfo(np.int64).max
            np.minimum.at(firsts, local, records["row"])
            item_counts += np.bincount(records["item"], minlength=num_items)
            if len(records) != before:
                partitions.replace(index, records)
        rare_items = item_counts < min_item
        by_item = int(item_counts[rare_items].sum())
        removed["min_user"] += by_user
        removed["min_item"] += by_item
        print(f"k-core round {rounds}: removed {by_user} records of users with fewer than "
              f"{min_user}, {by_item} of items with fewer than {min_item} "
              f"({time.perf_counter() - start:.1f} s)", flush=True)
        if not by_user and not by_item:
            return Filtered(lengths, first_rows, removed, rounds)


def sequence_lines(first_user, items, lengths, users_per_chunk=1 << 16):
    """Yields sequence file text, `user item_1 ... item_n` a line.

    Args:
      first_user: the number of the first line's user; the next ones follow.
      items: [records] item numbers, the users' sequences one after the other.
      lengths: [users] each user's share of `items`.
      users_per_chunk: lines made at once: all of them as Python ints and text
        would be the largest thing in memory (28 bytes an int).
    """
    splits = np.concatenate([[0], np.cumsum(lengths)])
    for first in range(0, len(lengths), users_per_chunk):
        last = min(first + users_per_chunk, len(lengths))
        chunk = items[splits[first]:splits[last]].tolist()
        bounds = (splits[first:last + 1] - splits[first]).tolist()
        yield "".join(f"{user} {' '.join(map(str, chunk[start:end]))}\n" for user, start, end
                      in zip(range(first_user + first, first_user + last), bounds[:-1],
                             bounds[1:], strict=True))


def number_users(filtered):
    """Numbers the users kept (from 0) by their first kept record in the input.

    Args:
      filtered: a `Filtered`.

    Returns:
      ([users kept] their codes in number order, [all user codes] the number of
      each or -1, [users kept] their lengths in number order), all int32.
    """
    kept = np.flatnonzero(filtered.lengths).astype(np.int32)
    user_codes = kept[np.argsort(filtered.first_rows[kept], kind="stable")]
    del kept
    user_numbers = np.full(len(filtered.lengths), -1, dtype=np.int32)
    user_numbers[user_codes] = np.arange(len(user_codes), dtype=np.int32)
    return user_codes, user_numbers, filtered.lengths[user_codes]


def write_sequences(partitions, user_numbers, lengths, path, work):
    """Writes the sequence file: users in number order, items numbered as they appear.

    The records are split once more, into partitions of consecutive user
    numbers, so that each can be sorted (by user, time, input order) and
    written in turn.

    Args:
      partitions: the filtered `Partitions` by user; emptied (files deleted).
      user_numbers: [all user codes] the number (from 0) of each kept user, from
        `number_users`.
      lengths: [users kept] records of each, in number order.
      path: the sequence file to write.
      work: a directory for the second partitions.

    Returns:
      The item codes in number order.
    """
    per_part = max(1, math.ceil(lengths.sum() / partitions.count))
    # Consecutive users, about `per_part` records a partition (a longer user
    # alone), numbered without gaps.
    starts = (np.cumsum(lengths, dtype=np.int64) - lengths) // per_part
    part_of_rank = np.concatenate([[0], np.cumsum(starts[1:] != starts[:-1])]).astype(np.int32)
    del starts
    first_ranks = np.searchsorted(part_of_rank, np.arange(part_of_rank[-1] + 2))
    by_rank = Partitions(work, len(first_ranks) - 1, partitions.has_rating)
    for index in range(partitions.count):
        records = partitions.load(index)
        records["user"] = user_numbers[records["user"]]
        by_rank.append(records, part_of_rank[records["user"]])
        partitions.remove(index)

    item_numbers = np.zeros(len(partitions.item_names), dtype=np.int64)
    item_codes = []
    numbered = 0
    with open(path, "w", encoding="utf-8") as stream:
        for index in range(by_rank.count):
            records = by_rank.load(index)
            # One user's records come from one partition by user, in input order,
            # so a stable sort leaves their ties in input order.
            records = records[np.lexsort((records["time"], records["user"]))]
            codes = records["item"]
            distinct, first_seen = np.unique(codes[item_numbers[codes] == 0],
                                             return_index=True)
            newcomers = distinct[np.argsort(first_seen)]
            item_numbers[newcomers] = np.arange(numbered + 1, numbered + len(newcomers) + 1)
            numbered += len(newcomers)
            item_codes.append(newcomers)
            ranks = slice(first_ranks[index], first_ranks[index + 1])
            stream.writelines(sequence_lines(ranks.start + 1, item_numbers[codes],
                                             lengths[ranks]))
            by_rank.remove(index)
    return np.concatenate(item_codes)


def write_names(path, names, codes, per_chunk=1 << 16):
    """Writes `names[codes]`, one a line (a vocabulary file), a chunk of names at a time.

    Args:
      path: the file.
      names: a pyarrow string array (chunked or not), code -> raw id.
      codes: the codes to write, in line order.
      per_chunk: names converted to Python strings at once.
    """
    with open(path, "w", encoding="utf-8") as stream:
        for start in range(0, len(codes), per_chunk):
            stream.write(vocabulary_text(names.take(codes[start:start + per_chunk]).to_pylist()))


def check_output(output):
    """Raises `ConfigError` unless `output` is absent or an empty directory."""
    output = pathlib.Path(output)
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise ConfigError(f"--output {output} already exists; remove it or choose another")


@contextlib.contextmanager
def staged(output):
    """Yields a new directory beside `output` that becomes `output` if the block succeeds.

    Raises:
      ConfigError: `output` exists and is not empty, or cannot be written.
    """
    output = pathlib.Path(output)
    check_output(output)
    # A run killed outright (SIGKILL, the OOM killer) cannot clean up after itself.
    for leftover in sorted(output.parent.glob(f".{glob.escape(output.name)}.*")):
        print(f"note: {leftover} was left by a run that was killed; delete it to free its "
              "space", file=sys.stderr, flush=True)
    # Not mkdtemp: its 0700 is for secrets, and a dataset is for everyone who may read it.
    staging = output.parent / f".{output.name}.{uuid.uuid4().hex[:12]}"
    try:
        staging.mkdir(parents=True)
    except OSError as error:
        raise ConfigError(f"--output {output}: not writable ({error.strerror})") from None
    try:
        yield staging
        os.replace(staging, output)  # replaces an empty directory, fails on a full one
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def prepare(path, log_format, output, min_user=5, min_item=5,
            memory_bytes=DEFAULT_MEMORY_MB << 20):
    """Reads a log and writes the dataset directory `output` (see the module docstring).

    Args:
      path: the log.
      log_format: a `LogFormat`.
      output: the directory to create; absent or empty.
      min_user: records a user needs (at least `MIN_ITEMS_PER_USER`).
      min_item: records an item needs.
      memory_bytes: the events one partition may hold (see `partition_count`).

    Returns:
      (the sequence file's path, the statistics written to `stats.json`).

    Raises:
      DataError: the log is unreadable or malformed, or nothing is left after filtering.
      ConfigError: `output` is not new, or a file cannot be written.
    """
    output = pathlib.Path(output)
    with staged(output) as staging:
        work = staging / PARTITIONS_DIR
        start = time.perf_counter()
        partitions = read_events(path, log_format, lambda has_rating: Partitions(
            work / "by_user", partition_count(path, memory_bytes), has_rating))
        input_records = partitions.num_records
        print(f"Read {input_records} records ({len(partitions.user_names)} users, "
              f"{len(partitions.item_names)} items) into {partitions.count} "
              f"partition{'s' * (partitions.count > 1)} in "
              f"{time.perf_counter() - start:.1f} s", flush=True)
        filtered = filter_partitions(partitions, min_user, min_item)
        if not filtered.lengths.any():
            raise DataError(f"no user has {min_user} records whose items have {min_item} "
                            "each: nothing left after filtering; lower --min-user or --min-item")
        start = time.perf_counter()
        user_codes, user_numbers, lengths = number_users(filtered)
        stats = {
            "input_records": input_records,
            "removed": filtered.removed,
            "k_core": {"min_user": min_user, "min_item": min_item, "rounds": filtered.rounds},
            "users": len(user_codes),
            "items": None,  # numbered as the sequences are written
            "interactions": int(lengths.sum()),
            "sequence_length": {"min": int(lengths.min()), "max": int(lengths.max()),
                                "mean": round(float(lengths.mean()), 4),
                                "median": float(np.median(lengths))},
        }
        # The raw user ids and the per-user arrays are the largest things in
        # memory now: written or dropped before the sort needs its share.
        del filtered
        write_names(staging / USERS_FILE, partitions.user_names, user_codes)
        partitions.user_names = user_codes = None
        sequences = staging / f"{output.name}.txt"
        item_codes = write_sequences(partitions, user_numbers, lengths, sequences,
                                     work / "by_number")
        shutil.rmtree(work)
        stats["items"] = len(item_codes)
        write_names(staging / ITEMS_FILE, partitions.item_names, item_codes)
        (staging / STATS_FILE).write_text(json.dumps(stats, indent=2) + "\n", encoding="utf-8")
        print(f"Wrote {stats['interactions']} interactions of {stats['users']} users and "
              f"{stats['items']} items in {time.perf_counter() - start:.1f} s", flush=True)
    return output / sequences.name, stats


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

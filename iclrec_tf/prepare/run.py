"""A raw interaction log -> a dataset `fit` trains on (`python pipelines/prepare.py`).

Steps, in order:

1. Read the log (`iclrec_tf.prepare.events`): every record becomes integer codes.
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
temporary files split by user (`iclrec_tf.prepare.partitions`), as many files as it
takes for one to fit in `memory_bytes`. Steps 2 and 3 then make one pass over
the files a k-core round, each file in turn (duplicates and the user counts are
within a file, the item counts are summed over files); step 4 splits the kept
events again, by ranges of the new user numbers, and sorts and writes one range
at a time. What stays in memory is a few numbers per distinct user and item and
the raw ids themselves.
"""

import json
import math
import pathlib
import shutil
import time

import numpy as np

from iclrec_tf.data.vocabulary import ITEMS_FILE, USERS_FILE
from iclrec_tf.errors import ConfigError, DataError
from iclrec_tf.prepare.events import read_events
from iclrec_tf.prepare.kcore import filter_partitions, number_users
from iclrec_tf.prepare.partitions import Partitions
from iclrec_tf.prepare.write import staged, write_names, write_sequences

STATS_FILE = "stats.json"
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









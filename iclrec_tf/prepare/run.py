"""A raw interaction log -> a dataset `fit` trains on (`python pipelines/prepare.py`).

Steps, in order (the SQL is `iclrec_tf.prepare.query`):

1. Read the log, every file in sorted path order.
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
then renamed: a failure leaves nothing behind. The engine (DuckDB, or Spark
for a cluster) keeps its own work files in that directory too.
"""

import itertools
import json
import math
import pathlib
import time

from iclrec_tf.cli import phase
from iclrec_tf.data.vocabulary import ITEMS_FILE, USERS_FILE
from iclrec_tf.errors import DataError
from iclrec_tf.prepare import logs, query
from iclrec_tf.prepare.write import staged, write_text

STATS_FILE = "stats.json"
# Each engine's memory by default: DuckDB's limit leaves its process within about 700 MB
# on a 10M-event log, as fast as 1024 (docs/BENCHMARKS.md); Spark's driver needs more.
DEFAULT_MEMORY_MB = {"duckdb": 512, "spark": 1024}
ENGINES = ("duckdb", "spark")
# The records whose lines a MB of the engine's memory builds at once: DuckDB keeps a
# range's lists in memory (a 10M-record range fits in 512 MB; this leaves room).
RECORDS_PER_MB = 8192
WORK_DIR = ".work"


def open_engine(engine, work, memory_mb, threads=None, master=None):
    """The engine object of `iclrec_tf.prepare.duckdb_engine` or `spark_engine`.

    `work` is DuckDB's work directory (Spark keeps its scratch files in its
    local directories).
    """
    if engine == "spark":
        from iclrec_tf.prepare.spark_engine import SparkEngine

        return SparkEngine(memory_mb, threads, master)
    from iclrec_tf.prepare.duckdb_engine import DuckDBEngine

    return DuckDBEngine(work, memory_mb, threads)


def prepare(pattern, log_format, output, min_user=5, min_item=5, engine="duckdb",
            memory_mb=None, threads=None, master=None):
    """Reads a log and writes the dataset directory `output` (see the module docstring).

    Args:
      pattern: the log: a file, or a glob of files.
      log_format: a `LogFormat`.
      output: the directory to create; absent or empty.
      min_user: records a user needs (at least `MIN_ITEMS_PER_USER`).
      min_item: records an item needs.
      engine: `duckdb` or `spark`.
      memory_mb: the engine's memory (DuckDB's limit; Spark's driver memory); None:
        `DEFAULT_MEMORY_MB`.
      threads: the engine's threads (None: one a core).
      master: Spark's master URL (None: `local[threads or *]`).

    Returns:
      (the sequence file's path, the statistics written to `stats.json`).

    Raises:
      DataError: the log is unreadable or malformed, or nothing is left after filtering.
      ConfigError: `output` is not new, or a file cannot be written.
    """
    paths = logs.input_files(pattern)
    names = logs.check_files(paths, log_format)
    output = pathlib.Path(output)
    with staged(output) as staging:
        memory_mb = memory_mb or DEFAULT_MEMORY_MB[engine]
        sql = open_engine(engine, staging / WORK_DIR, memory_mb, threads, master)
        try:
            stats = _prepare(sql, paths, names, log_format, staging, output.name,
                             min_user, min_item, memory_mb)
        finally:
            sql.close()
    return output / f"{output.name}.txt", stats


def _prepare(sql, paths, names, log_format, staging, name, min_user, min_item,
             memory_mb):
    dialect = sql.dialect
    start = time.perf_counter()
    sql.read(paths, names, log_format)
    for file, _ in sql.rows(query.first_bad(dialect, log_format.rating is not None)):
        # The engine tells the file; if it cannot, every file is searched.
        suspects = range(len(paths)) if file is None else [file]
        for index in suspects:
            logs.bad_record(paths[index], log_format, names[index])
        raise DataError(f"{paths[suspects[0]]}: a record breaks the rules of a log (see "
                        "docs/own-data.md), but none of its lines does on its own")
    input_records = sql.rows(query.count("parsed"))[0][0]
    if not input_records:
        raise DataError(f"{paths[0]}: the log has no records" if len(paths) == 1 else
                        f"--input: none of its {len(paths)} files has a record")
    phase(f"Read {input_records} records from {len(paths)} file{'s' * (len(paths) > 1)}",
          start)

    start = time.perf_counter()
    sql.materialize("user_codes", query.codes(dialect, "user_id"))
    sql.materialize("item_codes", query.codes(dialect, "item_id"))
    sql.materialize("kcore_0", query.unique_events(dialect))
    sql.drop("parsed")
    records = sql.rows(query.count("kcore_0"))[0][0]
    removed = {"duplicates": input_records - records, "min_user": 0, "min_item": 0}
    phase(f"Dropped {removed['duplicates']} exact duplicates", start)
    user_table = item_table = None  # the codes kept so far (None: every code)
    rounds = 0
    while True:
        rounds += 1
        start = time.perf_counter()
        # Each half filters by the other kind alone: a user (or item) dropped before
        # has fewer records now, among fewer items (users), and stays out.
        sql.materialize(f"users_{rounds}", query.enough(
            "user_code", query.kept_records("kcore_0", items=item_table), min_user))
        kept_users = sql.rows(query.total(f"users_{rounds}"))[0][0]
        sql.materialize(f"items_{rounds}", query.enough(
            "item_code", query.kept_records("kcore_0", users=f"users_{rounds}"), min_item))
        kept = sql.rows(query.total(f"items_{rounds}"))[0][0]
        for table in filter(None, (user_table, item_table)):
            sql.drop(table)
        user_table, item_table = f"users_{rounds}", f"items_{rounds}"
        by_user, by_item = records - kept_users, kept_users - kept
        removed["min_user"] += by_user
        removed["min_item"] += by_item
        records = kept
        phase(f"k-core round {rounds}: removed {by_user} records of users with fewer than "
              f"{min_user}, {by_item} of items with fewer than {min_item}", start)
        if not by_user and not by_item:
            break
    if not records:
        raise DataError(f"no user has {min_user} records whose items have {min_item} "
                        "each: nothing left after filtering; lower --min-user or --min-item")

    start = time.perf_counter()
    kept_select = f"({query.kept_records('kcore_0', user_table, item_table)})"
    sql.materialize("user_numbers", query.user_numbers(kept_select))
    sql.materialize("numbered", query.numbered(kept_select))
    for table in ("kcore_0", user_table, item_table):
        sql.drop(table)
    sql.materialize("item_numbers", query.item_numbers(dialect))
    users, interactions, shortest, longest, mean, median = sql.rows(
        query.sequence_stats(dialect))[0]
    # Ranges of users of about equal numbers of records (their lengths do not depend
    # on their numbers), each within the engine's memory.
    ranges = math.ceil(interactions / (RECORDS_PER_MB * memory_mb))
    per_range = math.ceil(users / ranges)
    write_text(staging / f"{name}.txt", itertools.chain.from_iterable(
        sql.lines(query.sequence_lines(dialect, first, min(users, first + per_range - 1)))
        for first in range(1, users + 1, per_range)))
    write_text(staging / USERS_FILE, sql.lines(query.names("user")))
    write_text(staging / ITEMS_FILE, sql.lines(query.names("item")))
    items = sql.rows(query.count("item_numbers"))[0][0]
    stats = {
        "input_records": input_records,
        "removed": removed,
        "k_core": {"min_user": min_user, "min_item": min_item, "rounds": rounds},
        "users": users,
        "items": items,
        "interactions": int(interactions),
        "sequence_length": {"min": shortest, "max": longest, "mean": round(float(mean), 4),
                            "median": float(median)},
    }
    (staging / STATS_FILE).write_text(json.dumps(stats, indent=2) + "\n", encoding="utf-8")
    phase(f"Wrote {interactions} interactions of {users} users and {items} items", start)
    return stats

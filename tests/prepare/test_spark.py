"""`pipelines/prepare.py --engine spark`: Spark in local mode writes DuckDB's files.

One Spark session serves the module (the first run starts it, the fixture stops
it), on small logs: a CSV with the hand-written code's expected files, a glob
of JSON lines with dates, and a bad record.
"""

import pytest
from prepare_logs import (
    EXPECTED,
    EXPECTED_RUNS,
    dataset_bytes,
    dated_events,
    generated_events,
    run_main,
    write_csv,
    write_jsonl,
)

from iclrec_tf.prepare import cli as prepare_cli

# The JVM of these short runs: the quick JIT compiler only and one GC thread. On
# two busy cores this more than halved the module's time (211 s -> 99 s); the
# query plans and the files are unchanged.
TEST_JVM_OPTIONS = "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"


@pytest.fixture(scope="module", autouse=True)
def spark_session():
    """Starts the module's Spark JVM with `TEST_JVM_OPTIONS`, and stops its session after.

    The engine creates the session itself, at the first run, as prepare does
    (`PYSPARK_SUBMIT_ARGS` is how pyspark starts its JVM); the later runs reuse it.
    """
    from pyspark.sql import SparkSession

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PYSPARK_SUBMIT_ARGS",
                     f'--driver-java-options "{TEST_JVM_OPTIONS}" pyspark-shell')
        yield
    session = SparkSession.getActiveSession()
    if session is not None:
        session.stop()


def prepare(log, output, capsys, *flags):
    code, _, err = run_main(["--input", str(log), "--output", str(output), "--threads", "2",
                             *flags], capsys)
    assert code == 0, err
    return dataset_bytes(output)


def test_spark_writes_the_hand_written_codes_files(tmp_path, capsys):
    log_name, writer, flags = EXPECTED_RUNS["shop"]
    log = writer(tmp_path / log_name)
    assert prepare(log, tmp_path / "shop", capsys, "--engine", "spark", *flags) == (
        dataset_bytes(EXPECTED / "shop"))


def test_spark_equals_duckdb_on_a_glob_of_json_lines_with_dates(tmp_path, capsys):
    events = dated_events()
    parts = tmp_path / "parts"
    parts.mkdir()
    for index, start in enumerate(range(0, len(events), 120)):
        write_jsonl(parts / f"day-{index:02d}.jsonl", events[start:start + 120])
    flags = ["--rating-col", "rating", "--format", "jsonl"]
    duckdb = prepare(f"{parts}/day-*.jsonl", tmp_path / "duckdb" / "dated", capsys, *flags)
    spark = prepare(f"{parts}/day-*.jsonl", tmp_path / "spark" / "dated", capsys,
                    "--engine", "spark", *flags)
    assert spark == duckdb == dataset_bytes(EXPECTED / "dated")


def test_a_bad_record_is_the_same_line_on_spark(tmp_path, capsys):
    events = [(user, item, time) for user, item, time in generated_events()]
    events[40] = (events[40][0], events[40][1], "next week")
    log = write_csv(tmp_path / "events.csv", events)
    code, _, errors = run_main(["--input", str(log), "--output", str(tmp_path / "out"),
                                "--engine", "spark"], capsys)
    assert code == 2
    assert errors == [f"{prepare_cli.PROG}: error: {log}:42: timestamp 'next week' is "
                      "neither a number nor an ISO 8601 date"]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["events.csv"]

"""`pipelines/prepare.py` on DuckDB: the hand-written code's files, every format, bad input.

`expected/` holds what the hand-written preparation wrote (before DuckDB) for
the logs of `prepare_logs.EXPECTED_RUNS`; every other format of the same
events must give the same bytes.
"""

import gzip
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from prepare_logs import (
    EXPECTED,
    EXPECTED_RUNS,
    dataset_bytes,
    generated_events,
    run_main,
    write_csv,
    write_jsonl,
)

from iclrec_tf.prepare import cli as prepare_cli


def prepare(log, output, capsys, *flags):
    code, out, err = run_main(["--input", str(log), "--output", str(output), *flags], capsys)
    assert code == 0, err
    return dataset_bytes(output)


@pytest.mark.parametrize("name", sorted(EXPECTED_RUNS))
def test_the_files_equal_the_hand_written_preparations(name, tmp_path, capsys):
    log_name, writer, flags = EXPECTED_RUNS[name]
    expected = EXPECTED / ("shop" if name == "shop_tsv" else name)
    log = writer(tmp_path / log_name)
    assert prepare(log, tmp_path / expected.name, capsys, *flags) == dataset_bytes(expected)


def test_lines_built_a_few_users_at_a_time_are_the_same_files(tmp_path, capsys,
                                                                monkeypatch):
    """A log larger than the engine's memory builds its lines in ranges of users: with
    a range of a few records, each user's line and their order stay the same."""
    from iclrec_tf.prepare import run

    monkeypatch.setattr(run, "RECORDS_PER_MB", 1 / 64)  # 64 MB: one record a range
    log_name, writer, flags = EXPECTED_RUNS["shop"]
    log = writer(tmp_path / log_name)
    assert prepare(log, tmp_path / "shop", capsys, "--memory-mb", "64", *flags) == (
        dataset_bytes(EXPECTED / "shop"))


def test_progress_lines_name_each_phase_with_its_duration(tmp_path, capsys):
    log = write_csv(tmp_path / "events.csv", generated_events())
    code, out, _ = run_main(["--input", str(log), "--output", str(tmp_path / "shop")], capsys)
    assert code == 0
    stats = json.loads((tmp_path / "shop" / "stats.json").read_text())
    rounds = stats["k_core"]["rounds"]
    assert [line.split(":")[0].split(" ")[0] for line in out[:-2]] == (
        ["Read", "Dropped"] + ["k-core"] * rounds + ["Wrote"])
    assert out[0].startswith(f"Read {stats['input_records']} records from 1 file: ")
    assert all(line.endswith(" s") for line in out[:-2])
    assert out[-1] == str(tmp_path / "shop" / "shop.txt")


def events_table(events):
    return pa.table({name: [str(event[column]) for event in events]
                     for column, name in enumerate(("user_id", "item_id", "timestamp"))})


def test_parquet_gzip_zstd_and_json_lines_give_the_csvs_files(tmp_path, capsys):
    events = generated_events()
    csv_log = write_csv(tmp_path / "events.csv", events)
    expected = prepare(csv_log, tmp_path / "shop", capsys)
    pq.write_table(events_table(events), tmp_path / "events.parquet")
    with gzip.open(tmp_path / "events.csv.gz", "wb") as stream:
        stream.write(csv_log.read_bytes())
    with pa.output_stream(str(tmp_path / "events.csv.zst"), compression="zstd") as stream:
        stream.write(csv_log.read_bytes())
    write_jsonl(tmp_path / "events.jsonl", events, ("user_id", "item_id", "timestamp"))
    for name in ("events.parquet", "events.csv.gz", "events.csv.zst", "events.jsonl"):
        output = tmp_path / name.replace(".", "_") / "shop"
        assert prepare(tmp_path / name, output, capsys) == expected, name


def test_a_glob_of_several_files_equals_their_concatenation(tmp_path, capsys):
    """Sorted path order, not creation order: ties in time keep file, then line order."""
    events = generated_events()
    whole = prepare(write_csv(tmp_path / "events.csv", events), tmp_path / "whole" / "shop",
                    capsys)
    parts = tmp_path / "parts"
    parts.mkdir()
    thirds = [events[:100], events[100:250], events[250:]]
    for index in reversed(range(3)):  # the last part written first
        write_csv(parts / f"part-{index}.csv", thirds[index])
    assert prepare(f"{parts}/part-*.csv", tmp_path / "glob" / "shop", capsys) == whole
    for index in range(3):  # and as Parquet, with a gzip CSV among them: one format a glob
        pq.write_table(events_table(thirds[index]), parts / f"part-{index}.parquet")
    assert prepare(f"{parts}/*.parquet", tmp_path / "parquet" / "shop", capsys) == whole


def test_columns_name_a_header_less_csv(tmp_path, capsys):
    events = generated_events()
    with_header = prepare(write_csv(tmp_path / "events.csv", events), tmp_path / "a" / "shop",
                          capsys)
    reordered = [(time, "x", user, item) for user, item, time in events]
    log = write_csv(tmp_path / "bare.csv", reordered, header=None)
    assert prepare(log, tmp_path / "b" / "shop", capsys, "--columns",
                   "timestamp,other,user_id,item_id") == with_header


HEADER = "user_id,item_id,timestamp\n"


def write_parquet_with_a_bad_time(path):
    pq.write_table(pa.table({"user_id": ["u1", "u1", "u2"], "item_id": ["i1", "i2", "i1"],
                             "timestamp": ["10", "20", "soon"]}), path)
    return path


@pytest.mark.parametrize("name, content, message", [
    ("latin.csv", (HEADER + "u,caf\xe9,1\n").encode("latin-1"), "latin.csv:2: not UTF-8 text"),
    ("events.csv", HEADER + "u1,i1,10\nu9,i9,yesterday\n",
     "events.csv:3: timestamp 'yesterday' is neither a number nor an ISO 8601 date"),
    ("events.csv", HEADER + "u1,i1,10\nu1,i2,20\nu9,i9\n",
     "events.csv:4: 2 fields, the header has 3"),
    ("events.csv", "user_id,item_id,time\nu1,i1,10\n",
     "events.csv:1: no column 'timestamp' (the header has 'user_id', 'item_id', 'time'); "
     "set --time-col"),
    ("events.csv", "", "events.csv:1: empty file, expected a header line"),
    ("events.csv", HEADER, "events.csv: the log has no records"),
    ("events.csv.gz", gzip.compress((HEADER + "u1,i1,10\nu1,,20\n").encode()),
     "events.csv.gz:3: empty item_id"),
    ("log.jsonl", '{"user_id": "a", "item_id": "b", "timestamp": 1}\n\n'
                  '{"user_id": "a", "item_id": "b"}\n', "log.jsonl:3: missing timestamp"),
    ("log.jsonl", '{"user_id": "a", "item_id": "b", "timestamp": 1}\n{not json\n',
     "log.jsonl:2: invalid JSON (Expecting property name enclosed in double quotes)"),
    ("events.parquet", write_parquet_with_a_bad_time,
     "events.parquet: row 3: timestamp 'soon' is neither a number nor an ISO 8601 date"),
    ("log.txt", "x", "log.txt: cannot tell the format from the extension; give --format "
                     "(csv, tsv, jsonl, parquet)"),
], ids=["not utf-8", "bad time", "missing field", "missing column", "empty file",
        "no records", "gzip line", "json field", "bad json", "parquet row", "extension"])
def test_bad_input_is_one_line_naming_file_and_line(name, content, message, tmp_path, capsys):
    log = tmp_path / name
    if callable(content):
        content(log)
    elif isinstance(content, bytes):
        log.write_bytes(content)
    else:
        log.write_text(content, encoding="utf-8")
    code, _, errors = run_main(["--input", str(log), "--output", str(tmp_path / "out")],
                               capsys)
    assert code == 2
    assert errors == [f"{prepare_cli.PROG}: error: {tmp_path / message}"]
    assert sorted(path.name for path in tmp_path.iterdir()) == [name]


def test_a_glob_that_matches_nothing(tmp_path, capsys):
    code, _, errors = run_main(["--input", f"{tmp_path}/*.csv", "--output",
                                str(tmp_path / "out")], capsys)
    assert code == 2
    assert errors == [f"{prepare_cli.PROG}: error: --input {tmp_path}/*.csv: no file matches"]

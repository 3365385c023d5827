"""Tests of `iclrec_tf.events`: reading raw logs (CSV, TSV, JSON lines) into codes."""

import json

import numpy as np
import pytest

from iclrec_tf.errors import DataError
from iclrec_tf.prepare import events
from iclrec_tf.prepare.events import LOG_PRESETS, LogFormat, detect_kind, read_events

# 2020-01-01T00:00:00Z is 1577836800 s after 1970 (18262 days x 86400 s).
NEW_YEAR_2020 = 1_577_836_800
RECORDS = [
    ("alice", "book, vol. 1", "1577836800", "5"),
    ("bob", "lamp", "2020-01-01 00:00:10", "3"),
    ("alice", "lamp", "2020-01-01T01:00:00+01:00", "4"),  # = NEW_YEAR_2020 in UTC
    ("carol", "ünïcode", "12.5", "1"),
    ("bob", "book, vol. 1", "1577836800", "2.5"),
]


def write_delimited(path, records, delimiter):
    header = delimiter.join(("user_id", "item_id", "timestamp", "rating"))
    lines = [delimiter.join(f'"{field}"' if delimiter in field else field for field in record)
             for record in records]
    path.write_text("\n".join([header, *lines]) + "\n", encoding="utf-8")
    return path


def write_jsonl(path, records, fields=("user_id", "item_id", "timestamp", "rating")):
    lines = [json.dumps(dict(zip(fields, record, strict=True)), ensure_ascii=False)
             for record in records]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def summary(log):
    """The log in raw ids: `[(user, item, time, rating), ...]`."""
    ratings = log.ratings if log.ratings is not None else [None] * log.num_events
    return [(log.user_names[u], log.item_names[i], t, r)
            for u, i, t, r in zip(log.users, log.items, log.times.tolist(), ratings,
                                  strict=True)]


def read_line_by_line(path, log_format):
    """The `json`-module reader alone, into memory."""
    return events._read_jsonl_lines(path, log_format, lambda: events._Blocks(
        events.EventBlocks(log_format.rating is not None)))


EXPECTED = [("alice", "book, vol. 1", NEW_YEAR_2020, 5.0),
            ("bob", "lamp", NEW_YEAR_2020 + 10, 3.0),
            ("alice", "lamp", NEW_YEAR_2020, 4.0),
            ("carol", "ünïcode", 12.5, 1.0),
            ("bob", "book, vol. 1", NEW_YEAR_2020, 2.5)]


@pytest.mark.parametrize("kind", ["csv", "tsv", "jsonl"])
def test_the_three_formats_read_the_same_events(kind, tmp_path):
    if kind == "jsonl":
        path = write_jsonl(tmp_path / "log.jsonl", RECORDS)
    else:
        path = write_delimited(tmp_path / f"log.{kind}", RECORDS,
                               "," if kind == "csv" else "\t")
    log = read_events(path, LogFormat(detect_kind(path), rating="rating"))
    assert summary(log) == EXPECTED
    # Codes by first appearance: alice 0, bob 1, carol 2.
    assert log.users.tolist() == [0, 1, 0, 2, 1]
    assert log.items.tolist() == [0, 1, 1, 2, 0]
    assert log.users.dtype == np.int32 and log.times.dtype == np.float64


def test_codes_are_shared_across_blocks(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    records = [(f"u{rng.integers(20)}", f"i{rng.integers(30)}", str(int(rng.integers(10**6))))
               for _ in range(3000)]
    csv_path = tmp_path / "log.csv"
    csv_path.write_text("user_id,item_id,timestamp\n"
                        + "".join(",".join(record) + "\n" for record in records))
    jsonl_path = write_jsonl(tmp_path / "log.jsonl", records, ("user_id", "item_id", "timestamp"))
    whole = summary(read_events(csv_path, LogFormat("csv")))
    monkeypatch.setattr(events, "BLOCK_BYTES", 1024)  # ~60 records a block
    monkeypatch.setattr(events, "JSON_BLOCK_BYTES", 1024)  # ~20
    monkeypatch.setattr(events, "JSON_BLOCK_ROWS", 7)
    blocks = summary(read_events(csv_path, LogFormat("csv")))
    line_by_line = summary(read_line_by_line(jsonl_path, LogFormat("jsonl")))

    def no_fallback(*args):
        raise AssertionError("a valid log must not need the line-by-line reader")

    monkeypatch.setattr(events, "_read_jsonl_lines", no_fallback)
    assert blocks == whole == summary(read_events(jsonl_path, LogFormat("jsonl")))
    assert line_by_line == whole
    assert [(u, i, int(t)) for u, i, t, _ in whole] == [
        (u, i, int(t)) for u, i, t in records]


@pytest.mark.parametrize("times", [["1577836800", "12.5"], [1577836800, 12.5]],
                         ids=["strings", "numbers"])
@pytest.mark.parametrize("users", [["alice", "bob"], [17, 18]], ids=["text", "integers"])
def test_json_types_pyarrow_cannot_take_are_read_line_by_line(users, times, tmp_path):
    records = [(users[0], "x", times[0]), (users[1], "y", times[1]), (users[0], "y", times[1])]
    path = write_jsonl(tmp_path / "log.jsonl", records, ("user_id", "item_id", "timestamp"))
    log = read_events(path, LogFormat("jsonl"))
    assert summary(log) == summary(read_line_by_line(path, LogFormat("jsonl")))
    assert summary(log) == [(str(users[0]), "x", NEW_YEAR_2020, None),
                            (str(users[1]), "y", 12.5, None), (str(users[0]), "y", 12.5, None)]


def test_yelp_preset_reads_reviews_with_dates(tmp_path):
    reviews = [{"review_id": "r1", "user_id": "U1", "business_id": "B1", "stars": 5.0,
                "text": "Great, \"really\"\nGreat.", "date": "2020-01-01 00:01:40"},
               {"review_id": "r2", "user_id": "U2", "business_id": 77, "date": "2019-12-31"}]
    path = tmp_path / "review.json"
    path.write_text("".join(json.dumps(review) + "\n" for review in reviews))
    log = read_events(path, LOG_PRESETS["yelp"])
    assert summary(log) == [("U1", "B1", NEW_YEAR_2020 + 100, None),
                            ("U2", "77", NEW_YEAR_2020 - 86400, None)]


def test_amazon_preset_reads_line_one_as_a_record(tmp_path):
    path = tmp_path / "ratings.csv"
    path.write_text("A1,B1,5.0,1577836800\nA2,B1,1.0,1577836801\n")
    assert summary(read_events(path, LOG_PRESETS["amazon"])) == [
        ("A1", "B1", NEW_YEAR_2020, 5.0), ("A2", "B1", NEW_YEAR_2020 + 1, 1.0)]


def test_a_byte_order_mark_is_not_part_of_the_first_column(tmp_path):
    path = tmp_path / "excel.csv"
    path.write_bytes("user_id,item_id,timestamp\nu,i,1\n".encode("utf-8-sig"))
    assert summary(read_events(path, LogFormat("csv"))) == [("u", "i", 1.0, None)]


def test_blank_lines_are_skipped_and_still_counted(tmp_path):
    path = tmp_path / "log.jsonl"
    path.write_text('{"user_id": "a", "item_id": "b", "timestamp": 1}\n\n   \n'
                    '{"user_id": "a", "item_id": "b"}\n')
    with pytest.raises(DataError, match=r"log\.jsonl:4: missing timestamp$"):
        read_events(path, LogFormat("jsonl"))
    csv_path = tmp_path / "log.csv"
    csv_path.write_text("user_id,item_id,timestamp\nu,i,1\n\nu,i,2\n")
    assert len(summary(read_events(csv_path, LogFormat("csv")))) == 2


@pytest.mark.parametrize("line, message", [
    ("{not json", "log.jsonl:2: invalid JSON"),
    ("[1, 2, 3]", "log.jsonl:2: not a JSON object"),
    ('{"user_id": "a\\nb", "item_id": "i", "timestamp": 1}', "user_id 'a\\nb' contains a line"),
    ('{"user_id": "a", "item_id": "i", "timestamp": "soon"}', "timestamp 'soon' is neither"),
    ('{"user_id": "a", "item_id": null, "timestamp": 1}', "log.jsonl:2: missing item_id"),
    ('{"user_id": "a", "item_id": "i", "timestamp": 1, "rating": "x"}',
     "log.jsonl:2: rating 'x' is not a number"),
])
def test_bad_json_lines_name_their_line(line, message, tmp_path):
    path = tmp_path / "log.jsonl"
    path.write_text('{"user_id": "a", "item_id": "i", "timestamp": 1, "rating": 2}\n'
                    + line + "\n")
    with pytest.raises(DataError) as error:
        read_events(path, LogFormat("jsonl", rating="rating"))
    assert message in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize("row, message", [
    ("u,i,1,nan", "log.csv:3: rating 'nan' is not a finite number"),
    ("u,i,inf,1", "log.csv:3: timestamp 'inf' is not finite"),
    ("u,i,1,1,extra", "log.csv:3: 5 fields, the header has 4"),
])
def test_bad_csv_rows_are_found_by_the_line_by_line_rescan(row, message, tmp_path,
                                                           monkeypatch):
    monkeypatch.setattr(events, "BLOCK_BYTES", 1 << 20)
    path = tmp_path / "log.csv"
    path.write_text("user_id,item_id,timestamp,rating\nu,i,1,1\n" + row + "\n")
    with pytest.raises(DataError, match=message):
        read_events(path, LogFormat("csv", rating="rating"))


def test_a_mixed_numbers_and_dates_column_is_read_value_by_value(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text("user_id,item_id,timestamp\nu,i,2020-01-01T00:00:00Z\nu,j,7\n")
    assert [t for _, _, t, _ in summary(read_events(path, LogFormat("csv")))] == [
        NEW_YEAR_2020, 7.0]


def test_file_level_mistakes(tmp_path):
    with pytest.raises(DataError, match="--input .*missing.csv: no such file"):
        read_events(tmp_path / "missing.csv", LogFormat("csv"))
    with pytest.raises(DataError, match="cannot tell the format .* give --format"):
        detect_kind(tmp_path / "log.parquet")
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(DataError, match="empty.csv:1: empty file"):
        read_events(empty, LogFormat("csv"))
    latin = tmp_path / "latin.csv"
    latin.write_bytes("user_id,item_id,timestamp\nu,caf\xe9,1\n".encode("latin-1"))
    with pytest.raises(DataError, match="latin.csv:2: not UTF-8 text$"):
        read_events(latin, LogFormat("csv"))

"""Raw interaction logs with string ids: CSV, TSV or JSON lines, read block by block.

A log has one event a record: a user id, an item id, a time and, optionally, a
rating. Ids are any non-blank text without a line break. A time is a number
(seconds, or any unit as long as the whole log uses it) or an ISO 8601 date
such as `2018-07-07 22:09:11`; a date without a time zone is taken as UTC.

Reading turns every event into three or four numbers and hands them on a block
at a time: to memory (`EventBlocks`, 16-24 bytes an event) or, in `prepare`, to
temporary files (`iclrec_tf.prepare.partitions`). What the reader itself keeps is each
distinct id once (`iclrec_tf.prepare.idcoder`: codes in order of first appearance,
about 50-60 bytes an id), so its memory grows with the number of distinct ids,
not with the events or the length of the lines. CSV, TSV and JSON lines are parsed by
pyarrow's streaming readers (see docs/BENCHMARKS.md, "Preparing your own
data", for the measurements behind that choice). A bad record stops the
reading with a `DataError` naming `file:line`: the fast path only detects that
something is wrong, then a line-by-line rescan with the `csv` or `json` module
finds and names the first bad line.
"""

import csv
import dataclasses
import datetime
import json
import math
import pathlib

import numpy as np

from iclrec_tf.errors import DataError
from iclrec_tf.prepare.idcoder import IdCoder

FORMATS = ("csv", "tsv", "jsonl")
EXTENSIONS = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".json": "jsonl",
              ".jsonl": "jsonl", ".ndjson": "jsonl"}
# pyarrow's CSV reader holds about 25 times its block size (reading ahead,
# parsing in parallel): 2 MiB blocks read a 60M-event log at 600 MB of peak
# memory and as fast as 16 MiB ones, which need 400 MB more (docs/BENCHMARKS.md).
BLOCK_BYTES = 1 << 21
# pyarrow parses several JSON blocks at once and each holds every field of its
# lines (review texts too): 4 MiB blocks halve the peak memory of 16 MiB ones,
# at the same speed (docs/BENCHMARKS.md).
JSON_BLOCK_BYTES = 1 << 22
JSON_BLOCK_ROWS = 1 << 18


@dataclasses.dataclass(frozen=True)
class LogFormat:
    """Where the fields of an event are in a log.

    Args:
      kind: `csv`, `tsv` or `jsonl`.
      user: the user id's column (CSV/TSV header name) or field (JSON).
      item: the item id's column or field.
      time: the time's column or field.
      rating: the rating's column or field, or None when the log has none.
      names: for a CSV/TSV file without a header, its column names in order;
        empty when line 1 is a header.
    """

    kind: str = "csv"
    user: str = "user_id"
    item: str = "item_id"
    time: str = "timestamp"
    rating: str | None = None
    names: tuple = ()

    @property
    def columns(self):
        """The columns read, in the order `(user, item, time[, rating])`."""
        return (self.user, self.item, self.time) + ((self.rating,) if self.rating else ())


LOG_PRESETS = {
    # Amazon's ratings-only files (e.g. ratings_Toys_and_Games.csv): no header.
    "amazon": LogFormat("csv", "user", "item", "time", "rating",
                        names=("user", "item", "rating", "time")),
    # Yelp's yelp_academic_dataset_review.json.
    "yelp": LogFormat("jsonl", "user_id", "business_id", "date"),
}


@dataclasses.dataclass
class EventLog:
    """Every event of a log as integer codes, in input order.

    Attributes:
      users: [events] int32, the user's code: its rank among users by first appearance.
      items: [events] int32, the item's code, likewise.
      times: [events] float64, the time in seconds (or the log's own unit).
      ratings: [events] float64, or None when the log has no rating.
      user_names: code -> raw user id.
      item_names: code -> raw item id.
    """

    users: np.ndarray
    items: np.ndarray
    times: np.ndarray
    ratings: np.ndarray | None
    user_names: list
    item_names: list

    @property
    def num_events(self):
        return len(self.users)


class _BadRecord(ValueError):
    """A record's problem, without its line: the reader adds `file:line`."""


def detect_kind(path):
    """The format named by `path`'s extension, or raises `DataError`."""
    kind = EXTENSIONS.get(pathlib.Path(path).suffix.lower())
    if kind is None:
        raise DataError(f"{path}: cannot tell the format from the extension; "
                        f"give --format ({', '.join(FORMATS)})")
    return kind


def parse_id(value, column):
    """`value` as an id: non-blank text without a line break (a JSON number becomes text)."""
    if value is None:
        raise _BadRecord(f"missing {column}")
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise _BadRecord(f"{column} {value!r} is not an id (text or integer)")
    value = str(value)
    if not value.strip():
        raise _BadRecord(f"empty {column}")
    if "\n" in value or "\r" in value:
        raise _BadRecord(f"{column} {value[:40]!r} contains a line break")
    return value


def parse_time(value, column):
    """`value` as a number, or an ISO 8601 date as seconds since 1970 (UTC if naive)."""
    if value is None:
        raise _BadRecord(f"missing {column}")
    if isinstance(value, bool):
        raise _BadRecord(f"{column} {value!r} is not a time")
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        try:
            moment = datetime.datetime.fromisoformat(str(value).strip())
        except ValueError:
            raise _BadRecord(f"{column} {str(value)[:40]!r} is neither a number nor an "
                             "ISO 8601 date") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=datetime.timezone.utc)
        seconds = moment.timestamp()
    if not math.isfinite(seconds):
        raise _BadRecord(f"{column} {value!r} is not finite")
    return seconds


def parse_rating(value, column):
    """`value` as a finite number."""
    if value is None:
        raise _BadRecord(f"missing {column}")
    try:
        rating = float(value)
    except (TypeError, ValueError):
        raise _BadRecord(f"{column} {str(value)[:40]!r} is not a number") from None
    if isinstance(value, bool) or not math.isfinite(rating):
        raise _BadRecord(f"{column} {value!r} is not a finite number")
    return rating


class EventBlocks:
    """Receives a log's coded blocks in memory and joins them into an `EventLog`.

    The default receiver of `read_events`; `iclrec_tf.prepare.partitions.Partitions`
    is the other, which appends the blocks to files instead. A receiver has
    `add(users, items, times, ratings)`, called once a block, and
    `finish(user_names, item_names)` (pyarrow string arrays, code order),
    whose result `read_events` returns.

    Args:
      has_rating: whether blocks come with ratings.
    """

    def __init__(self, has_rating):
        self.parts = {"users": [], "items": [], "times": []}
        if has_rating:
            self.parts["ratings"] = []

    def add(self, users, items, times, ratings=None):
        for name, array in (("users", users), ("items", items), ("times", times),
                            ("ratings", ratings)):
            if name in self.parts:
                self.parts[name].append(array)

    def finish(self, user_names, item_names):
        joined = {name: np.concatenate(part) if part else np.zeros(0)
                  for name, part in self.parts.items()}
        return EventLog(joined["users"].astype(np.int32), joined["items"].astype(np.int32),
                        joined["times"].astype(np.float64), joined.get("ratings"),
                        user_names.to_pylist(), item_names.to_pylist())


class _Blocks:
    """One reading of a log: codes each block's ids and hands the block to a receiver."""

    def __init__(self, receiver):
        self.users, self.items = IdCoder(), IdCoder()
        self.receiver = receiver

    def add(self, **arrays):
        self.receiver.add(**arrays)

    def finish(self):
        return self.receiver.finish(self.users.names(), self.items.names())


def read_events(path, log_format, new_receiver=EventBlocks):
    """Reads a log into integer codes, streaming it block by block.

    Args:
      path: the log file.
      log_format: a `LogFormat`.
      new_receiver: called with `has_rating`, makes the object the coded blocks
        go to (see `EventBlocks`); called again if reading starts over (JSON
        lines whose types pyarrow cannot take), so it must start empty.

    Returns:
      What the receiver's `finish` returns: by default an `EventLog`, with the
      records in file order.

    Raises:
      DataError: naming the file (and the line, for a bad record): an unreadable
        file, a header without a wanted column, a record without one of the
        columns, an empty or multi-line id, or a time or rating that does not parse.
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise DataError(f"--input {path}: no such file")

    def new_blocks():
        return _Blocks(new_receiver(log_format.rating is not None))

    if log_format.kind == "jsonl":
        return _read_jsonl(path, log_format, new_blocks)
    return _read_delimited(path, log_format, new_blocks)


def _delimiter(log_format):
    return "\t" if log_format.kind == "tsv" else ","


def _header(path, log_format):
    """The column names, from line 1 or `log_format.names`; checks the wanted ones exist."""
    names = list(log_format.names)
    if not names:
        lines = _text_lines(path)
        names = next(csv.reader(lines, delimiter=_delimiter(log_format)), [])
        lines.close()
        if not names:
            raise DataError(f"{path}:1: empty file, expected a header line")
        # A spreadsheet's byte order mark, which pyarrow skips too.
        names[0] = names[0].removeprefix("\ufeff")
    flags = {log_format.user: "--user-col", log_format.item: "--item-col",
             log_format.time: "--time-col", log_format.rating: "--rating-col"}
    for column in log_format.columns:
        if column not in names:
            raise DataError(f"{path}:1: no column {column!r} (the header has "
                            f"{', '.join(map(repr, names))[:200]}); set {flags[column]}")
    return names


def _read_delimited(path, log_format, new_blocks):
    import pyarrow as pa
    import pyarrow.csv as pa_csv

    names = _header(path, log_format)
    reader_options = pa_csv.ReadOptions(block_size=BLOCK_BYTES,
                                        column_names=names if log_format.names else None)
    parse_options = pa_csv.ParseOptions(delimiter=_delimiter(log_format))
    convert_options = pa_csv.ConvertOptions(
        include_columns=list(log_format.columns),
        column_types=dict.fromkeys(log_format.columns, pa.string()),
        strings_can_be_null=False, quoted_strings_can_be_null=False)
    blocks = new_blocks()
    try:
        with pa_csv.open_csv(path, reader_options, parse_options, convert_options) as reader:
            for batch in reader:
                _add_arrow_batch(blocks, batch, log_format)
    except (pa.ArrowInvalid, _BadRecord, UnicodeDecodeError) as error:
        _locate_bad_line(path, log_format, names)
        # Nothing is wrong line by line: a file-level problem (e.g. a stray quote).
        raise DataError(f"{path}: {str(error).splitlines()[0]}") from None
    return blocks.finish()


def _add_arrow_batch(blocks, batch, log_format):
    """Codes one pyarrow batch; raises `_BadRecord` (or ArrowInvalid) if any row is bad."""
    import pyarrow.compute as pc

    columns = [batch.column(name) for name in log_format.columns]
    if any(column.null_count for column in columns):
        raise _BadRecord("a missing field")  # JSON only: CSV strings are never null
    coded = []
    for column, coder in zip(columns[:2], (blocks.users, blocks.items), strict=True):
        if pc.any(pc.equal(pc.utf8_trim_whitespace(column), "")).as_py():
            raise _BadRecord("blank id")
        # A CSV record ends at any line break; a JSON string may hold one.
        if log_format.kind == "jsonl" and pc.any(
                pc.match_substring_regex(column, "[\r\n]")).as_py():
            raise _BadRecord("an id with a line break")
        coded.append(coder.code(column))
    arrays = {"users": coded[0], "items": coded[1],
              "times": _arrow_seconds(columns[2], log_format.time)}
    if log_format.rating is not None:
        arrays["ratings"] = _arrow_numbers(columns[3])
    blocks.add(**arrays)


def _arrow_numbers(column):
    import pyarrow as pa
    import pyarrow.compute as pc

    values = pc.cast(column, pa.float64()).to_numpy(zero_copy_only=False)
    if not np.isfinite(values).all():
        raise _BadRecord("not a finite number")
    return values


def _arrow_seconds(column, name):
    """Times as float seconds: numbers as they are, ISO dates since 1970 (UTC)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    try:
        return _arrow_numbers(column)
    except pa.ArrowInvalid:
        pass
    try:
        micros = pc.cast(pc.cast(column, pa.timestamp("us")), pa.int64())
        return micros.to_numpy(zero_copy_only=False) / 1e6
    except pa.ArrowInvalid:
        # Mixed numbers and dates, or dates pyarrow does not read (time zones):
        # the same rules, one value at a time.
        return np.array([parse_time(value, name) for value in column.to_pylist()])


def _locate_bad_line(path, log_format, names):
    """Raises `DataError` for the first bad line of a CSV/TSV log, if there is one."""
    wanted = [names.index(column) for column in log_format.columns]
    parsers = [parse_id, parse_id, parse_time] + ([parse_rating] if log_format.rating else [])
    header_lines = 0 if log_format.names else 1
    reader = csv.reader(_text_lines(path), delimiter=_delimiter(log_format))
    try:
        for row in reader:
            if reader.line_num <= header_lines or not any(field.strip() for field in row):
                continue
            try:
                if len(row) != len(names):
                    raise _BadRecord(f"{len(row)} fields, the header has {len(names)}")
                for index, parse, column in zip(wanted, parsers, log_format.columns,
                                                strict=True):
                    parse(row[index], column)
            except _BadRecord as error:
                raise DataError(f"{path}:{reader.line_num}: {error}") from None
    except csv.Error as error:
        raise DataError(f"{path}:{reader.line_num}: {error}") from None


def _text_lines(path):
    """The lines of `path`, decoded one by one, so that bad UTF-8 is reported with its line."""
    try:
        with open(path, "rb") as stream:
            for number, line in enumerate(stream, start=1):
                try:
                    yield line.decode("utf-8")
                except UnicodeDecodeError:
                    raise DataError(f"{path}:{number}: not UTF-8 text") from None
    except OSError as error:
        raise DataError(f"{path}: cannot read: {error.strerror}") from None


def _read_jsonl(path, log_format, new_blocks):
    """JSON lines, by pyarrow if it can; else (or to name a bad line) by the `json` module.

    pyarrow needs one type a field: times as strings (dates) are tried first,
    then as numbers. Ids that are JSON numbers, or any bad line, fall back to
    the exact line-by-line reader.
    """
    import pyarrow as pa

    for time_type in (pa.string(), pa.float64()):
        try:
            return _read_jsonl_arrow(path, log_format, time_type, new_blocks)
        except (pa.ArrowInvalid, _BadRecord):
            continue
    return _read_jsonl_lines(path, log_format, new_blocks)


def _read_jsonl_arrow(path, log_format, time_type, new_blocks):
    import pyarrow as pa
    import pyarrow.json as pa_json

    types = [pa.string(), pa.string(), time_type] + ([pa.float64()] if log_format.rating else [])
    schema = pa.schema(list(zip(log_format.columns, types, strict=True)))
    parse_options = pa_json.ParseOptions(explicit_schema=schema,
                                         unexpected_field_behavior="ignore")
    blocks = new_blocks()
    with pa_json.open_json(path, pa_json.ReadOptions(block_size=JSON_BLOCK_BYTES),
                           parse_options) as reader:
        for batch in reader:
            _add_arrow_batch(blocks, batch, log_format)
    return blocks.finish()


def _read_jsonl_lines(path, log_format, new_blocks):
    blocks = new_blocks()
    parsers = [parse_id, parse_id, parse_time] + ([parse_rating] if log_format.rating else [])
    rows = []
    for number, line in enumerate(_text_lines(path), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            if not isinstance(record, dict):
                raise _BadRecord("not a JSON object")
            rows.append([parse(record.get(column), column) for parse, column
                         in zip(parsers, log_format.columns, strict=True)])
        except json.JSONDecodeError as error:
            raise DataError(f"{path}:{number}: invalid JSON ({error.msg})") from None
        except _BadRecord as error:
            raise DataError(f"{path}:{number}: {error}") from None
        if len(rows) == JSON_BLOCK_ROWS:
            _add_rows(blocks, rows)
            rows = []
    _add_rows(blocks, rows)
    return blocks.finish()


def _add_rows(blocks, rows):
    import pyarrow as pa

    if not rows:
        return
    fields = list(zip(*rows, strict=True))
    arrays = {"users": blocks.users.code(pa.array(fields[0], pa.string())),
              "items": blocks.items.code(pa.array(fields[1], pa.string())),
              "times": np.asarray(fields[2], np.float64)}
    if len(fields) > 3:
        arrays["ratings"] = np.asarray(fields[3], np.float64)
    blocks.add(**arrays)

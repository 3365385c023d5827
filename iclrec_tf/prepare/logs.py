"""The user's logs: which files, in which format, and the first bad record, by line.

A log is one file or a glob of many (`logs/*.parquet`), read in sorted path
order: CSV or TSV (with a header, or without one when the columns' order is
given), JSON lines, or Parquet; text files may be gzip- (`.gz`) or
zstd-compressed (`.zst`). A record has a user id, an item id, a time and,
optionally, a rating. Ids are any non-blank text without a line break. A time
is a number (seconds, or any unit the whole log uses) or an ISO 8601 date such
as `2018-07-07 22:09:11`; a date without a time zone is taken as UTC.

The engines read the records; this module checks what can be checked before
(the files exist, the header has the columns) and, when an engine finds a bad
record, finds it again line by line to name its file and line (or, in
Parquet, its row): the message of an engine never reaches the user.
"""

import csv
import dataclasses
import datetime
import glob
import json
import math
import pathlib

from iclrec_tf.errors import DataError

FORMATS = ("csv", "tsv", "jsonl", "parquet")
EXTENSIONS = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".json": "jsonl",
              ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet", ".pq": "parquet"}
# Compressed text: the last suffix names the codec, the one before it the format.
COMPRESSIONS = {".gz": "gzip", ".zst": "zstd"}


@dataclasses.dataclass(frozen=True)
class LogFormat:
    """Where the fields of an event are in a log.

    Args:
      kind: one of `FORMATS`.
      user: the user id's column (CSV/TSV header name, Parquet column) or field (JSON).
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

    @property
    def delimiter(self):
        return "\t" if self.kind == "tsv" else ","


LOG_PRESETS = {
    # Amazon's ratings-only files (e.g. ratings_Toys_and_Games.csv): no header.
    "amazon": LogFormat("csv", "user", "item", "time", "rating",
                        names=("user", "item", "rating", "time")),
    # Yelp's yelp_academic_dataset_review.json.
    "yelp": LogFormat("jsonl", "user_id", "business_id", "date"),
}
FLAGS = {"user": "--user-col", "item": "--item-col", "time": "--time-col",
         "rating": "--rating-col"}


class _BadRecord(ValueError):
    """A record's problem, without its line: the caller adds `file:line`."""


def compression(path):
    """`gzip`, `zstd` or None, from the last suffix of `path`."""
    return COMPRESSIONS.get(pathlib.PurePath(path).suffix.lower())


def detect_kind(path):
    """The format named by `path`'s extension (under a compression suffix), or `DataError`."""
    path = pathlib.PurePath(path)
    if compression(path):
        path = path.with_suffix("")
    kind = EXTENSIONS.get(path.suffix.lower())
    if kind is None:
        raise DataError(f"{path}: cannot tell the format from the extension; "
                        f"give --format ({', '.join(FORMATS)})")
    return kind


def input_files(pattern):
    """The files `--input` names: one path, or a glob's matches in sorted path order."""
    if glob.has_magic(pattern):
        found = sorted(path for path in glob.glob(pattern, recursive=True)
                       if pathlib.Path(path).is_file())
        if not found:
            raise DataError(f"--input {pattern}: no file matches")
        return [pathlib.Path(path) for path in found]
    path = pathlib.Path(pattern)
    if not path.is_file():
        raise DataError(f"--input {path}: no such file")
    return [path]


def check_files(paths, log_format):
    """Checks what can be checked before reading: formats, headers, Parquet schemas.

    Returns:
      For each file, its column names in order (CSV/TSV, Parquet) or None (JSON).

    Raises:
      DataError: naming the file (and line 1 for a header).
    """
    if log_format.kind == "parquet":
        return [_parquet_columns(path, log_format) for path in paths]
    if log_format.kind == "jsonl":
        return [None] * len(paths)
    headers = [_header(path, log_format) for path in paths]
    for path, names in zip(paths, headers, strict=True):
        if names != headers[0]:
            raise DataError(f"{path}:1: the header differs from {paths[0]}'s; the files of "
                            "one log need the same columns in the same order")
    return headers


def _missing(path, log_format, names, where):
    for column in log_format.columns:
        if column not in names:
            field = next(field for field in ("user", "item", "time", "rating")
                         if getattr(log_format, field) == column)
            shown = ", ".join(map(repr, names))[:200]
            raise DataError(f"{path}{where}: no column {column!r} (the "
                            f"{'header' if where else 'file'} has {shown}); set {FLAGS[field]}")


def _header(path, log_format):
    """The column names, from line 1 or `log_format.names`; checks the wanted ones exist."""
    names = list(log_format.names)
    if not names:
        lines = text_lines(path)
        names = next(csv.reader(lines, delimiter=log_format.delimiter), [])
        lines.close()
        if not names:
            raise DataError(f"{path}:1: empty file, expected a header line")
        # A spreadsheet's byte order mark.
        names[0] = names[0].removeprefix("\ufeff")
    _missing(path, log_format, names, ":1")
    return names


def _parquet_columns(path, log_format):
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        names = pq.read_schema(path).names
    except (pa.ArrowException, OSError) as error:
        raise DataError(f"{path}: not a Parquet file ({str(error).splitlines()[0]})") from None
    _missing(path, log_format, names, "")
    return names


def text_lines(path):
    """The lines of a text log (decompressed), decoded one by one: bad UTF-8 names its line."""
    import pyarrow as pa

    try:
        with pa.input_stream(str(path), compression=compression(path)) as stream:
            for number, line in enumerate(_binary_lines(stream), start=1):
                try:
                    yield line.decode("utf-8")
                except UnicodeDecodeError:
                    raise DataError(f"{path}:{number}: not UTF-8 text") from None
    except (OSError, pa.ArrowException) as error:
        raise DataError(f"{path}: cannot read: {str(error).splitlines()[0]}") from None


def _binary_lines(stream, block_bytes=1 << 20):
    rest = b""
    while block := stream.read(block_bytes):
        lines = (rest + block).split(b"\n")
        rest = lines.pop()
        yield from (line + b"\n" for line in lines)
    if rest:
        yield rest


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
    if isinstance(value, datetime.datetime):  # a Parquet timestamp
        value = value.isoformat()
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


def _check_record(values, log_format):
    parsers = (parse_id, parse_id, parse_time, parse_rating)
    for parse, value, column in zip(parsers, values, log_format.columns, strict=False):
        parse(value, column)


def bad_record(path, log_format, names):
    """Raises `DataError` for the first bad record of `path`, naming its line (or row).

    Called when an engine stopped at, or flagged, a record in `path`: the
    rules here are the engines' rules, one value at a time.

    Args:
      path: a file of the log.
      log_format: a `LogFormat`.
      names: the file's columns, from `check_files`.
    """
    if log_format.kind == "parquet":
        _bad_parquet_row(path, log_format)
    elif log_format.kind == "jsonl":
        _bad_json_line(path, log_format)
    else:
        _bad_delimited_line(path, log_format, names)


def _bad_delimited_line(path, log_format, names):
    wanted = [names.index(column) for column in log_format.columns]
    header_lines = 0 if log_format.names else 1
    reader = csv.reader(text_lines(path), delimiter=log_format.delimiter)
    try:
        for row in reader:
            if reader.line_num <= header_lines or not any(field.strip() for field in row):
                continue
            try:
                if len(row) != len(names):
                    raise _BadRecord(f"{len(row)} fields, the header has {len(names)}")
                _check_record([row[index] for index in wanted], log_format)
            except _BadRecord as error:
                raise DataError(f"{path}:{reader.line_num}: {error}") from None
    except csv.Error as error:
        raise DataError(f"{path}:{reader.line_num}: {error}") from None


def _bad_json_line(path, log_format):
    for number, line in enumerate(text_lines(path), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            if not isinstance(record, dict):
                raise _BadRecord("not a JSON object")
            _check_record([record.get(column) for column in log_format.columns], log_format)
        except json.JSONDecodeError as error:
            raise DataError(f"{path}:{number}: invalid JSON ({error.msg})") from None
        except _BadRecord as error:
            raise DataError(f"{path}:{number}: {error}") from None


def _bad_parquet_row(path, log_format):
    import pyarrow.parquet as pq

    row = 0
    for batch in pq.ParquetFile(path).iter_batches(columns=list(log_format.columns)):
        for values in zip(*(batch.column(column).to_pylist() for column in log_format.columns),
                          strict=True):
            row += 1
            try:
                _check_record(values, log_format)
            except _BadRecord as error:
                raise DataError(f"{path}: row {row}: {error}") from None

"""The preparation as SQL: one definition for DuckDB and Spark.

Every step is a SELECT over the result of the one before, in the SQL both
engines speak; what they spell differently is in `Dialect`, and nowhere else.
An engine runs a step with `materialize(name, sql)` (a table in DuckDB, a
cached view in Spark) or fetches its rows.

The relations, in order:

1. The engine's reading of the log: `file`, the index of a record's file;
   `user_id`, `item_id`, `time_text` (and `rating_text`) as the log's text;
   and the record's place in the input, `Dialect.row` (files in sorted path
   order, then lines; any ordered type).
2. `parsed`: times as seconds (a number, or an ISO 8601 date, UTC if naive)
   and ratings as numbers. `first_bad` finds a record that breaks the rules
   of `iclrec_tf.prepare.logs`: then the run stops and names its line.
3. `user_codes`, `item_codes`: an integer for each distinct id.
4. `kcore_0`: exact duplicates dropped (same user, item, time and rating);
   the first record stays.
5. `users_N`, `items_N`: k-core round N keeps the users with at least
   `min_user` records among the records kept so far, then the items with at
   least `min_item`; rounds go on until one drops nothing. The result is the
   largest subset where both hold. A round keeps only the codes (and their
   record counts): `kcore_0` is read again, never rewritten.
6. `user_numbers`: users numbered 1..U by their first record kept.
7. `numbered`: the records kept, with their user's number.
8. `item_numbers`: items numbered 1..N by first appearance in the sequence
   file read top to bottom, left to right.
9. The sequence file's lines, `user item_1 ... item_n`, each user's records in
   time order, ties in input order, a range of users at a time (an engine holds
   a range's lists in memory); `names` gives the vocabularies.
"""

import dataclasses

# U+FFFD: what a reader that does not stop at invalid UTF-8 (Spark) puts in its place.
REPLACEMENT_CHARACTER = "\ufffd"


@dataclasses.dataclass(frozen=True)
class Dialect:
    """How one engine spells what the engines spell differently.

    Args:
      name: the engine.
      text: the string type.
      date_seconds: an ISO 8601 date in text `{}` as seconds since 1970 (UTC if it
        names no time zone), NULL if it is no date.
      record: a function of `{}`, comma-separated values: an ordered tuple
        (a struct, compared field by field).
      ordered_join: an aggregate of `{value}` and `{order}` (comma-separated
        columns): the values as text, joined by spaces, in the order's order.
      median: the exact median of `{}`, the mean of the two middle values
        for an even count.
      row: the input place of a record of `parsed`.
      carried: the columns of the reading that `parsed` keeps as they are.
      new_code: a distinct integer for each row of a SELECT.
    """

    name: str
    text: str
    date_seconds: str
    record: str
    ordered_join: str
    median: str
    row: str
    carried: str
    new_code: str


DUCKDB = Dialect(
    name="duckdb", text="VARCHAR", record="row({})",
    date_seconds="epoch_us(TRY_CAST({} AS TIMESTAMPTZ)) / 1e6",
    # An ordered list, joined: a third of the time of string_agg(... ORDER BY ...).
    ordered_join="array_to_string(list({value} ORDER BY {order}), ' ')",
    median="quantile_cont({}, 0.5)",
    # A table keeps the order of its inserts: the rowid is the input order.
    row="rowid", carried="file", new_code="CAST(row_number() OVER () AS INTEGER)")
SPARK = Dialect(
    name="spark", text="STRING", record="struct({})",
    date_seconds="unix_micros(TRY_CAST({} AS TIMESTAMP)) / 1e6",
    ordered_join="concat_ws(' ', transform(array_sort(collect_list(struct({order}, {value} "
                 "AS value))), pair -> CAST(pair.value AS STRING)))",
    median="percentile({}, 0.5)",
    # Spark's rows have no order: the reading gives each its place.
    row="row", carried="row, file",
    # Distinct, not dense, and computed where the rows are: no single partition.
    new_code="monotonically_increasing_id()")


def parsed(dialect, source, has_rating):
    """Step 2: the records of `source` (an engine's reading of the log) with numbers.

    `t` is the time in seconds (a number, else an ISO 8601 date, UTC if it names
    no time zone) and `r` the rating, each NULL where the text is no such thing.
    """
    time = f"coalesce(TRY_CAST(time_text AS DOUBLE), {dialect.date_seconds.format('time_text')})"
    rating = "TRY_CAST(rating_text AS DOUBLE)" if has_rating else "CAST(NULL AS DOUBLE)"
    return (f"SELECT {dialect.carried}, user_id, item_id, {time} AS t, {rating} AS r "
            f"FROM {source}")


def first_bad(dialect, has_rating):
    """The file and place of the first record of `parsed` that breaks a rule of a log."""
    finite = "({0} - {0}) = 0"  # false for NaN and the infinities, in both engines
    checks = [_id_is_bad("user_id"), _id_is_bad("item_id"),
              f"t IS NULL OR NOT {finite.format('t')}"]
    if has_rating:
        checks.append(f"r IS NULL OR NOT {finite.format('r')}")
    return (f"SELECT file, {dialect.row} FROM parsed WHERE ({') OR ('.join(checks)}) "
            f"ORDER BY {dialect.row} LIMIT 1")


def _id_is_bad(column):
    return (f"{column} IS NULL OR trim({column}) = '' OR contains({column}, chr(10)) OR "
            f"contains({column}, chr(13)) OR contains({column}, '{REPLACEMENT_CHARACTER}')")


def codes(dialect, column):
    """Step 3: an integer code for each distinct `column` (`user_id` or `item_id`) of `parsed`.

    The later steps group and join integers, which take a fraction of the
    memory and time of the ids' text.
    """
    return (f"SELECT {column}, {dialect.new_code} AS code "
            f"FROM (SELECT DISTINCT {column} FROM parsed)")


def unique_events(dialect):
    """Step 4: one record of each (user, item, time, rating), at its first place, in codes."""
    return (f"SELECT u.code AS user_code, i.code AS item_code, p.t, p.r, "
            f"min(p.{dialect.row}) AS row FROM parsed p "
            "JOIN user_codes u ON p.user_id = u.user_id "
            "JOIN item_codes i ON p.item_id = i.item_id "
            "GROUP BY u.code, i.code, p.t, p.r")


def kept_records(source, users=None, items=None):
    """The records of `source` whose user is in the table `users` and item in `items`
    (None: any)."""
    where = [f"{column}_code IN (SELECT {column}_code FROM {table})"
             for column, table in (("user", users), ("item", items)) if table]
    return f"SELECT * FROM {source}" + (f" WHERE {' AND '.join(where)}" if where else "")


def enough(column, records, minimum):
    """Half a k-core round: each `column` (`user_code` or `item_code`) with at least
    `minimum` of `records` (a SELECT), and its count, `records`."""
    return (f"SELECT {column}, count(*) AS records FROM ({records}) GROUP BY {column} "
            f"HAVING count(*) >= {int(minimum)}")


def total(table):
    """The records of the codes of `table` (a result of `enough`)."""
    return f"SELECT coalesce(sum(records), 0) FROM {table}"


def count(source):
    return f"SELECT count(*) FROM {source}"


def user_numbers(source):
    """Step 6: `user_code`, `user_number` from 1, by each user's first record kept."""
    return ("SELECT user_code, row_number() OVER (ORDER BY first_row) AS user_number "
            f"FROM (SELECT user_code, min(row) AS first_row FROM {source} GROUP BY user_code)")


def numbered(source):
    """Step 7: the records kept, with their user's number."""
    return (f"SELECT u.user_number, e.item_code, e.t, e.row FROM {source} e "
            "JOIN user_numbers u ON e.user_code = u.user_code")


def item_numbers(dialect):
    """Step 8: `item_code`, `item_number` from 1, by first appearance in the sequence file.

    The sequence file lists users by number, each user's records by time, ties
    in input order: an item's first appearance is its smallest (user, time, row).
    """
    first = dialect.record.format("user_number, t, row")
    return ("SELECT item_code, row_number() OVER (ORDER BY first_seen) AS item_number "
            f"FROM (SELECT item_code, min({first}) AS first_seen FROM numbered "
            "GROUP BY item_code)")


def sequence_lines(dialect, first_user, last_user):
    """Step 9: the sequence file's lines (without line breaks) of the users numbered
    `first_user` to `last_user`, in user order."""
    items = dialect.ordered_join.format(value="n.item_number", order="e.t, e.row")
    return (f"SELECT concat(CAST(e.user_number AS {dialect.text}), ' ', {items}) AS line "
            "FROM numbered e JOIN item_numbers n ON e.item_code = n.item_code "
            f"WHERE e.user_number BETWEEN {int(first_user)} AND {int(last_user)} "
            "GROUP BY e.user_number ORDER BY e.user_number")


def sequence_stats(dialect):
    """Users, interactions, and the min, max, mean and median of the sequences' lengths."""
    return ("SELECT count(*), sum(length), min(length), max(length), avg(length), "
            f"{dialect.median.format('length')} FROM "
            "(SELECT user_number, count(*) AS length FROM numbered GROUP BY user_number)")


def names(kind):
    """The raw ids of the `user`s or `item`s kept, in number order: a vocabulary file."""
    return (f"SELECT c.{kind}_id FROM {kind}_numbers n JOIN {kind}_codes c "
            f"ON n.{kind}_code = c.code ORDER BY n.{kind}_number")

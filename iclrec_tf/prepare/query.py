"""The preparation as SQL: one definition for DuckDB and Spark.

Every step is a SELECT over the result of the one before, in the SQL both
engines speak; what they spell differently is in `Dialect`, and nowhere else.
An engine runs a step with `materialize(name, sql)` (a table in DuckDB, a
cached view in Spark) or fetches its rows.

The relations, in order:

1. `events` (the engine reads the log): `row`, the record's place in the input
   (any ordered type: files in sorted path order, then lines); `file`, the
   index of its file; `user_id`, `item_id` and `time_text` (and `rating_text`)
   as the text of the log.
2. `parsed`: times as seconds (a number, or an ISO 8601 date, UTC if naive),
   ratings as numbers, and `bad`, true for a record that breaks the rules of
   `iclrec_tf.prepare.logs` (then the run stops and names its line).
3. `unique_events`: exact duplicates dropped (same user, item, time and
   rating); the first record stays.
4. `kcore_N`: k-core round N drops the users with fewer than `min_user`
   records, then the items with fewer than `min_item`; rounds go on until one
   drops nothing. The result is the largest subset where both hold.
5. `user_numbers`: users numbered 1..U by their first record kept.
6. `numbered`: the records kept, with their user's number.
7. `item_numbers`: items numbered 1..N by first appearance in the sequence
   file read top to bottom, left to right.
8. The sequence file's lines, `user item_1 ... item_n`, each user's records in
   time order, ties in input order.
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
      row: the input place of a record of `events`.
    """

    name: str
    text: str
    date_seconds: str
    record: str
    ordered_join: str
    median: str
    row: str


DUCKDB = Dialect(
    name="duckdb", text="VARCHAR", record="row({})",
    date_seconds="epoch_us(TRY_CAST({} AS TIMESTAMPTZ)) / 1e6",
    ordered_join="string_agg(CAST({value} AS VARCHAR), ' ' ORDER BY {order})",
    median="quantile_cont({}, 0.5)",
    # A table keeps the order of its inserts: the rowid is the input order.
    row="rowid")
SPARK = Dialect(
    name="spark", text="STRING", record="struct({})",
    date_seconds="unix_micros(TRY_CAST({} AS TIMESTAMP)) / 1e6",
    ordered_join="concat_ws(' ', transform(array_sort(collect_list(struct({order}, {value} "
                 "AS value))), pair -> CAST(pair.value AS STRING)))",
    median="percentile({}, 0.5)",
    row="row")


def parsed(dialect, has_rating):
    """Step 2: `events` with times and ratings as numbers (`t`, `r`), and `bad`."""
    finite = "({0} - {0}) = 0"  # false for NaN and the infinities, in both engines
    # A number, else an ISO 8601 date (the session's time zone is UTC).
    time = f"coalesce(TRY_CAST(time_text AS DOUBLE), {dialect.date_seconds.format('time_text')})"
    checks = [_id_is_bad("user_id"), _id_is_bad("item_id"),
              f"t IS NULL OR NOT {finite.format('t')}"]
    rating = "CAST(NULL AS DOUBLE)"
    if has_rating:
        rating = "TRY_CAST(rating_text AS DOUBLE)"
        checks.append(f"r IS NULL OR NOT {finite.format('r')}")
    return (f"SELECT row, file, user_id, item_id, t, r, ({') OR ('.join(checks)}) AS bad "
            f"FROM (SELECT {dialect.row} AS row, file, user_id, item_id, {time} AS t, "
            f"{rating} AS r FROM events)")


def _id_is_bad(column):
    return (f"{column} IS NULL OR trim({column}) = '' OR contains({column}, chr(10)) OR "
            f"contains({column}, chr(13)) OR contains({column}, '{REPLACEMENT_CHARACTER}')")


def first_bad():
    """The file and place of the first record that breaks a rule."""
    return "SELECT file, row FROM parsed WHERE bad ORDER BY row LIMIT 1"


def unique_events():
    """Step 3: one record of each (user, item, time, rating), at its first place."""
    return ("SELECT user_id, item_id, t, r, min(row) AS row FROM parsed "
            "GROUP BY user_id, item_id, t, r")


def users_enough(source, min_user):
    """The user half of a k-core round."""
    return (f"SELECT * FROM {source} WHERE user_id IN (SELECT user_id FROM {source} "
            f"GROUP BY user_id HAVING count(*) >= {int(min_user)})")


def items_enough(source, min_item):
    """The item half of a k-core round."""
    return (f"SELECT * FROM {source} WHERE item_id IN (SELECT item_id FROM {source} "
            f"GROUP BY item_id HAVING count(*) >= {int(min_item)})")


def count(source):
    return f"SELECT count(*) FROM {source}"


def user_numbers(source):
    """Step 5: `user_id`, `user_number` from 1, by each user's first record kept."""
    return ("SELECT user_id, row_number() OVER (ORDER BY first_row) AS user_number "
            f"FROM (SELECT user_id, min(row) AS first_row FROM {source} GROUP BY user_id)")


def numbered(source):
    """Step 6: the records kept, with their user's number."""
    return (f"SELECT u.user_number, e.item_id, e.t, e.row FROM {source} e "
            "JOIN user_numbers u ON e.user_id = u.user_id")


def item_numbers(dialect):
    """Step 7: `item_id`, `item_number` from 1, by first appearance in the sequence file.

    The sequence file lists users by number, each user's records by time, ties
    in input order: an item's first appearance is its smallest (user, time, row).
    """
    first = dialect.record.format("user_number, t, row")
    return ("SELECT item_id, row_number() OVER (ORDER BY first_seen) AS item_number "
            f"FROM (SELECT item_id, min({first}) AS first_seen FROM numbered GROUP BY item_id)")


def sequence_lines(dialect):
    """Step 8: the sequence file's lines (without line breaks), in user order."""
    items = dialect.ordered_join.format(value="n.item_number", order="e.t, e.row")
    return (f"SELECT concat(CAST(e.user_number AS {dialect.text}), ' ', {items}) AS line "
            "FROM numbered e JOIN item_numbers n ON e.item_id = n.item_id "
            "GROUP BY e.user_number ORDER BY e.user_number")


def sequence_stats(dialect):
    """Users, interactions, and the min, max, mean and median of the sequences' lengths."""
    return ("SELECT count(*), sum(length), min(length), max(length), avg(length), "
            f"{dialect.median.format('length')} FROM "
            "(SELECT user_number, count(*) AS length FROM numbered GROUP BY user_number)")


def names(relation, column, number):
    """The raw ids of `relation` in number order: a vocabulary file's lines."""
    return f"SELECT {column} FROM {relation} ORDER BY {number}"

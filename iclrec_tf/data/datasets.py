"""Datasets: name -> file (lookup, download, sha256), validated parsing, leave-one-out.

A dataset file has one line per user, `user_id item_1 ... item_n`, chronological,
item ids >= 1. Leave-one-out (as the reference): train input `items[:-3]` with
next-item targets `items[1:-2]`; valid input `items[:-2]` answering `items[-2]`;
test input `items[:-1]` answering `items[-1]`.
"""

import dataclasses
import hashlib
import os
import pathlib

import numpy as np

from iclrec_tf import files
from iclrec_tf.errors import DataError

DATA_DIR_ENV = "ICLREC_DATA_DIR"
ORIGIN_ENV = "ICLREC_DATA_ORIGIN"
DEFAULT_ORIGIN = "https://raw.githubusercontent.com/salesforce/ICLRec/master/data/"
INT64_MAX = 2**63 - 1
# Three items are held out (valid answer, test answer, last train target), so a
# user needs a fourth to leave one train input.
MIN_ITEMS_PER_USER = 4


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    filename: str
    sha256: str


DATASETS = {
    "toys": DatasetSpec(
        "Toys_and_Games.txt",
        "176c680c688d497598c4a89a03b402c0fe78d795e5db335c2e78dd5f2d778a3f"),
    "beauty": DatasetSpec(
        "Beauty.txt",
        "226cce9c3105299ca0db9615d7d3fb32b3175e90da43100ae352599f0f0107b8"),
    "sports": DatasetSpec(
        "Sports_and_Outdoors.txt",
        "2a095e0648872beb9982408958290f5d655db5be2911c3756b5446de9f0b8de2"),
    "yelp": DatasetSpec(
        "Yelp.txt",
        "724b219106b81dd2349027da997334ddb6da9fe2f152ad6e0d97a93170f7caed"),
}


def keras_cache_dir():
    """The Keras dataset cache (`$KERAS_HOME/datasets`, else `~/.keras/datasets`)."""
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return pathlib.Path(home) / "datasets"


def check_dataset(name_or_path):
    """Raises `DataError` unless `name_or_path` is a dataset name or an existing file."""
    if str(name_or_path).lower() not in DATASETS and not pathlib.Path(name_or_path).is_file():
        raise DataError(
            f"--dataset {name_or_path!r} is neither a dataset name "
            f"({', '.join(DATASETS)}) nor an existing file"
        )


def resolve_dataset(name_or_path, data_dir=None):
    """Returns the path of a dataset file, downloading a named one if needed.

    Args:
      name_or_path: `toys`, `beauty`, `sports`, `yelp`, or a path to a file in
        the same format.
      data_dir: a folder searched first for a named dataset (`--data-dir`).

    Lookup order for a name: `data_dir`, then `$ICLREC_DATA_DIR`, then the Keras
    cache, then a download from the public origin into the Keras cache. Every
    named file is checked against its sha256.

    Raises:
      DataError: unknown name, missing path, failed download or sha256 mismatch.
    """
    check_dataset(name_or_path)
    spec = DATASETS.get(str(name_or_path).lower())
    if spec is None:
        return pathlib.Path(name_or_path)
    for folder in (data_dir, os.environ.get(DATA_DIR_ENV), keras_cache_dir()):
        if folder:
            candidate = pathlib.Path(folder) / spec.filename
            if candidate.is_file():
                _check_sha256(candidate, spec)
                return candidate
    return _download(spec)


def _check_sha256(path, spec):
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != spec.sha256:
        raise DataError(
            f"{path}: sha256 {digest} does not match the expected {spec.sha256}"
        )


def _download(spec):
    import tf_keras as keras  # Only a download needs Keras; parsing does not.

    origin = os.environ.get(ORIGIN_ENV, DEFAULT_ORIGIN).rstrip("/") + "/" + spec.filename
    cache = keras_cache_dir()
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise DataError(f"{cache}: cannot create the dataset cache ({error.strerror})") from None
    # Download and verify in a staging folder, then rename: the cache never
    # holds a partial or corrupted file.
    with files.StagedDirectory(cache, spec.filename) as staging:
        try:
            path = keras.utils.get_file(
                fname=spec.filename, origin=origin, file_hash=spec.sha256,
                hash_algorithm="sha256", cache_dir=str(staging.path), cache_subdir=".")
        except Exception as error:  # get_file raises bare Exception on network failures
            raise DataError(f"{origin}: download failed: {error}".splitlines()[0]) from None
        _check_sha256(pathlib.Path(path), spec)
        files.publish_file(path, cache / spec.filename)
    return cache / spec.filename


@dataclasses.dataclass
class SequenceData:
    """All users' item sequences, flat, with the leave-one-out views on them.

    Attributes:
      user_ids: [num_users] the ids in the file's first column.
      items: [num_interactions] every item of every user, concatenated.
      row_splits: [num_users + 1] user u owns `items[row_splits[u]:row_splits[u+1]]`.
      max_item: the largest item id; `item_size = max_item + 2` leaves id 0 for
        padding and `max_item + 1` for the (unused) mask id.
    """

    user_ids: np.ndarray
    items: np.ndarray
    row_splits: np.ndarray
    max_item: int

    @property
    def num_users(self):
        return len(self.user_ids)

    @property
    def item_size(self):
        return self.max_item + 2

    @property
    def mask_id(self):
        return self.max_item + 1

    @property
    def lengths(self):
        return np.diff(self.row_splits)

    def sequence(self, user):
        return self.items[self.row_splits[user]:self.row_splits[user + 1]]

    def prefixes(self, drop_last):
        """Each user's sequence without its last `drop_last` items, as (values, row_splits)."""
        lengths = self.lengths - drop_last
        keep = np.ones(len(self.items), dtype=bool)
        for offset in range(1, drop_last + 1):
            keep[self.row_splits[1:] - offset] = False
        return self.items[keep], np.concatenate([[0], np.cumsum(lengths)])

    def answers(self, split):
        """[num_users] the held-out item of `split` (`valid` or `test`)."""
        offset = {"valid": 2, "test": 1}[split]
        return self.items[self.row_splits[1:] - offset]

    def subset(self, num_users):
        """The first `num_users` users (all of them for 0, or for more than there are)."""
        if not 0 < num_users < self.num_users:
            return self
        end = self.row_splits[num_users]
        return SequenceData(self.user_ids[:num_users], self.items[:end],
                            self.row_splits[:num_users + 1], int(self.items[:end].max()))


def load_sequences(path):
    """Parses and validates a dataset file.

    Args:
      path: the file, one line per user: `user_id item_1 ... item_n`.

    Returns:
      A `SequenceData`.

    Raises:
      DataError: naming `path:line` for the first malformed line: an empty file,
        a blank line, a non-integer token, an item id below 1 or beyond int64,
        a user with fewer than 4 items, a repeated user id, or binary content.
    """
    path = pathlib.Path(path)
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise DataError(f"{path}: cannot read: {error.strerror}") from None
    if b"\0" in raw:
        raise DataError(f"{path}: binary content, expected text lines of integers")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        line = raw[:error.start].count(b"\n") + 1
        raise DataError(f"{path}:{line}: not UTF-8 text") from None
    lines = text.splitlines()
    while lines and not lines[-1].strip():
        lines.pop()  # a trailing newline or blank tail is not a user
    if not lines:
        raise DataError(f"{path}: empty file, expected one line per user")

    user_ids, lengths, items, seen = [], [], [], {}
    for number, line in enumerate(lines, start=1):
        tokens = line.split()
        if not tokens:
            raise DataError(f"{path}:{number}: blank line")
        try:
            values = [int(token) for token in tokens]
        except ValueError:
            bad = next(t for t in tokens if not _is_int(t))
            raise DataError(f"{path}:{number}: {bad[:40]!r} is not an integer") from None
        user, sequence = values[0], values[1:]
        if user in seen:
            raise DataError(
                f"{path}:{number}: user {user} already appeared on line {seen[user]}"
            )
        seen[user] = number
        if len(sequence) < MIN_ITEMS_PER_USER:
            raise DataError(
                f"{path}:{number}: user {user} has {len(sequence)} items, "
                f"leave-one-out needs at least {MIN_ITEMS_PER_USER}"
            )
        low, high = min(sequence), max(sequence)
        if low < 1:
            raise DataError(f"{path}:{number}: item id {low} is below 1 (0 is padding)")
        if high > INT64_MAX or abs(user) > INT64_MAX:
            raise DataError(f"{path}:{number}: id {max(high, abs(user))} does not fit in int64")
        user_ids.append(user)
        lengths.append(len(sequence))
        items.extend(sequence)
    items = np.asarray(items, dtype=np.int64)
    return SequenceData(
        user_ids=np.asarray(user_ids, dtype=np.int64),
        items=items,
        row_splits=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
        max_item=int(items.max()),
    )


def _is_int(token):
    try:
        int(token)
    except ValueError:
        return False
    return True

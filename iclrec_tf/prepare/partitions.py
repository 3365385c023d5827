"""Coded events in temporary files, split by a key: how `prepare` handles a log larger than memory.

Every step `prepare` takes after reading needs all the events of one user
together (duplicates, the user half of the k-core, the chronological order) and
only counts of the rest (the item half of the k-core). So events are appended,
block by block, to one of `count` files chosen by the user, and each later step
holds one file in memory at a time. Within a file, records keep the order they
were appended in; each carries its index in the input (`row`), so input order
is never lost.

A file is a flat array of fixed-size records (`FIELDS`), written with
`ndarray.tofile` and read with `numpy.fromfile`: no header, no parsing.
"""

import contextlib
import pathlib

import numpy as np

from iclrec_tf import files
from iclrec_tf.errors import StorageError

FIELDS = (("row", np.int64), ("user", np.int32), ("item", np.int32), ("time", np.float64))
RATING_FIELD = ("rating", np.float64)


def record_dtype(has_rating):
    """The numpy dtype of one stored event: `row, user, item, time[, rating]`."""
    return np.dtype(list(FIELDS) + ([RATING_FIELD] if has_rating else []))


class Partitions:
    """Events split into `count` files in `directory`.

    Also a receiver for `iclrec_tf.events.read_events`: `add` takes a coded
    block, numbers its records on from the previous block and files each
    record under `user % count`, so one user's events all land in one file.

    Args:
      directory: created if needed; files already in it are overwritten.
      count: how many files.
      has_rating: whether records carry a rating.
    """

    def __init__(self, directory, count, has_rating):
        self.directory = pathlib.Path(directory)
        self.count = count
        self.dtype = record_dtype(has_rating)
        self.sizes = np.zeros(count, dtype=np.int64)
        self.user_names = self.item_names = None
        with self._disk():
            self.directory.mkdir(parents=True, exist_ok=True)
            for index in range(count):
                self.path(index).unlink(missing_ok=True)

    @property
    def has_rating(self):
        return "rating" in self.dtype.names

    @property
    def num_records(self):
        return int(self.sizes.sum())

    def path(self, index):
        return self.directory / f"{index:05d}.events"

    def add(self, users, items, times, ratings=None):
        """Appends one block of coded events, in input order."""
        block = np.empty(len(users), dtype=self.dtype)
        block["row"] = np.arange(self.num_records, self.num_records + len(users))
        block["user"], block["item"], block["time"] = users, items, times
        if self.has_rating:
            block["rating"] = ratings
        self.append(block, block["user"] % self.count)

    def finish(self, user_names, item_names):
        """Keeps the id names the reader collected; returns these partitions."""
        self.user_names, self.item_names = user_names, item_names
        return self

    def append(self, records, keys):
        """Appends `records[i]` to file `keys[i]`, keeping their order within each file."""
        order = np.argsort(keys, kind="stable")
        counts = np.bincount(keys, minlength=self.count)
        bounds = np.concatenate([[0], np.cumsum(counts)])
        for index in np.flatnonzero(counts):
            with self._disk(), open(self.path(index), "ab") as stream:
                records[order[bounds[index]:bounds[index + 1]]].tofile(stream)
        self.sizes += counts

    def load(self, index):
        """The records of file `index`, in the order they were appended."""
        if not self.sizes[index]:
            return np.empty(0, dtype=self.dtype)
        with self._disk():
            return np.fromfile(self.path(index), dtype=self.dtype)

    def replace(self, index, records):
        """Makes `records` the whole content of file `index`."""
        with self._disk(), files.atomic_file(self.path(index), "wb") as stream:
            records.tofile(stream)
        self.sizes[index] = len(records)

    def remove(self, index):
        """Deletes file `index` (its disk space is needed more than its records)."""
        with self._disk():
            self.path(index).unlink(missing_ok=True)
        self.sizes[index] = 0

    @contextlib.contextmanager
    def _disk(self):
        try:
            yield
        except OSError as error:
            # A full disk is the likely one: say where the space is needed.
            raise StorageError(f"temporary files in {self.directory}: {error.strerror}; "
                              "they need 24-32 bytes an event") from None


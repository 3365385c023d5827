"""Tests of `iclrec_tf.partitions`: coded events in temporary files, split by user."""

import numpy as np
import pytest

from iclrec_tf.errors import StorageError
from iclrec_tf.prepare.partitions import Partitions, record_dtype


def coded_block(rng, size, users=50, items=30):
    return {"users": rng.integers(0, users, size).astype(np.int32),
            "items": rng.integers(0, items, size).astype(np.int32),
            "times": rng.random(size), "ratings": rng.integers(1, 6, size).astype(float)}


def test_blocks_are_numbered_in_input_order_and_a_user_stays_in_one_file(tmp_path):
    rng = np.random.default_rng(0)
    blocks = [coded_block(rng, size) for size in (100, 1, 0, 257)]
    partitions = Partitions(tmp_path / "parts", 7, has_rating=True)
    for block in blocks:
        partitions.add(**block)
    assert partitions.finish(["u"], ["i"]) is partitions
    assert partitions.num_records == 358
    files = [partitions.load(index) for index in range(7)]
    assert [len(records) for records in files] == partitions.sizes.tolist()
    for index, records in enumerate(files):
        assert (records["user"] % 7 == index).all()
        assert (np.diff(records["row"]) > 0).all()  # input order within a file
    together = np.sort(np.concatenate(files), order="row")
    assert together["row"].tolist() == list(range(358))
    for field, name in (("user", "users"), ("item", "items"), ("time", "times"),
                        ("rating", "ratings")):
        np.testing.assert_array_equal(together[field],
                                      np.concatenate([block[name] for block in blocks]))


def test_append_replace_and_remove(tmp_path):
    partitions = Partitions(tmp_path, 3, has_rating=False)
    assert partitions.dtype == record_dtype(False) and not partitions.has_rating
    records = np.zeros(6, dtype=partitions.dtype)
    records["row"] = np.arange(6)
    partitions.append(records, np.array([2, 0, 2, 2, 0, 1]))
    partitions.append(records[:2], np.array([1, 1]))
    assert partitions.load(2)["row"].tolist() == [0, 2, 3]
    assert partitions.load(1)["row"].tolist() == [5, 0, 1]
    partitions.replace(2, records[4:5])
    assert partitions.load(2)["row"].tolist() == [4]
    partitions.remove(0)
    assert len(partitions.load(0)) == 0 and not partitions.path(0).exists()
    assert partitions.sizes.tolist() == [0, 3, 1]
    assert not list(tmp_path.glob(".*"))  # no temporary file left


def test_a_new_set_of_partitions_starts_empty(tmp_path):
    rng = np.random.default_rng(1)
    Partitions(tmp_path, 2, has_rating=True).add(**coded_block(rng, 40))
    again = Partitions(tmp_path, 2, has_rating=True)
    again.add(**coded_block(rng, 3))
    assert sum(len(again.load(index)) for index in range(2)) == 3


def test_a_file_that_cannot_be_written_is_one_line(tmp_path):
    (tmp_path / "blocker").write_text("a file where the directory should be")
    with pytest.raises(StorageError, match=r"temporary files in .*blocker.*: "):
        Partitions(tmp_path / "blocker", 2, has_rating=False)

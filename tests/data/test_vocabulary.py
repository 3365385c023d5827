"""Tests of `iclrec_tf.vocabulary` (`items.txt`) and of the export's raw-id signature on it."""

import pytest

from iclrec_tf.data.vocabulary import (
    ITEMS_FILE,
    dataset_vocabulary,
    read_vocabulary,
    vocabulary_text,
)
from iclrec_tf.errors import DataError
from iclrec_tf.train.rundir import RunDirectory

NAMES = ["B00-1", "tea, green", "  spaced  ", "ünïcode", "#hash"]


def test_the_text_reads_back_to_the_same_ids(tmp_path):
    path = tmp_path / ITEMS_FILE
    path.write_text(vocabulary_text(NAMES), encoding="utf-8")
    assert path.read_text(encoding="utf-8").count("\n") == len(NAMES)
    assert read_vocabulary(path, min_size=5) == NAMES


def test_windows_line_ends_are_line_ends(tmp_path):
    path = tmp_path / ITEMS_FILE
    path.write_bytes(b"a\r\nb c\r\n")
    assert read_vocabulary(path) == ["a", "b c"]


@pytest.mark.parametrize("text, message", [
    ("a\nb\na\n", "items.txt:3: id 'a' already on line 1"),
    ("a\n\nb\n", "items.txt:2: blank id"),
    ("a\nb\n", "items.txt: 2 ids, but the dataset has item ids up to 3"),
])
def test_a_bad_vocabulary_is_refused_naming_the_line(text, message, tmp_path):
    path = tmp_path / ITEMS_FILE
    path.write_text(text, newline="")
    with pytest.raises(DataError, match=message):
        read_vocabulary(path, min_size=3)


def test_only_a_dataset_given_by_path_has_a_vocabulary(tmp_path):
    (tmp_path / ITEMS_FILE).write_text(vocabulary_text(NAMES))
    dataset = tmp_path / "shop.txt"
    assert dataset_vocabulary(str(dataset), dataset, 5) == NAMES
    # A named dataset's folder may hold anything; its ids are integers.
    assert dataset_vocabulary("toys", tmp_path / "Toys_and_Games.txt", 5) is None
    assert dataset_vocabulary(str(tmp_path / "x" / "d.txt"), tmp_path / "x" / "d.txt", 5) is None


def test_the_run_directory_gets_the_datasets_vocabulary_or_none(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / ITEMS_FILE).write_text(vocabulary_text(NAMES))
    run_dir = RunDirectory(tmp_path / "run", create=True)
    run_dir.sync_vocabulary("data/shop.txt", tmp_path / "data" / "shop.txt", 5)
    assert run_dir.vocabulary() == NAMES
    # Reused for a dataset without one: the stale copy must go.
    run_dir.sync_vocabulary("other.txt", tmp_path / "other.txt", 5)
    assert run_dir.vocabulary() is None
    assert not run_dir.file(ITEMS_FILE).exists()









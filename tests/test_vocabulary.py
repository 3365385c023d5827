"""Tests of `iclrec_tf.vocabulary` (`items.txt`) and of the export's raw-id signature on it."""

import numpy as np
import pytest
import tensorflow as tf

from iclrec_tf import export
from iclrec_tf.config import ConfigError, TrainConfig
from iclrec_tf.data import DataError
from iclrec_tf.model import build_model
from iclrec_tf.rundir import RunDirectory
from iclrec_tf.vocabulary import (
    ITEMS_FILE,
    dataset_vocabulary,
    read_vocabulary,
    run_vocabulary,
    sync_run_vocabulary,
    vocabulary_text,
)

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
    sync_run_vocabulary(run_dir, "data/shop.txt", tmp_path / "data" / "shop.txt", 5)
    assert run_vocabulary(run_dir) == NAMES
    # Reused for a dataset without one: the stale copy must go.
    sync_run_vocabulary(run_dir, "other.txt", tmp_path / "other.txt", 5)
    assert run_vocabulary(run_dir) is None
    assert not run_dir.file(ITEMS_FILE).exists()


@pytest.fixture(scope="module")
def module():
    """A serving module of an untrained 5-item model, top-3, with `NAMES` as its vocabulary."""
    config = TrainConfig(hidden_size=8, num_blocks=1, max_seq_length=4)
    model = build_model(config, item_size=len(NAMES) + 2)
    model(tf.zeros([1, 4], tf.int64), training=False)
    return export.add_item_names(export.serving_module(model, top_k=3), NAMES + ["spare"],
                                 num_items=len(NAMES))


def test_raw_ids_answer_as_the_integer_signature_does(module):
    request = tf.constant([["tea, green", "", "ünïcode", "unknown"], ["", "", "", ""]])
    answer = module.recommend_names(request)
    integers = module.recommend(tf.constant([[2, 0, 4, 0], [0, 0, 0, 0]], tf.int64))
    expected = [[NAMES[i - 1].encode() for i in row] for row in integers["item_ids"].numpy()]
    assert answer["item_ids"].numpy().tolist() == expected
    np.testing.assert_array_equal(answer["scores"], integers["scores"])
    assert answer["unknown_ids"].numpy().tolist() == [1, 0]
    assert not {b"tea, green", b"\xc3\xbcn\xc3\xafcode"} & set(answer["item_ids"].numpy()[0])


def test_ids_beyond_the_model_are_unknown_and_empty_slots_are_empty(module):
    # "spare" is in the vocabulary but not in the model: unknown, like any other.
    answer = module.recommend_names(tf.constant([["spare", *NAMES[:4]]]))
    assert answer["unknown_ids"].numpy().tolist() == [1]
    # Four of five items are history: one candidate, two slots without one.
    assert answer["item_ids"].numpy().tolist() == [[NAMES[4].encode(), b"", b""]]
    assert np.isneginf(answer["scores"].numpy()[0, 1:]).all()


def test_a_vocabulary_shorter_than_the_model_is_refused():
    config = TrainConfig(hidden_size=8, num_blocks=1, max_seq_length=4)
    model = build_model(config, item_size=len(NAMES) + 2)
    with pytest.raises(ConfigError, match="items.txt has 4 ids, the model has 5 items"):
        export.add_item_names(export.serving_module(model, top_k=3), NAMES[:4], len(NAMES))

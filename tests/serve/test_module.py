"""The raw-id serving signature (`iclrec_tf.serve.module.add_item_names`); the others
are tested through a real export in tests/test_export.py."""

import numpy as np
import pytest
import tensorflow as tf

from iclrec_tf.config import TrainConfig
from iclrec_tf.errors import ConfigError
from iclrec_tf.model.iclrec import build_model
from iclrec_tf.serve import module as serving

# Raw ids with what a CSV or a shell would trip over: a comma, spaces, non-ASCII, a hash.
NAMES = ["B00-1", "tea, green", "  spaced  ", "ünïcode", "#hash"]


@pytest.fixture(scope="module")
def module():
    """A serving module of an untrained 5-item model, top-3, with `NAMES` as its vocabulary."""
    config = TrainConfig(hidden_size=8, num_blocks=1, max_seq_length=4)
    model = build_model(config, item_size=len(NAMES) + 2)
    model(tf.zeros([1, 4], tf.int64), training=False)
    return serving.add_item_names(serving.serving_module(model, top_k=3), NAMES + ["spare"],
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
        serving.add_item_names(serving.serving_module(model, top_k=3), NAMES[:4], len(NAMES))

import numpy as np
import pytest
import tensorflow as tf
from conftest import synthetic_sequences, write_dataset

from iclrec_tf.data.datasets import load_sequences
from iclrec_tf.data.pipeline import SequencePipelines, sample_negatives

RATIOS = {"crop": 0.2, "mask": 0.7, "reorder": 0.2}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """50 users; a user's items are its own (ids 80u + 1 ...), so rows identify users."""
    lengths = [len(s) for s in synthetic_sequences(num_users=50, seed=3, max_len=70)]
    sequences = [list(80 * user + 1 + np.arange(n)) for user, n in enumerate(lengths)]
    return load_sequences(write_dataset(tmp_path_factory.mktemp("d") / "d.txt", sequences))


def _epoch(dataset, pipelines, batch_size, epoch=0):
    """The batches of the `epoch`-th epoch of an endless training dataset."""
    steps = pipelines.steps_per_epoch(batch_size)
    batches = dataset.skip(epoch * steps).take(steps)
    return [{k: v.numpy() for k, v in batch.items()} for batch in batches]


def test_train_batches_hold_inputs_targets_negatives_and_views(data):
    pipelines = SequencePipelines(data, max_len=8)
    batches = _epoch(pipelines.train(16, seed=1, augmentation="random", ratios=RATIOS),
                     pipelines, 16)
    assert [len(b["input_ids"]) for b in batches] == [16, 16, 16, 2]
    seen_users = []
    for batch in batches:
        for key in ("input_ids", "target_pos", "target_neg", "view_1", "view_2"):
            assert batch[key].shape[1] == 8 and batch[key].dtype == np.int32
        for row in range(len(batch["input_ids"])):
            # find the user from its train input (unique in this synthetic data)
            user = (batch["input_ids"][row].max() - 1) // 80
            seen_users.append(int(user))
            sequence = data.sequence(user).tolist()
            train_input, targets = sequence[:-3], sequence[1:-2]
            expected_inputs = ([0] * 8 + train_input)[-8:]
            expected_targets = ([0] * 8 + targets)[-8:]
            assert batch["input_ids"][row].tolist() == expected_inputs
            assert batch["target_pos"][row].tolist() == expected_targets
            negatives = batch["target_neg"][row]
            has_target = np.asarray(expected_targets) > 0
            assert (negatives[~has_target] == 0).all()
            assert all(1 <= n < data.item_size and n not in sequence
                       for n in negatives[has_target])
    assert sorted(seen_users) == list(range(data.num_users))


def test_train_is_seeded_and_reshuffled_every_epoch(data):
    pipelines = SequencePipelines(data, max_len=8)
    dataset = pipelines.train(16, seed=4, augmentation="random", ratios=RATIOS)
    first, second = _epoch(dataset, pipelines, 16, 0), _epoch(dataset, pipelines, 16, 1)
    again = _epoch(pipelines.train(16, seed=4, augmentation="random", ratios=RATIOS),
                   pipelines, 16)
    other = _epoch(pipelines.train(16, seed=5, augmentation="random", ratios=RATIOS),
                   pipelines, 16)
    for a, b in zip(first, again, strict=True):
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])
    assert not np.array_equal(first[0]["input_ids"], second[0]["input_ids"])
    assert not np.array_equal(first[0]["view_1"], other[0]["view_1"])
    assert not np.array_equal(first[0]["view_1"], first[0]["view_2"])


def test_an_epoch_is_the_same_whichever_epoch_the_dataset_starts_at(data):
    """What lets a resumed run see the batches an uninterrupted one would."""
    pipelines = SequencePipelines(data, max_len=8)
    from_start = pipelines.train(16, seed=4, augmentation="random", ratios=RATIOS)
    resumed = pipelines.train(16, seed=4, augmentation="random", ratios=RATIOS, first_epoch=2)
    expected = _epoch(from_start, pipelines, 16, epoch=2)
    for a, b in zip(expected, _epoch(resumed, pipelines, 16), strict=True):
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])
    assert not np.array_equal(expected[0]["view_1"],
                              _epoch(from_start, pipelines, 16, epoch=1)[0]["view_1"])


def test_views_come_from_the_whole_train_input_before_truncation(data):
    # crop of a 67-item input keeps 13 items; they are only visible if the crop
    # sees items older than the last 8 positions.
    pipelines = SequencePipelines(data, max_len=8)
    batch = _epoch(pipelines.train(64, seed=1, augmentation="crop", ratios=RATIOS),
                   pipelines, 64)[0]
    longest = int(np.argmax(data.lengths))
    user_input = data.sequence(longest)[:-3].tolist()
    row = next(r for r in range(len(batch["input_ids"]))
               if batch["input_ids"][r].tolist() == user_input[-8:])
    window = int(0.2 * len(user_input))
    view = batch["view_1"][row].tolist()
    assert window > 8 and 0 not in view
    starts = [s for s in range(len(user_input) - window)
              if user_input[s:s + window][-8:] == view]
    assert starts


def test_negatives_avoid_the_whole_history_even_when_it_is_most_of_the_vocabulary():
    histories = tf.constant([[1, 2, 3, 4, 5, 6, 7, 8], [2, 4, 6, 8, 0, 0, 0, 0]])
    negatives = sample_negatives(histories, (2, 500), item_size=11,
                                 seed=tf.constant([1, 2], tf.int64)).numpy()
    assert set(negatives[0]) == {9, 10}  # 10 is the mask id, a legal negative as in the reference
    assert set(negatives[1]) == {1, 3, 5, 7, 9, 10}


def test_estep_and_evaluation_inputs(data):
    pipelines = SequencePipelines(data, max_len=8)
    estep = np.concatenate([b.numpy() for b in pipelines.estep(20)])
    np.testing.assert_array_equal(estep, pipelines.train_inputs())
    for split, drop in (("valid", 2), ("test", 1)):
        batches = list(pipelines.evaluation(split, 20))
        inputs = np.concatenate([b["input_ids"].numpy() for b in batches])
        answers = np.concatenate([b["answer"].numpy() for b in batches])
        history = [h for b in batches for h in b["history"].to_list()]
        for user in range(data.num_users):
            sequence = data.sequence(user).tolist()
            assert inputs[user].tolist() == ([0] * 8 + sequence[:-drop])[-8:]
            assert answers[user] == sequence[-drop]
            assert history[user] == sequence[:-drop]

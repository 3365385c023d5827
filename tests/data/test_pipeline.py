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


def _user_of(row):
    """The user a row of `data` belongs to (its items are 80u + 1 ...)."""
    return int(row[row > 0][-1] - 1) // 80


def test_length_buckets_give_every_user_once_in_batches_as_wide_as_their_longest(data):
    """With a max_len of 40 some users fill it; most batches of 8 are narrower."""
    pipelines = SequencePipelines(data, max_len=40)
    dataset = pipelines.train(8, seed=1, augmentation="random", ratios=RATIOS,
                              length_buckets=True)
    widths = np.minimum(data.lengths - 3, 40)
    for epoch in range(2):
        batches = _epoch(dataset, pipelines, 8, epoch)
        users = [_user_of(row) for batch in batches for row in batch["input_ids"]]
        assert sorted(users) == list(range(data.num_users))
        for batch in batches:
            batch_users = [_user_of(row) for row in batch["input_ids"]]
            width = widths[batch_users].max()
            for name in ("input_ids", "target_pos", "target_neg", "view_1", "view_2"):
                assert batch[name].shape == (len(batch_users), width), name
            # The longest input fills its row: nothing but padding was cut.
            assert (batch["input_ids"][:, 0] > 0).any()
            np.testing.assert_array_equal(
                batch["input_ids"], pipelines.train_inputs()[batch_users][:, 40 - width:])
        # The same users as the padded pipeline's, batch by batch: only padding is cut.
        padded = _epoch(pipelines.train(8, seed=1, augmentation="random", ratios=RATIOS),
                        pipelines, 8, epoch)
        assert [[_user_of(r) for r in b["input_ids"]] for b in batches] == [
            [_user_of(r) for r in b["input_ids"]] for b in padded]


def test_length_buckets_follow_seed_and_epoch(data):
    pipelines = SequencePipelines(data, max_len=40)

    def order(seed, epoch, first_epoch=0):
        dataset = pipelines.train(8, seed=seed, augmentation="random", ratios=RATIOS,
                                  length_buckets=True, first_epoch=first_epoch)
        return [[_user_of(row) for row in batch["input_ids"]]
                for batch in _epoch(dataset, pipelines, 8, epoch - first_epoch)]

    assert order(1, 0) == order(1, 0)
    assert order(1, 1) == order(1, 1, first_epoch=1)  # a resumed run sees the same
    assert order(1, 1) != order(1, 0)  # contents and order drawn anew every epoch
    assert order(2, 0) != order(1, 0)


def test_sampled_items_are_uniform_item_ids_and_negatives_can_be_left_out(data):
    pipelines = SequencePipelines(data, max_len=8)
    batches = _epoch(pipelines.train(16, seed=1, augmentation="random", ratios=RATIOS,
                                     negatives=False, num_sampled=500), pipelines, 16)
    assert all("target_neg" not in batch for batch in batches)
    sampled = np.concatenate([batch["sampled_items"] for batch in batches])
    assert sampled.shape == (500 * len(batches),)
    assert sampled.min() >= 1 and sampled.max() <= data.max_item  # not padding, not mask
    # Uniform over 1..max_item: 2,000 draws of 3,968 ids find 3,968 (1 - e^-0.504) = 1,570.
    assert 1450 < len(np.unique(sampled)) < 1690
    assert abs(sampled.mean() / ((1 + data.max_item) / 2) - 1) < 0.05


def test_bucketed_estep_and_evaluation_hold_the_same_rows(data):
    pipelines = SequencePipelines(data, max_len=40)
    padded = np.concatenate([b.numpy() for b in pipelines.estep(16)])
    bucketed = [b.numpy() for b in pipelines.estep(16, length_buckets=True)]
    widths = [b.shape[1] for b in bucketed]
    assert widths == sorted(widths) and widths[0] < 40
    rows = {tuple(row[row > 0]) for batch in bucketed for row in batch}
    assert rows == {tuple(row[row > 0]) for row in padded}
    for split in ("valid", "test"):
        plain = list(pipelines.evaluation(split, 16))
        cut = list(pipelines.evaluation(split, 16, length_buckets=True))
        assert (sorted(np.concatenate([b["answer"].numpy() for b in cut]).tolist())
                == sorted(np.concatenate([b["answer"].numpy() for b in plain]).tolist()))
        assert max(b["input_ids"].shape[1] for b in cut) <= 40


def _prefix_rows(batches, max_len):
    """(user, m) of every row of prefix batches, checked against `data` on the way:
    the input is the user's first m items, the target the item after them."""
    samples = []
    for batch in batches:
        width = batch["input_ids"].shape[1]
        for row in range(len(batch["input_ids"])):
            target = int(batch["target_pos"][row, -1])
            user = (target - 1) // 80
            m = target - (80 * user + 1)
            samples.append((user, m))
            prefix = list(80 * user + 1 + np.arange(m))
            assert batch["input_ids"][row].tolist() == ([0] * max_len + prefix)[-width:]
            assert (batch["target_pos"][row, :-1] == 0).all()
            # The views are of the prefix: no item after the cut, the target included.
            for view in ("view_1", "view_2"):
                items = batch[view][row]
                assert set(items[items > 0]) <= set(prefix)
    return samples


@pytest.mark.parametrize("length_buckets", [False, True])
def test_prefix_samples_give_every_prefix_once_its_next_item_at_the_last_position(
        data, length_buckets):
    pipelines = SequencePipelines(data, max_len=8, train_samples="prefixes")
    expected = sorted((user, m) for user in range(data.num_users)
                      for m in range(1, data.lengths[user] - 2))
    assert pipelines.num_samples == len(expected)
    assert pipelines.steps_per_epoch(64) == -(-len(expected) // 64)
    dataset = pipelines.train(64, seed=1, augmentation="random", ratios=RATIOS,
                              length_buckets=length_buckets)
    for epoch in range(2):
        batches = _epoch(dataset, pipelines, 64, epoch)
        assert sorted(_prefix_rows(batches, 8)) == expected
        for batch in batches:
            lengths = np.minimum([m for _, m in _prefix_rows([batch], 8)], 8)
            width = lengths.max() if length_buckets else 8
            for name in ("input_ids", "target_pos", "target_neg", "view_1", "view_2"):
                assert batch[name].shape == (len(lengths), width), name
            users = (batch["target_pos"][:, -1] - 1) // 80
            negatives = batch["target_neg"]
            assert (negatives[:, :-1] == 0).all()
            for negative, user in zip(negatives[:, -1], users, strict=True):
                assert negative not in data.sequence(user)


def test_prefix_samples_follow_seed_and_epoch_and_count_every_target(data):
    pipelines = SequencePipelines(data, max_len=8, train_samples="prefixes")

    def order(seed, epoch, first_epoch=0):
        dataset = pipelines.train(64, seed=seed, augmentation="random", ratios=RATIOS,
                                  first_epoch=first_epoch)
        return _prefix_rows(_epoch(dataset, pipelines, 64, epoch - first_epoch), 8)

    assert order(1, 1) == order(1, 1, first_epoch=1)  # a resumed run sees the same
    assert order(1, 1) != order(1, 0)
    assert order(2, 0) != order(1, 0)
    # Every train target of every user counts, not only those of its last 8 positions.
    targets = np.concatenate([data.sequence(u)[1:-2] for u in range(data.num_users)])
    np.testing.assert_array_equal(pipelines.target_counts(),
                                  np.bincount(targets, minlength=data.item_size))
    users = SequencePipelines(data, max_len=8).target_counts()
    assert users.sum() < len(targets) and (users <= pipelines.target_counts()).all()


@pytest.fixture(scope="module")
def shared_targets(tmp_path_factory):
    """30 users: user u's sequence is 100 + u, then 1, 2, 3, ...; so the prefix of m
    items ends before item m whoever the user, and its first item names the user."""
    sequences = [[100 + user] + list(range(1, 5 + user % 10)) for user in range(30)]
    return load_sequences(write_dataset(tmp_path_factory.mktemp("s") / "s.txt", sequences))


@pytest.mark.parametrize("length_buckets", [False, True])
def test_same_target_views_are_the_input_and_another_prefix_with_its_next_item(
        shared_targets, length_buckets):
    data = shared_targets
    pipelines = SequencePipelines(data, max_len=40, train_samples="prefixes")
    samples_of_target = np.bincount([m for user in range(data.num_users)
                                     for m in range(1, data.lengths[user] - 2)])
    dataset = pipelines.train(16, seed=1, augmentation="random", ratios=RATIOS,
                              length_buckets=length_buckets, views="same_target")
    partners_of_first = set()
    for epoch in range(3):
        for batch in _epoch(dataset, pipelines, 16, epoch):
            np.testing.assert_array_equal(batch["view_1"], batch["input_ids"])
            widths = []
            for ids, view, target in zip(batch["input_ids"], batch["view_2"],
                                         batch["target_pos"][:, -1], strict=True):
                own, partner = ids[ids > 0], view[view > 0]
                assert partner.tolist() == [partner[0]] + list(range(1, target))
                if samples_of_target[target] > 1:
                    assert partner[0] != own[0]  # another sample, of another user here
                if own[0] == 100 and target == 1:
                    partners_of_first.add(int(partner[0]))
                widths += [len(own), len(partner)]
            assert batch["view_2"].shape[1] == (max(widths) if length_buckets else 40)
    assert len(partners_of_first) > 1  # drawn anew each epoch, from 29 candidates


def test_same_target_views_need_prefix_samples(shared_targets):
    with pytest.raises(ValueError, match="prefix samples"):
        SequencePipelines(shared_targets, max_len=8).train(
            16, seed=1, augmentation="random", ratios=RATIOS, views="same_target")

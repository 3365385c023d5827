import numpy as np
import pytest
from conftest import synthetic_sequences, write_dataset

from iclrec_tf.data.datasets import load_sequences
from iclrec_tf.data.noise import drawn_positions, noisy_inputs
from iclrec_tf.data.pipeline import SequencePipelines

DROP = {"valid": 2, "test": 1}  # items after each split's input, the answer included


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    sequences = synthetic_sequences(num_users=60, num_items=300, seed=4, max_len=70)
    return load_sequences(write_dataset(tmp_path_factory.mktemp("d") / "d.txt", sequences))


def _rows(values, splits):
    return [values[splits[u]:splits[u + 1]].tolist() for u in range(len(splits) - 1)]


@pytest.mark.parametrize("split", ["valid", "test"])
def test_a_ratio_of_zero_is_the_clean_input(data, split):
    clean = _rows(*data.prefixes(drop_last=DROP[split]))
    assert _rows(*noisy_inputs(data, split, 0.0, seed=5)) == clean


@pytest.mark.parametrize("split", ["valid", "test"])
@pytest.mark.parametrize("ratio", [0.1, 0.5, 2.0])
def test_noise_is_inserted_before_the_answer_and_never_from_the_users_items(data, split,
                                                                            ratio):
    noisy = _rows(*noisy_inputs(data, split, ratio, seed=5))
    pool = set(data.items.tolist())
    for user, row in enumerate(noisy):
        sequence = data.sequence(user).tolist()
        clean = sequence[:-DROP[split]]  # the input; the answer follows it in both
        inserted = [item for item in row if item not in sequence]
        # what is not inserted is the clean input, in its order: the answer stays last
        assert [item for item in row if item in sequence] == clean
        assert len(row) == len(clean) + len(inserted)
        assert set(inserted) <= pool
        n = len(clean) + 1  # the sequence up to the answer, the answer included
        assert len(inserted) <= int(ratio * n)
        if ratio == 2.0:  # 2n draws among n positions leave few undrawn
            assert len(inserted) > n / 2


def test_the_count_is_the_number_of_distinct_drawn_positions(data):
    ratio, seed = 0.5, 11
    noisy = _rows(*noisy_inputs(data, "test", ratio, seed))
    _, splits = data.prefixes(drop_last=0)
    drawn = drawn_positions(np.random.default_rng(seed), splits, ratio)
    owners = np.searchsorted(splits, drawn, side="right") - 1
    repeats = 0
    for user, row in enumerate(noisy):
        n = len(data.sequence(user))
        mine = drawn[owners == user]
        assert len(mine) == int(ratio * n)  # drawn with replacement among the n
        assert ((mine >= splits[user]) & (mine < splits[user + 1])).all()
        assert len(row) - (n - 1) == len(np.unique(mine))
        repeats += len(mine) - len(np.unique(mine))
    assert repeats > 0


def test_the_noise_is_seeded(data):
    first = noisy_inputs(data, "test", 0.2, seed=1)
    again = noisy_inputs(data, "test", 0.2, seed=1)
    other = noisy_inputs(data, "test", 0.2, seed=2)
    np.testing.assert_array_equal(first[0], again[0])
    np.testing.assert_array_equal(first[1], again[1])
    assert _rows(*first) != _rows(*other)


def test_noisy_evaluation_cuts_the_noisy_input_and_keeps_the_clean_history(data):
    pipelines = SequencePipelines(data, max_len=8)
    values, splits = noisy_inputs(data, "test", 0.5, seed=3)
    batches = list(pipelines.evaluation("test", 16, inputs=(values, splits)))
    inputs = np.concatenate([b["input_ids"].numpy() for b in batches])
    history = [h for b in batches for h in b["history"].to_list()]
    answers = np.concatenate([b["answer"].numpy() for b in batches])
    for user, row in enumerate(_rows(values, splits)):
        assert inputs[user].tolist() == ([0] * 8 + row)[-8:]
        assert history[user] == data.sequence(user)[:-1].tolist()
        assert answers[user] == data.sequence(user)[-1]

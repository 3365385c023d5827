"""Tests of `iclrec_tf.idcoder`: string ids -> codes by first appearance, compactly."""

import numpy as np
import pyarrow as pa

from iclrec_tf.prepare.idcoder import IdCoder


def random_ids(rng, count):
    """Ids of 1-40 characters, ASCII and not, with anagrams and prefixes of each other."""
    alphabet = list("abcXYZ019-_ ,üé中")
    ids = ["".join(rng.choice(alphabet, size=rng.integers(1, 40))) for _ in range(count)]
    return ids + ["ab", "ba", "a", "aa", "aaa", "a" * 300, "é", "e"]


def test_codes_follow_first_appearance_across_blocks(tmp_path):
    rng = np.random.default_rng(0)
    pool = random_ids(rng, 3000)
    coder, reference = IdCoder(), {}
    # Growing blocks, each mostly repeats: both levels and several merges are used.
    for size in (1, 5, 40, 300, 2000, 2000, 7000):
        block = [pool[i] for i in rng.integers(0, len(pool), size)]
        expected = [reference.setdefault(name, len(reference)) for name in block]
        codes = coder.code(pa.array(block))
        assert codes.dtype == np.int32
        assert codes.tolist() == expected
    assert coder.size == len(reference)
    assert coder.names().to_pylist() == list(reference)


def test_a_sliced_column_is_hashed_from_its_own_offset():
    coder = IdCoder()
    column = pa.array(["x", "first", "second", "first"])
    assert coder.code(column.slice(1)).tolist() == [0, 1, 0]
    assert coder.code(pa.array(["second", "x"])).tolist() == [1, 2]


def test_ids_sharing_a_first_hash_are_told_apart_by_the_second():
    keys = np.array([5, 7, 7, 7, 9], dtype=np.uint64)
    seconds = np.array([1, 2, 3, 4, 5], dtype=np.uint64)
    codes = np.array([10, 11, 12, 13, 14], dtype=np.int32)
    found = IdCoder._find(np.array([7, 7, 7, 5, 5, 8], dtype=np.uint64),
                          np.array([3, 4, 9, 1, 2, 1], dtype=np.uint64), keys, seconds, codes)
    assert found.tolist() == [12, 13, -1, 10, -1, -1]


def test_merging_a_level_keeps_it_sorted_and_aligned():
    rng = np.random.default_rng(1)
    levels = []
    for size in (50, 9):
        keys = np.sort(rng.integers(0, 40, size).astype(np.uint64))
        levels.append((keys, keys * 3, (keys * 5).astype(np.int32)))
    coder = IdCoder()
    coder._main = levels[0]
    coder._merge_into("_main", levels[1])
    keys, seconds, codes = coder._main
    np.testing.assert_array_equal(keys, np.sort(np.concatenate([levels[0][0], levels[1][0]])))
    np.testing.assert_array_equal(seconds, keys * 3)
    np.testing.assert_array_equal(codes, (keys * 5).astype(np.int32))

import numpy as np
import pytest
import tensorflow as tf

from iclrec_tf.data import augment
from iclrec_tf.data.windows import last_items

RATIOS = {"crop": 0.2, "mask": 0.7, "reorder": 0.2}


def _batch(lengths, width=None, offset=100):
    """Left-aligned rows of distinct, non-zero items; row r holds offset*r + 1 ... ."""
    width = width or max(lengths)
    items = np.zeros((len(lengths), width), np.int32)
    for row, n in enumerate(lengths):
        items[row, :n] = offset * row + 1 + np.arange(n)
    return tf.constant(items), tf.constant(lengths, tf.int32)


def _seed(value):
    return tf.constant([value, 0], tf.int64)


LENGTHS = list(range(1, 60)) + [100, 547]


def test_crop_keeps_a_contiguous_window_that_never_covers_the_last_item():
    items, lengths = _batch(LENGTHS, offset=1000)
    for seed in range(5):
        cropped, kept = augment.crop(items, lengths, 0.2, _seed(seed))
        for row, n in enumerate(LENGTHS):
            window = int(0.2 * n)
            assert kept[row] == max(window, 1)
            values = cropped[row, :kept[row]].numpy()
            start = values[0] - (1000 * row + 1)
            # contiguous run of the original, starting inside 0 .. n - window - 1
            np.testing.assert_array_equal(values, items[row, start:start + kept[row]])
            assert 0 <= start <= n - window - 1
            assert (cropped[row, kept[row]:].numpy() == 0).all()


def test_crop_start_is_uniform_over_its_reference_range():
    items, lengths = _batch([10] * 4000)
    cropped, _ = augment.crop(items, lengths, 0.2, _seed(7))
    starts = cropped[:, 0].numpy() - (100 * np.arange(4000) + 1)
    # window 2 of 10: starts 0..7 (random.randint(0, 10 - 2 - 1)), never 8.
    counts = np.bincount(starts, minlength=9)
    assert counts[8] == 0
    assert counts[:8].min() > 400 and counts[:8].max() < 600


def test_mask_zeroes_exactly_int_ratio_n_positions_and_nothing_else():
    items, lengths = _batch(LENGTHS, offset=1000)
    masked, new_lengths = augment.mask(items, lengths, 0.7, _seed(3))
    np.testing.assert_array_equal(new_lengths, lengths)
    for row, n in enumerate(LENGTHS):
        inside = masked[row, :n].numpy()
        assert (inside == 0).sum() == int(0.7 * n)
        kept = inside != 0
        np.testing.assert_array_equal(inside[kept], items[row, :n].numpy()[kept])
        assert (masked[row, n:].numpy() == 0).all()


def test_reorder_permutes_only_its_window():
    items, lengths = _batch(LENGTHS, offset=1000)
    changed_rows = 0
    for seed in range(3):
        reordered, new_lengths = augment.reorder(items, lengths, 0.2, _seed(seed))
        np.testing.assert_array_equal(new_lengths, lengths)
        for row, n in enumerate(LENGTHS):
            before, after = items[row].numpy(), reordered[row].numpy()
            moved = np.flatnonzero(before != after)
            assert sorted(after[:n]) == sorted(before[:n])
            assert (after[n:] == 0).all()
            if moved.size:
                changed_rows += 1
                window = int(0.2 * n)
                assert moved.max() - moved.min() < window
                assert moved.max() <= n - 2  # the last item never moves
    assert changed_rows > 50


@pytest.mark.parametrize("name", ["crop", "mask", "reorder"])
def test_same_seed_same_views_other_seed_other_views(name):
    items, lengths = _batch([40] * 16)
    first = augment.AUGMENTERS[name](items, lengths, RATIOS[name], _seed(1))[0]
    again = augment.AUGMENTERS[name](items, lengths, RATIOS[name], _seed(1))[0]
    other = augment.AUGMENTERS[name](items, lengths, RATIOS[name], _seed(2))[0]
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


def test_last_items_truncates_long_views_and_left_pads_short_ones():
    items, lengths = _batch([3, 8])
    np.testing.assert_array_equal(
        last_items(items, lengths, 5),
        [[0, 0, 1, 2, 3], [104, 105, 106, 107, 108]])


def test_random_picks_each_method_about_a_third_of_the_time():
    rows = 3000
    items, lengths = _batch([20] * rows, offset=1)  # every row is 1..20
    views = augment.augmented_view(items, lengths, 50, "random", RATIOS, _seed(5)).numpy()
    real = views != 0
    counts = real.sum(axis=1)
    crop = counts == int(0.2 * 20)
    mask = counts == 20 - int(0.7 * 20)
    reorder = counts == 20
    assert (crop | mask | reorder).all()
    for chosen in (crop, mask, reorder):
        assert 0.30 < chosen.mean() < 0.37
    # every view is right-aligned: no zeros after the first item except masked ones
    assert (views[reorder][:, -20:] != 0).all() and (views[reorder][:, :-20] == 0).all()


def test_single_method_views_match_the_method():
    items, lengths = _batch([12, 30, 80])
    view = augment.augmented_view(items, lengths, 50, "mask", RATIOS, _seed(9)).numpy()
    # 12 items, int(0.7 * 12) = 8 of them masked, right-aligned in 50
    assert view.shape == (3, 50)
    assert (view[0, :38] == 0).all() and (view[0, 38:] != 0).sum() == 12 - int(0.7 * 12)


def test_no_augmentation_gives_the_input_itself_right_aligned():
    items, lengths = _batch([3, 30, 80])
    view = augment.augmented_view(items, lengths, 50, "none", RATIOS, _seed(9)).numpy()
    assert view[0].tolist() == [0] * 47 + [1, 2, 3]
    assert view[1].tolist() == [0] * 20 + list(range(101, 131))
    assert view[2].tolist() == list(range(231, 281))  # the last 50 of 80

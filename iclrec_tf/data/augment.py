"""Crop, mask and reorder augmentations as batched, seeded TensorFlow ops.

Every function takes a batch of left-aligned sequences `items` [batch, time]
(zeros past each row's length) with `lengths` [batch], and returns the
augmented batch in the same layout with its new lengths. The reference draws
crop and reorder windows with `random.randint(0, n - length - 1)`, so a window
never covers a sequence's last item; that quirk is kept on purpose. Ratios are
applied as `int(ratio * n)` in float64, exactly as Python computes them.
"""

import tensorflow as tf

from iclrec_tf.data.windows import last_items


def _ratio_length(ratio, lengths):
    """`int(ratio * n)` per row, int32 [batch]."""
    return tf.cast(tf.floor(tf.constant(ratio, tf.float64) * tf.cast(lengths, tf.float64)),
                   tf.int32)


def _window_start(lengths, window, seed):
    """Uniform start in `0 .. n - window - 1` per row, as `random.randint` draws it."""
    uniform = tf.random.stateless_uniform(tf.shape(lengths), seed, dtype=tf.float64)
    span = tf.cast(lengths - window, tf.float64)
    return tf.cast(tf.floor(uniform * span), tf.int32)


def crop(items, lengths, ratio, seed):
    """Keeps a contiguous window of `int(ratio * n)` items (at least one).

    Args:
      items: [batch, time] left-aligned item ids.
      lengths: [batch] int32 sequence lengths (>= 1).
      ratio: the crop ratio tao.
      seed: [2] int stateless seed.

    Returns:
      (cropped items [batch, time], cropped lengths [batch]).
    """
    window = _ratio_length(ratio, lengths)
    start = _window_start(lengths, window, seed)
    kept = tf.maximum(window, 1)
    offsets = tf.range(tf.shape(items)[1])[None, :]
    source = tf.minimum(start[:, None] + offsets, tf.shape(items)[1] - 1)
    cropped = tf.gather(items, source, batch_dims=1)
    return tf.where(offsets < kept[:, None], cropped, tf.zeros_like(cropped)), kept


def mask(items, lengths, ratio, seed):
    """Sets `int(ratio * n)` distinct positions to 0, the padding id.

    Args and returns as `crop`; lengths are unchanged.
    """
    count = _ratio_length(ratio, lengths)
    time = tf.shape(items)[1]
    inside = tf.range(time)[None, :] < lengths[:, None]
    keys = tf.random.stateless_uniform(tf.shape(items), seed, dtype=tf.float32)
    keys = tf.where(inside, keys, 2.0)  # positions past the end sort last
    rank = tf.argsort(tf.argsort(keys, axis=1, stable=True), axis=1, stable=True)
    masked = rank < count[:, None]
    return tf.where(masked, tf.zeros_like(items), items), lengths


def reorder(items, lengths, ratio, seed):
    """Shuffles a contiguous window of `int(ratio * n)` items in place.

    Args and returns as `crop`; lengths are unchanged.
    """
    window = _ratio_length(ratio, lengths)
    start_seed, order_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    start = _window_start(lengths, window, start_seed)
    positions = tf.range(tf.shape(items)[1])[None, :]
    in_window = (positions >= start[:, None]) & (positions < (start + window)[:, None])
    # Window members get keys in [start, start + 1): they sort among themselves,
    # after every earlier position and before every later one.
    noise = tf.random.stateless_uniform(tf.shape(items), order_seed, dtype=tf.float64)
    keys = tf.where(in_window, tf.cast(start[:, None], tf.float64) + noise,
                    tf.cast(positions, tf.float64))
    order = tf.argsort(keys, axis=1, stable=True)
    return tf.gather(items, order, batch_dims=1), lengths


# The order is the order of the seeds `augmented_view` splits: keep it.
AUGMENTERS = {"crop": crop, "mask": mask, "reorder": reorder}


def augmented_view(items, lengths, max_len, method, ratios, seed):
    """One augmented view per row, ready for the encoder.

    Args:
      items: [batch, time] left-aligned train inputs (the whole input, which
        may be longer than `max_len`).
      lengths: [batch] int32 lengths.
      max_len: the encoder's sequence length.
      method: `crop`, `mask`, `reorder`, `random` (each row picks one of
        the three uniformly), or `none` (the input itself: the paper's ICL
        without sequence augmentation, Table 2's row E).
      ratios: dict with the `crop`, `mask` and `reorder` ratios.
      seed: [2] int stateless seed.

    Returns:
      [batch, max_len] augmented item ids, left-padded.
    """
    if method == "none":
        return last_items(items, lengths, max_len)
    choice_seed, *method_seeds = tf.unstack(
        tf.random.experimental.stateless_split(seed, 1 + len(AUGMENTERS)))
    views = []
    for (name, augmenter), method_seed in zip(AUGMENTERS.items(), method_seeds, strict=True):
        if method in (name, "random"):
            augmented, new_lengths = augmenter(items, lengths, ratios[name], method_seed)
            views.append(last_items(augmented, new_lengths, max_len))
    if method != "random":
        return views[0]
    choice = tf.random.stateless_uniform(tf.shape(lengths), choice_seed, dtype=tf.float64)
    choice = tf.cast(tf.floor(choice * len(AUGMENTERS)), tf.int32)
    stacked = tf.stack(views, axis=1)  # (B, 3, max_len)
    return tf.gather(stacked, choice, batch_dims=1)

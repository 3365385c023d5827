"""Right-aligned windows: the last `max_len` items of each sequence, left-padded with 0.

The encoder reads a sequence as its most recent `max_len` items with padding
before them. `last_window` cuts them from the flat numpy arrays of a
`SequenceData` (the fixed inputs: train, valid, test); `last_items` from a
TensorFlow batch of left-aligned rows (the augmented views, drawn per batch).
"""

import numpy as np
import tensorflow as tf


def last_window(items, starts, ends, max_len):
    """Left-padded windows of the last `max_len` items of `items[starts:ends]`.

    Args:
      items: [num_interactions] all users' items, concatenated.
      starts: [num_users] absolute, inclusive start of each user's range.
      ends: [num_users] absolute, exclusive end of each user's range.
      max_len: the window size.

    Returns:
      [num_users, max_len] int32, each row's last items right-aligned, 0 before.
    """
    positions = ends[:, None] - max_len + np.arange(max_len)[None, :]
    valid = positions >= starts[:, None]
    return np.where(valid, items[np.clip(positions, 0, None)], 0).astype(np.int32)


def last_items(items, lengths, max_len):
    """The last `max_len` items of each left-aligned row, left-padded with 0.

    Args:
      items: [batch, time] left-aligned item ids.
      lengths: [batch] sequence lengths.
      max_len: the output width.

    Returns:
      [batch, max_len] item ids, right-aligned.
    """
    source = lengths[:, None] - max_len + tf.range(max_len)[None, :]
    valid = source >= 0
    gathered = tf.gather(items, tf.maximum(source, 0), batch_dims=1)
    return tf.where(valid, gathered, tf.zeros_like(gathered))

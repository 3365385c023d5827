"""Sequence representations: one vector from an encoder output `[batch, len, hidden]`.

- `mean`: the mean over every position, padding included: the reference's
  intent representation (then most of it is padding: 89% of Toys' positions);
- `masked_mean`: the mean over the positions that hold an item, the same
  whatever padding a batch carries;
- `last`: the hidden state at the last position (the next-item query);
- `flatten`: all positions side by side, `[batch, len * hidden]`: the
  reference's SeqCL representation.
"""

import tensorflow as tf

REPRESENTATIONS = ("mean", "masked_mean", "last", "flatten")
# The representations that do not change when left padding is added or removed.
PADDING_FREE = ("masked_mean", "last")


def pool(hidden, item_ids, method):
    """`[batch, len, hidden]` -> `[batch, hidden]` (or `[batch, len * hidden]` for `flatten`).

    Args:
      hidden: [batch, len, hidden] encoder output.
      item_ids: [batch, len] the encoded ids; 0 is padding (and a masked item).
      method: one of `REPRESENTATIONS`.

    Raises:
      ValueError: for another `method`.
    """
    if method == "mean":
        return tf.reduce_mean(hidden, axis=1)
    if method == "masked_mean":
        is_item = tf.cast(item_ids > 0, hidden.dtype)[..., None]  # (B, L, 1)
        count = tf.maximum(tf.reduce_sum(is_item, axis=1), 1.0)
        return tf.reduce_sum(hidden * is_item, axis=1) / count
    if method == "last":
        return hidden[:, -1]
    if method == "flatten":
        return tf.reshape(hidden, (tf.shape(hidden)[0], -1))
    raise ValueError(f"pooling must be one of {', '.join(REPRESENTATIONS)}, got {method!r}")

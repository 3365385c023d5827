"""Full-softmax cross entropy over a whole item catalogue, in bounded memory.

`softmax_cross_entropy_sum` scores every row of `hidden` against every item
embedding. The logits of all rows at once take `rows x items` floats (Toys, a
batch: 1,400 rows x 11,926 items, 67 MB); past `max_logits` they are computed
a chunk of rows at a time, forward and backward, with a written-out gradient,
so that a catalogue of a million items trains in the memory of a few hundred
thousand logits instead of a few billion.
"""

import tensorflow as tf

# 2**26 float32 logits are 256 MB: a batch of Toys or Beauty stays in one piece.
DEFAULT_MAX_LOGITS = 2**26


def excluded_bias(item_size, excluded_ids):
    """[item_size] float32: 0, and -inf at `excluded_ids` (never a candidate)."""
    excluded = tf.scatter_nd(tf.constant([[i] for i in excluded_ids], tf.int32),
                             tf.ones([len(excluded_ids)], tf.bool), [item_size])
    return tf.where(excluded, float("-inf"), 0.0)


def softmax_cross_entropy_sum(hidden, targets, table, excluded_ids=(),
                              max_logits=DEFAULT_MAX_LOGITS):
    """Sum over rows of `-log softmax(hidden . table^T + bias)[target]`.

    Args:
      hidden: [rows, dim] float32 query states.
      targets: [rows] int item ids, none of them excluded.
      table: [items, dim] float32 item embeddings (a static number of items).
      excluded_ids: Python ints never to be candidates (padding, mask id).
      max_logits: the most logits to hold at once; more rows are chunked.

    Returns:
      Scalar float32, the summed cross entropy (divide by the rows for a mean).
    """
    item_size = table.shape[0]
    bias = excluded_bias(item_size, list(excluded_ids))
    chunk = max(1, max_logits // item_size)
    rows = tf.shape(hidden)[0]
    return tf.cond(rows <= chunk,
                   lambda: _whole(hidden, targets, table, bias),
                   lambda: _chunked(hidden, targets, table, bias, chunk))


def _whole(hidden, targets, table, bias):
    logits = tf.matmul(hidden, table, transpose_b=True) + bias  # (N, V)
    return tf.reduce_sum(tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=tf.cast(targets, tf.int32), logits=logits))


def _chunked(hidden, targets, table, bias, chunk):
    targets = tf.cast(targets, tf.int32)
    num_chunks = (tf.shape(hidden)[0] + chunk - 1) // chunk

    @tf.custom_gradient
    def loss(hidden, table):
        rows = tf.shape(hidden)[0]

        def chunk_logits(index):
            start = index * chunk
            part = hidden[start:tf.minimum(start + chunk, rows)]
            part_targets = targets[start:start + chunk]
            return part, part_targets, tf.matmul(part, table, transpose_b=True) + bias

        def add(index, total):
            _, part_targets, logits = chunk_logits(index)
            return index + 1, total + tf.reduce_sum(
                tf.nn.sparse_softmax_cross_entropy_with_logits(labels=part_targets,
                                                               logits=logits))

        # One chunk at a time: parallel iterations would hold several chunks' logits.
        _, total = tf.while_loop(lambda index, _: index < num_chunks, add,
                                 (tf.constant(0), tf.constant(0.0)), parallel_iterations=1)

        def gradient(upstream):
            # Each chunk's logits again, rather than all of them kept from the forward pass.
            def step(index, table_gradient, hidden_parts):
                part, part_targets, logits = chunk_logits(index)
                # d loss / d logits = softmax - one_hot(target), row by row; the one is
                # subtracted in place, not from a second [chunk, items] tensor.
                at_targets = tf.stack([tf.range(tf.shape(part_targets)[0]), part_targets], 1)
                residual = tf.tensor_scatter_nd_sub(
                    tf.nn.softmax(logits), at_targets, tf.ones_like(part_targets, tf.float32))
                return (index + 1, table_gradient + tf.matmul(residual, part, transpose_a=True),
                        hidden_parts.write(index, tf.matmul(residual, table)))

            _, table_gradient, hidden_parts = tf.while_loop(
                lambda index, *_: index < num_chunks, step,
                (tf.constant(0), tf.zeros_like(table),
                 tf.TensorArray(hidden.dtype, size=num_chunks, infer_shape=False)),
                parallel_iterations=1)
            return upstream * hidden_parts.concat(), upstream * table_gradient

        return total, gradient

    return loss(tf.convert_to_tensor(hidden), tf.convert_to_tensor(table))

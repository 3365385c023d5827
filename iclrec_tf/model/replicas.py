"""Batch-global reductions for losses computed under a tf.distribute strategy.

A step under a strategy with N replicas sees N slices of one global batch.
Losses are written so that the replicas' losses add up to the loss of the
global batch on one device (the optimizer sums the replicas' gradients):
averages divide by global counts (`global_sum`), and contrastive negatives
come from the whole global batch (`replica_rows` gathers them, with a
gradient back to the replica that owns each row). On one replica both are
the identity.
"""

import tensorflow as tf


def _replicas():
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return None
    return context


def global_sum(value):
    """`value` summed over the replicas (itself on one replica), without gradient."""
    context = _replicas()
    value = tf.stop_gradient(value)
    return value if context is None else context.all_reduce(tf.distribute.ReduceOp.SUM, value)


def replica_rows(value):
    """The global batch's rows of `value`, and where this replica's rows start.

    Args:
      value: [local_batch, ...] this replica's rows.

    Returns:
      ([global_batch, ...] every replica's rows in replica order, scalar int32
      offset of this replica's first row). On one replica: (`value`, 0).
    """
    context = _replicas()
    if context is None:
        return value, tf.constant(0, tf.int32)
    sizes = context.all_gather(tf.shape(value)[:1], axis=0)
    offset = tf.reduce_sum(sizes[:context.replica_id_in_sync_group])
    return context.all_gather(value, axis=0), offset

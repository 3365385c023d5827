"""tf.distribute: the `--strategy` flag, the chief, and batch-global losses.

A step under a strategy with N replicas sees N slices of one global batch.
Losses are written so that the replicas' losses add up to the loss of the
global batch on one device (the optimizer sums the replicas' gradients):
averages divide by global counts (`global_sum`), and contrastive negatives
come from the whole global batch (`replica_rows` gathers them, with a
gradient back to the replica that owns each row).
"""

import json
import os

import tensorflow as tf

from iclrec_tf.config import ConfigError


def make_strategy(name):
    """The `tf.distribute.Strategy` of `--strategy`.

    `default` is the single-device strategy; `mirrored` uses every local
    device (GPUs, or the CPU); `multi_worker` reads the cluster from the
    `TF_CONFIG` environment variable.

    Raises:
      ConfigError: for `multi_worker` without a usable `TF_CONFIG`.
    """
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    try:
        config = json.loads(os.environ["TF_CONFIG"])
        config["cluster"]["worker"], config["task"]["index"]  # noqa: B018 (presence check)
    except (KeyError, TypeError, json.JSONDecodeError):
        raise ConfigError("--strategy multi_worker needs TF_CONFIG with a cluster "
                          "'worker' list and this task's 'index'") from None
    return tf.distribute.MultiWorkerMirroredStrategy()


def worker_role(strategy):
    """(is_chief, worker_id) of this process under `strategy`.

    Worker 0 is the chief when the cluster has no `chief` task (TensorFlow's
    convention); a single process is always the chief.
    """
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True, 0
    task_type, task_id = resolver.task_type, resolver.task_id or 0
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    is_chief = task_type == "chief" or (task_type == "worker" and task_id == 0
                                        and not has_chief)
    return is_chief, task_id


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

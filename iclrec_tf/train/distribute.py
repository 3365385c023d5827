"""tf.distribute: the strategy of `--strategy`, and which worker is the chief.

The losses' side of a strategy (batch-global sums and gathered rows) is in
`iclrec_tf.model.replicas`.
"""

import json
import os

import tensorflow as tf

from iclrec_tf.errors import ConfigError


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

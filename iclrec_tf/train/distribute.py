"""tf.distribute: the strategy of `--strategy`, which worker is the chief, and the
CPU threads of `--threads`.

The losses' side of a strategy (batch-global sums and gathered rows) is in
`iclrec_tf.model.replicas`.
"""

import json
import os

import tensorflow as tf
import threadpoolctl

from iclrec_tf.errors import ConfigError


def limit_threads(threads):
    """Gives the training `threads` CPU threads in each of its pools.

    TensorFlow's intra-op and inter-op pools, and the OpenMP and BLAS pools of the
    E-step's scikit-learn k-means (through `threadpoolctl`, for the calling thread,
    where Keras runs its callbacks). Several trainings on one machine run faster
    each with its share of the cores than all with every core: two on 2 cores, at
    one thread each, take 0.7x the time of both at the defaults (docs/BENCHMARKS.md).

    Raises:
      ConfigError: once TensorFlow has started in this process with other
        settings: they can only be chosen before.
    """
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:
        current = (tf.config.threading.get_intra_op_parallelism_threads(),
                   tf.config.threading.get_inter_op_parallelism_threads())
        if current != (threads, threads):
            raise ConfigError(f"--threads {threads}: TensorFlow has already started in this "
                              "process with other thread settings") from None
    import sklearn.cluster  # noqa: F401  (loads the OpenMP runtime that k-means uses)
    threadpoolctl.threadpool_limits(limits=threads)


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

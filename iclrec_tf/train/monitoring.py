"""TensorBoard logs of a run: losses, validation, intent health, HParams, Projector.

`ICLRecTensorBoard` is Keras's `TensorBoard` callback (losses, validation
metrics, weight histograms, in the `train/` and `validation/` runs) plus what an
ICLRec run needs and Keras does not write: the learning rate (Keras logs only
schedules) and steps/s over the training steps alone (Keras's own count the
validation too), the health of every E-step's clustering and the seconds of
each phase, the run's
configuration for the HParams dashboard, and the item embeddings and intent
prototypes for the Projector (in the log directory itself, the HParams
"session"). `write_results` adds the best-epoch validation and test metrics at
the end, so that the HParams table compares finished runs.
"""

import dataclasses
import pathlib
import time

import numpy as np
import tensorflow as tf
import tf_keras as keras

from iclrec_tf import files
from iclrec_tf.train.metrics import METRIC_NAMES

RESULT_SPLITS = {"valid": "best_valid", "test": "test", "test_exclude": "test_exclude"}
PROJECTOR_DIR = "projector"


def cluster_health(result):
    """What one E-step's clustering looks like, as scalars.

    Args:
      result: a `ClusteringResult`.

    Returns:
      A dict: `inertia`; `non_empty_clusters`; `largest_cluster_share`, the
      fraction of users in the largest cluster; `size_entropy`, the entropy in
      bits of the cluster sizes (log2 K when every cluster is equally full, 0
      when one holds everyone; 2**entropy is the effective number of clusters).
    """
    sizes = result.cluster_sizes
    shares = sizes[sizes > 0] / sizes.sum()
    return {
        "inertia": result.inertia,
        "non_empty_clusters": result.non_empty_clusters,
        "largest_cluster_share": float(shares.max()),
        "size_entropy": float(-(shares * np.log2(shares)).sum()),
    }


def item_interaction_counts(data):
    """[max_item + 1] how often each item id occurs in the training split.

    The training split is each user's sequence without its validation and test
    answers (`items[:-2]`), so the count says what the model learned from.
    """
    items, _ = data.prefixes(drop_last=2)
    return np.bincount(items, minlength=data.max_item + 1)


class ICLRecTensorBoard(keras.callbacks.TensorBoard):
    """Keras's TensorBoard callback, plus intent health, HParams and the Projector.

    Its place among the callbacks: `iclrec_tf.train.run.Training.callbacks`.
    `log_dir` receives:

    - `train/`: `epoch_` and, every `log_every` steps, `batch_` scalars of
      `loss`, `rec_loss`, `seqcl_loss`, `icl_loss`, `learning_rate` and
      `steps_per_second`; weight histograms if `histograms`.
    - `validation/`: `epoch_HR@5` ... `epoch_NDCG@20`.
    - the directory itself: per epoch `intents/inertia`,
      `intents/non_empty_clusters`, `intents/largest_cluster_share`,
      `intents/size_entropy` and `seconds/estep`, `seconds/train`,
      `seconds/validation`; the HParams of `config`; after `write_results`,
      `best_valid/<metric>`, `test/<metric>`, `test_exclude/<metric>` and
      `best_epoch`; `projector_config.pbtxt` and `projector/`, written at the
      end of training.

    Args:
      log_dir: the directory to write into.
      config: the run's `TrainConfig`, shown in the HParams dashboard.
      data: the `SequenceData` the model trains on (item ids and counts).
      clustering: the run's `IntentClustering`, or None without intents.
      validation: the run's `RankingValidation`, for its seconds, or None.
      log_every: also write the training scalars every this many steps; 0
        writes them once per epoch only.
      histograms: write weight histograms every epoch (costly on big tables).

    Example:
      ```python
      board = ICLRecTensorBoard("runs/toys", config, data, clustering, validation)
      history = model.fit(train_data, callbacks=[clustering, validation, board])
      board.write_results({"best_epoch": 3, "valid": {...}, "test": {...}})
      ```
    """

    def __init__(self, log_dir, config, data, clustering=None, validation=None,
                 log_every=0, histograms=False):
        if isinstance(log_every, bool) or not isinstance(log_every, int) or log_every < 0:
            raise ValueError(f"log_every must be a non-negative integer, got {log_every!r}")
        super().__init__(log_dir=str(log_dir), histogram_freq=int(histograms),
                         write_graph=False, update_freq=log_every or "epoch")
        self.config = config
        self.data = data
        self.clustering = clustering
        self.validation = validation
        self.log_every = log_every

    def _implements_train_batch_hooks(self):
        # tf_keras asks for TensorBoard's batch hooks only to trace or to time
        # steps, so `update_freq=N` alone writes no `batch_` scalars
        # (keras-team/tf-keras#641). Ours time every step and write them.
        return True

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        self._writer = tf.summary.create_file_writer(self.log_dir)
        self._estep_results_seen = 0
        self._steps = 0  # counts like `fit`'s step counter, which restarts at 0
        self._window_steps, self._window_seconds = 0, 0.0
        self._write_hparams()

    def on_epoch_begin(self, epoch, logs=None):
        super().on_epoch_begin(epoch, logs)
        self._epoch_steps, self._epoch_step_seconds = 0, 0.0
        self._epoch_first_step = self._epoch_last_step = None

    def on_train_batch_begin(self, batch, logs=None):
        super().on_train_batch_begin(batch, logs)
        self._step_start = time.perf_counter()
        if self._epoch_first_step is None:
            self._epoch_first_step = self._step_start

    def on_train_batch_end(self, batch, logs=None):
        self._epoch_last_step = time.perf_counter()
        seconds = self._epoch_last_step - self._step_start
        self._epoch_steps += 1
        self._epoch_step_seconds += seconds
        self._window_steps += 1
        self._window_seconds += seconds
        self._steps += 1
        # Keras writes `batch_` scalars on every `log_every`-th step only; on the
        # others it would just evaluate its `record_if` (eager ops, ~2 ms a step
        # on 2 cores), so they skip it. The rate covers the steps since the
        # previous point, and only their time (no E-step or validation).
        if self.log_every and self._steps % self.log_every == 0:
            logs = {**(logs or {}), "learning_rate": self.model.optimizer.learning_rate,
                    "steps_per_second": self._window_steps / self._window_seconds}
            self._window_steps, self._window_seconds = 0, 0.0
            super().on_train_batch_end(batch, logs)

    def on_epoch_end(self, epoch, logs=None):
        # A copy: History and CSVLogger keep only the model's own logs.
        logs = {**(logs or {}), "learning_rate": self.model.optimizer.learning_rate}
        if self._epoch_steps:
            logs["steps_per_second"] = self._epoch_steps / self._epoch_step_seconds
        super().on_epoch_end(epoch, logs)
        scalars = {}
        if self._epoch_first_step is not None:
            scalars["seconds/train"] = self._epoch_last_step - self._epoch_first_step
        if self.clustering is not None and len(self.clustering.results) > self._estep_results_seen:
            self._estep_results_seen = len(self.clustering.results)
            result = self.clustering.results[-1]
            scalars.update({f"intents/{name}": value
                            for name, value in cluster_health(result).items()})
            scalars["seconds/estep"] = result.seconds
        if self.validation is not None and self.validation.seconds:
            scalars["seconds/validation"] = self.validation.seconds[-1]
        self._write_scalars(self._writer, scalars, epoch)

    def on_train_end(self, logs=None):
        super().on_train_end(logs)
        self._writer.close()
        self._write_projector()

    def write_results(self, metrics):
        """Writes the final metrics that the HParams dashboard shows for this run.

        Args:
          metrics: the dict `fit` writes to `metrics.json`: `best_epoch`
            (1-based) and `valid`, `test`, `test_exclude` dicts of
            `{"NDCG@20": value, ...}` (those present are written).
        """
        scalars = {"best_epoch": metrics["best_epoch"]}
        for split, prefix in RESULT_SPLITS.items():
            scalars.update({f"{prefix}/{name}": value
                            for name, value in metrics.get(split, {}).items()})
        writer = tf.summary.create_file_writer(self.log_dir)
        # On the epoch axis of the curves: the best epoch's weights were tested.
        self._write_scalars(writer, scalars, metrics["best_epoch"] - 1)
        writer.close()

    @staticmethod
    def _write_scalars(writer, scalars, step):
        # During `fit`, Keras's own `record_if(step % log_every == 0)` is in force.
        with writer.as_default(), tf.summary.record_if(True):
            for name, value in scalars.items():
                tf.summary.scalar(name, value, step=step)
        writer.flush()

    def _write_hparams(self):
        from tensorboard.plugins.hparams import api as hp

        values = dataclasses.asdict(self.config)
        metrics = [hp.Metric("best_epoch", display_name="best epoch")] + [
            hp.Metric(f"{prefix}/{name}", display_name=f"{prefix.replace('_', ' ')} {name}")
            for prefix in RESULT_SPLITS.values() for name in METRIC_NAMES]
        with self._writer.as_default(), tf.summary.record_if(True):
            hp.hparams_config(hparams=[hp.HParam(name) for name in values], metrics=metrics)
            hp.hparams(values)
        self._writer.flush()

    def _write_projector(self):
        """Item embeddings (id, training count) and prototypes (id, users), as TSV.

        A prototype's users are -1 if no E-step of this `fit` made the centroids.
        """
        from tensorboard.plugins import projector

        folder = pathlib.Path(self.log_dir) / PROJECTOR_DIR
        folder.mkdir(parents=True, exist_ok=True)
        config = projector.ProjectorConfig()
        # Rows 1..max_item: row 0 is padding and max_item + 1 the mask id.
        items = self.model.encoder.embedding_table.numpy()[1:self.data.max_item + 1]
        counts = item_interaction_counts(self.data)[1:]
        metadata = np.stack([np.arange(1, self.data.max_item + 1), counts], axis=1)
        _add_embedding(config, folder, "item_embeddings", items, "item\tinteractions", metadata)
        if self.clustering is not None and self.clustering.results:
            num_clusters = self.model.num_intent_clusters
            prototypes = self.model.prototypes(tf.range(num_clusters)).numpy()
            # EarlyStopping may have restored an earlier epoch's centroids:
            # count the users of the E-step that produced the ones in the model.
            centroids = self.model.intent_centroids.numpy()
            sizes = next((r.cluster_sizes for r in reversed(self.clustering.results)
                          if np.array_equal(r.centroids, centroids)),
                         np.full(num_clusters, -1))
            metadata = np.stack([np.arange(num_clusters), sizes], axis=1)
            _add_embedding(config, folder, "intent_prototypes", prototypes, "intent\tusers",
                           metadata)
        projector.visualize_embeddings(self.log_dir, config)


def _add_embedding(config, folder, name, values, header, metadata):
    with files.atomic_file(folder / f"{name}.tsv") as stream:
        np.savetxt(stream, values, fmt="%.7g", delimiter="\t")
    with files.atomic_file(folder / f"{name}_metadata.tsv") as stream:
        np.savetxt(stream, metadata, fmt="%d", delimiter="\t", header=header, comments="")
    embedding = config.embeddings.add()
    embedding.tensor_name = name
    embedding.tensor_shape.extend(values.shape)
    # Relative to the log directory, so that a run directory can be moved.
    embedding.tensor_path = f"{PROJECTOR_DIR}/{name}.tsv"
    embedding.metadata_path = f"{PROJECTOR_DIR}/{name}_metadata.tsv"

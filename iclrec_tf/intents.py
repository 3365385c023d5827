"""The intent E-step: encode every train input, cluster with MiniBatchKMeans.

Before each epoch (from the warm-up epoch on), `IntentClustering` encodes all
users' un-augmented train inputs in inference mode, mean-pools them, fits K
centroids and hands them to the model through `model.set_centroids`.
"""

import dataclasses
import time

import numpy as np
import tensorflow as tf
import tf_keras as keras
from sklearn.cluster import MiniBatchKMeans

from iclrec_tf.model import sequence_representation


def representation_encoder(model):
    """A traced function: item ids [batch, len] -> mean-pooled encodings [batch, hidden]."""
    return tf.function(lambda ids: sequence_representation(model(ids, training=False)),
                       reduce_retracing=True)


def encode_representations(model, dataset, encoder=None):
    """[num_sequences, hidden] inference-mode mean-pooled encodings of `dataset`.

    Args:
      model: the `ICLRecModel`.
      dataset: batches of item ids.
      encoder: a `representation_encoder(model)` to reuse across calls, so
        that the function is traced once rather than at every E-step.
    """
    encode = encoder or representation_encoder(model)
    return np.concatenate([encode(batch).numpy() for batch in dataset])


@dataclasses.dataclass
class ClusteringResult:
    """One E-step: `centroids` [K, hidden], `labels` [N], `inertia`, `seconds`."""

    centroids: np.ndarray
    labels: np.ndarray
    inertia: float
    seconds: float = 0.0

    @property
    def cluster_sizes(self):
        return np.bincount(self.labels, minlength=len(self.centroids))

    @property
    def non_empty_clusters(self):
        return int(np.count_nonzero(self.cluster_sizes))


def fit_intents(representations, num_clusters, seed):
    """Clusters `representations` [N, hidden] into `num_clusters` intents.

    Raises:
      ValueError: when there are fewer sequences than clusters.
    """
    if num_clusters > len(representations):
        raise ValueError(
            f"--num-intent-clusters ({num_clusters}) exceeds the number of "
            f"sequences ({len(representations)})"
        )
    kmeans = MiniBatchKMeans(n_clusters=num_clusters, random_state=seed, n_init=1,
                             batch_size=4096, max_iter=100)
    labels = kmeans.fit_predict(representations)
    return ClusteringResult(kmeans.cluster_centers_.astype(np.float32), labels,
                            float(kmeans.inertia_))


class IntentClustering(keras.callbacks.Callback):
    """Runs the E-step before every epoch and updates the model's centroids.

    Args:
      dataset: the E-step pipeline (`SequencePipelines.estep`).
      num_clusters: K.
      seed: seeds MiniBatchKMeans.
      warm_up_epochs: epochs to train before the first E-step.
      verbose: 1 prints one line per E-step.

    Attributes:
      results: the `ClusteringResult` of every E-step of the current `fit`.
    """

    def __init__(self, dataset, num_clusters, seed=1, warm_up_epochs=0, verbose=1):
        super().__init__()
        self.dataset = dataset
        self.num_clusters = num_clusters
        self.seed = seed
        self.warm_up_epochs = warm_up_epochs
        self.verbose = verbose
        self.results = []
        self._encoder = None

    def on_train_begin(self, logs=None):
        self.results = []
        self._encoder = representation_encoder(self.model)

    def on_epoch_begin(self, epoch, logs=None):
        if epoch < self.warm_up_epochs:
            return
        start = time.perf_counter()
        representations = encode_representations(self.model, self.dataset, self._encoder)
        result = fit_intents(representations, self.num_clusters, self.seed)
        self.model.set_centroids(result.centroids)
        result.seconds = time.perf_counter() - start
        self.results.append(result)
        if self.verbose:
            print(f"E-step {epoch + 1}: {result.seconds:.1f} s, inertia {result.inertia:.2f}, "
                  f"{result.non_empty_clusters}/{self.num_clusters} clusters non-empty",
                  flush=True)

"""The intent E-step: encode every train input, cluster with k-means.

Before each epoch (from the warm-up epoch on), `IntentClustering` encodes all
users' un-augmented train inputs in inference mode, pools them as the model
does (`ICLRecModel.intent_representation`), fits K centroids (scikit-learn's
`MiniBatchKMeans`, or `KMeans` with restarts, the closest to the reference's
faiss) and hands them to the model through `model.set_centroids`.

Under a multi-replica strategy each replica encodes its shard of the users,
the encodings are gathered, the chief alone fits k-means, and its centroids
are broadcast (an all-reduce of the chief's centroids with the others' zeros),
so every worker trains against the same intents.
"""

import dataclasses
import time

import numpy as np
import tensorflow as tf
import tf_keras as keras
from sklearn.cluster import KMeans, MiniBatchKMeans
from sklearn.metrics import pairwise_distances_argmin_min


def representation_encoder(model):
    """A traced function: item ids [batch, len] -> pooled encodings [batch, hidden]."""
    return tf.function(
        lambda ids: model.intent_representation(model(ids, training=False), ids),
        reduce_retracing=True)


def encode_representations(model, dataset, encoder=None, strategy=None):
    """[num_sequences, hidden] inference-mode pooled encodings of `dataset`.

    Args:
      model: the `ICLRecModel`.
      dataset: batches of item ids.
      encoder: a `representation_encoder(model)` to reuse across calls, so
        that the function is traced once rather than at every E-step.
      strategy: a multi-replica `tf.distribute.Strategy` to shard the encoding
        over (the rows of every replica are gathered), or None.
    """
    encode = encoder or representation_encoder(model)
    if strategy is None or strategy.num_replicas_in_sync == 1:
        return np.concatenate([encode(batch).numpy() for batch in dataset])
    return np.concatenate([
        strategy.gather(strategy.run(encode, (batch,)), axis=0).numpy()
        for batch in strategy.experimental_distribute_dataset(dataset)])


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


def fit_intents(representations, num_clusters, seed, method="minibatch"):
    """Clusters `representations` [N, hidden] into `num_clusters` intents.

    Args:
      representations: [N, hidden] float32.
      num_clusters: K.
      seed: seeds the initialisation (and the mini-batches).
      method: `minibatch` (`MiniBatchKMeans`, batches of 4,096) or `full`
        (`KMeans`, 5 restarts of at most 20 iterations: the reference's faiss
        settings).

    Raises:
      ValueError: when there are fewer sequences than clusters.
    """
    if num_clusters > len(representations):
        raise ValueError(
            f"--num-intent-clusters ({num_clusters}) exceeds the number of "
            f"sequences ({len(representations)})"
        )
    if method == "full":
        kmeans = KMeans(n_clusters=num_clusters, random_state=seed, n_init=5, max_iter=20)
    else:
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
      seed: seeds k-means.
      warm_up_epochs: epochs to train before the first E-step.
      verbose: 1 prints one line per E-step.
      strategy: the training's `tf.distribute.Strategy`, or None.
      is_chief: whether this worker fits k-means (the others receive its centroids).
      method: `minibatch` or `full`, as `fit_intents`.

    Attributes:
      results: the `ClusteringResult` of every E-step of the current `fit`.
    """

    def __init__(self, dataset, num_clusters, seed=1, warm_up_epochs=0, verbose=1,
                 strategy=None, is_chief=True, method="minibatch"):
        super().__init__()
        self.method = method
        self.strategy = strategy
        self.is_chief = is_chief
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
        representations = encode_representations(self.model, self.dataset, self._encoder,
                                                  self.strategy)
        if self._is_multi_worker():
            result = self._fit_on_chief_and_broadcast(representations)
        else:
            result = fit_intents(representations, self.num_clusters, self.seed, self.method)
        self.model.set_centroids(result.centroids)
        result.seconds = time.perf_counter() - start
        self.results.append(result)
        if self.verbose:
            print(f"E-step {epoch + 1}: {result.seconds:.1f} s, inertia {result.inertia:.2f}, "
                  f"{result.non_empty_clusters}/{self.num_clusters} clusters non-empty",
                  flush=True)

    def _is_multi_worker(self):
        return isinstance(self.strategy, tf.distribute.MultiWorkerMirroredStrategy)

    def _fit_on_chief_and_broadcast(self, representations):
        shape = (self.num_clusters, representations.shape[1])
        result = (fit_intents(representations, self.num_clusters, self.seed, self.method)
                  if self.is_chief else None)
        chief_centroids = result.centroids if self.is_chief else np.zeros(shape, np.float32)
        # Replica 0 is the chief's; the others add zeros.
        per_replica = self.strategy.experimental_distribute_values_from_function(
            lambda context: tf.constant(chief_centroids if context.replica_id_in_sync_group == 0
                                        else np.zeros(shape, np.float32)))
        centroids = self.strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica,
                                         axis=None).numpy()
        if result is None:
            labels, distances = pairwise_distances_argmin_min(representations, centroids)
            result = ClusteringResult(centroids, labels, float(np.square(distances).sum()))
        return result

"""The ICLRec Keras model: one `train_step` that adds up its tasks' losses."""

import dataclasses

import tensorflow as tf
import tf_keras as keras

from iclrec_tf.config import VIEW_ENCODINGS
from iclrec_tf.model.encoder import EncoderConfig, SequenceEncoder, encode_by_length
from iclrec_tf.model.pooling import pool
from iclrec_tf.model.replicas import global_sum
from iclrec_tf.model.tasks import SampledNextItemTask, StepOutputs, tasks_for

# Dropout then draws from `tf.random.Generator`s, whose states are variables
# that checkpoints carry: a resumed run continues the same random stream.
keras.backend.experimental.enable_tf_random_generator()



@keras.utils.register_keras_serializable("iclrec_tf")
class ICLRecModel(keras.Model):
    """ICLRec: a sequence encoder trained by a list of loss tasks.

    The total loss is `sum(task.weight * task(outputs))`. With `shared` view
    encodings, the original input and the two augmented views are encoded once
    per step, and that result is shared by every task; with
    `separate` (the reference's way), each contrastive task encodes the two
    views again, with its own dropout. Sharing is an efficiency difference,
    not a different objective.

    Args:
      encoder: a `SequenceEncoder`.
      tasks: list of `Task`s, e.g. `tasks_for(config, item_size)`.
      num_intent_clusters: K, rows of the centroid variable.
      pooling: how a sequence's intent representation pools the encoder's
        output (`iclrec_tf.model.pooling`): `mean` (the reference's) or
        `masked_mean`; in the E-step, in training and in serving.
      view_encodings: `shared` or `separate`.
      group_by_length: in training, encode each user's rows (input and views)
        only as wide as its input (`encode_by_length`); exact for losses that
        read the items' positions only, and most of the encoder's work saved.

    Call arguments:
      item_ids: [batch, len] left-padded item ids.
      training: whether dropout is active.

    Returns:
      [batch, len, hidden] hidden states.
    """

    def __init__(self, encoder, tasks, num_intent_clusters=256, pooling="mean",
                 view_encodings="shared", group_by_length=False, **kwargs):
        super().__init__(**kwargs)
        if view_encodings not in VIEW_ENCODINGS:
            raise ValueError(f"view_encodings must be one of {', '.join(VIEW_ENCODINGS)}, "
                             f"got {view_encodings!r}")
        self.encoder = encoder
        self.tasks = list(tasks)
        self.num_intent_clusters = num_intent_clusters
        self.pooling = pooling
        self.view_encodings = view_encodings
        self.group_by_length = group_by_length
        self._needs_views = any(task.needs_views for task in self.tasks)
        self._needs_intents = any(task.needs_intents for task in self.tasks)
        self.intent_centroids = self.add_weight(
            name="intent_centroids",
            shape=(num_intent_clusters, encoder.encoder_config.hidden_size),
            initializer="zeros", trainable=False)
        self.intents_ready = self.add_weight(
            name="intents_ready", shape=(), dtype=tf.bool, initializer="zeros",
            trainable=False)
        self._trackers = [keras.metrics.Mean("loss")] + [
            keras.metrics.Mean(task.name) for task in self.tasks]

    @property
    def metrics(self):
        return self._trackers

    def call(self, item_ids, training=None):
        return self.encoder(item_ids, training=training)

    def last_hidden(self, item_ids):
        """[batch, hidden] inference-mode hidden state at the last position."""
        return self.encoder(item_ids, training=False, last_position_only=True)[:, -1, :]

    def score_items(self, item_ids):
        """[batch, item_size] `h_last . E^T` for every id, padding and mask included."""
        return tf.matmul(self.last_hidden(item_ids), self.encoder.embedding_table,
                         transpose_b=True)

    def set_centroids(self, centroids):
        """Replaces the intent centroids ([K, hidden]) and marks intents ready."""
        self.intent_centroids.assign(tf.convert_to_tensor(centroids, tf.float32))
        self.intents_ready.assign(True)

    def intent_distances(self, representations):
        """[batch, K] squared L2 distances to the centroids, less the constant `||r||^2`."""
        centroids = self.intent_centroids
        return (tf.reduce_sum(tf.square(centroids), axis=1)[None, :]
                - 2.0 * tf.matmul(representations, centroids, transpose_b=True))

    def assign_intents(self, representations):
        """[batch] index of the centroid nearest (L2) to each representation."""
        return tf.argmin(self.intent_distances(representations), axis=1, output_type=tf.int32)

    def prototypes(self, intent_ids):
        """[batch, hidden] the L2-normalised centroids of `intent_ids`."""
        return tf.gather(tf.math.l2_normalize(self.intent_centroids, axis=1), intent_ids)

    def task_losses(self, batch, training=True):
        """Encodes the batch once and returns `{task.name: loss}`.

        Args:
          batch: the training pipeline's dict.
          training: whether dropout is active.
        """
        shared_views = self._needs_views and self.view_encodings == "shared"
        inputs = [batch["input_ids"]]
        if shared_views:
            inputs += [batch["view_1"], batch["view_2"]]
        sequence_output, *view_outputs = self._encode(inputs, batch["input_ids"], training)
        outputs = StepOutputs(batch=batch, sequence_output=sequence_output,
                              item_embeddings=self.encoder.embedding_table,
                              view_outputs=tuple(view_outputs) or None,
                              intents_ready=self.intents_ready.read_value())
        if self._needs_intents:
            # The intent is a label, not a path for gradients.
            representation = tf.stop_gradient(
                self.intent_representation(sequence_output, batch["input_ids"]))
            outputs.intent_ids = self.assign_intents(representation)
            outputs.prototypes = self.prototypes(outputs.intent_ids)
        return {task.name: task(outputs if shared_views or not task.needs_views else
                                dataclasses.replace(outputs, view_outputs=self._encode_views(
                                    batch, training)))
                for task in self.tasks}

    def _encode_views(self, batch, training):
        """The two views encoded once more, with fresh dropout: [batch, len, hidden] x 2."""
        return tuple(self._encode([batch["view_1"], batch["view_2"]], batch["input_ids"],
                                  training))

    def _encode(self, parts, input_ids, training):
        """Encodes each of `parts` (the user's input, views): [batch, len, hidden] each.

        Padded, each part is its own encoder pass: on a 2-core AVX2 CPU a step of
        three passes of 256 sequences took 8-24% less time than one pass of 768,
        whose activations fit the cache worse (docs/BENCHMARKS.md). Grouped by length, the parts
        are stacked, so that rows of one width share a pass whatever part they
        are from. Each row is encoded as wide as its input needs (an augmented
        view is never longer: its masked items are zeros, but sit inside that
        width), or as the row itself needs if more (another prefix as a view).
        """
        if not self.group_by_length:
            return [self.encoder(part, training=training) for part in parts]

        def length(ids):
            return tf.shape(ids)[1] - tf.argmax(tf.cast(ids > 0, tf.int32), axis=1,
                                                output_type=tf.int32)

        lengths = [tf.maximum(length(input_ids), length(part)) for part in parts]
        hidden = encode_by_length(self.encoder, tf.concat(parts, axis=0),
                                  tf.concat(lengths, axis=0), training=training)
        return tf.split(hidden, len(parts), axis=0)

    def intent_representation(self, hidden, item_ids):
        """[batch, hidden] what intents are computed from: `hidden` pooled by `pooling`."""
        return pool(hidden, item_ids, self.pooling)

    def train_step(self, data):
        # Under a strategy, each replica's losses are its share of the global
        # batch's (see `iclrec_tf.model.replicas`); the optimizer sums the gradients.
        batch, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        with tf.GradientTape() as tape:
            losses = self.task_losses(batch, training=True)
            total = tf.add_n([task.weight * losses[task.name] for task in self.tasks])
            if self.losses:
                # What layers add (a regulariser, `add_loss`), as tfrs.Model adds it;
                # scaled so that the replicas' shares add up to it once.
                total += tf.nn.scale_regularization_loss(tf.add_n(self.losses))
        variables = self.trainable_variables
        gradients = tape.gradient(total, variables)
        self.optimizer.apply_gradients(zip(gradients, variables, strict=True))
        self._trackers[0].update_state(global_sum(total))
        for tracker, task in zip(self._trackers[1:], self.tasks, strict=True):
            tracker.update_state(global_sum(losses[task.name]))
        return {tracker.name: tracker.result() for tracker in self._trackers}

    def get_config(self):
        return {
            "encoder": keras.layers.serialize(self.encoder),
            "tasks": [keras.layers.serialize(task) for task in self.tasks],
            "num_intent_clusters": self.num_intent_clusters,
            "pooling": self.pooling,
            "view_encodings": self.view_encodings,
            "group_by_length": self.group_by_length,
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        encoder = keras.layers.deserialize(config.pop("encoder"), custom_objects)
        tasks = [keras.layers.deserialize(t, custom_objects) for t in config.pop("tasks")]
        return cls(encoder, tasks, **config)


def build_model(config, item_size, target_counts=None):
    """An `ICLRecModel` for a `TrainConfig`, its variables created.

    Args:
      config: the `TrainConfig`.
      item_size: the vocabulary size.
      target_counts: [item_size] how often each id is a training target, for
        the sampled softmax's logQ correction; None where the model is only
        evaluated or exported (the checkpoint holds them).
    """
    encoder = SequenceEncoder(EncoderConfig.from_train_config(config, item_size),
                              name="encoder")
    model = ICLRecModel(encoder, tasks_for(config, item_size),
                        num_intent_clusters=config.num_intent_clusters,
                        pooling=config.pooling, view_encodings=config.view_encodings,
                        group_by_length=config.length_buckets, name="iclrec")
    model(tf.zeros((1, config.max_seq_length), tf.int32))
    if target_counts is not None:
        for task in model.tasks:
            if isinstance(task, SampledNextItemTask):
                task.set_target_frequencies(target_counts)
    return model

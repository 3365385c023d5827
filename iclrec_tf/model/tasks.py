"""The ICLRec losses as small composable tasks.

A task is a layer that turns one training step's `StepOutputs` into a scalar
loss. `ICLRecModel` adds up `task.weight * task(outputs)` over the tasks it was
built with, so a model variant (plain SASRec, instance-only, intent-only,
hybrid; BCE, full-softmax or sampled-softmax next-item loss) is a different
list of tasks, not a branch in the training step.

- next item: `NextItemTask` (the paper's BCE with one negative),
  `SoftmaxNextItemTask` (cross entropy over every item id),
  `SampledNextItemTask` (sampled softmax through `tfrs.tasks.Retrieval`);
- `InstanceContrastTask` (SeqCL) and `IntentContrastTask` (ICL).
"""

import dataclasses

import numpy as np
import tensorflow as tf
import tensorflow_recommenders as tfrs
import tf_keras as keras

from iclrec_tf.model.pooling import pool
from iclrec_tf.model.replicas import global_sum, replica_rows
from iclrec_tf.model.softmax import DEFAULT_MAX_LOGITS, softmax_cross_entropy_sum


@dataclasses.dataclass
class StepOutputs:
    """What one training step computed, handed to every task.

    Attributes:
      batch: the pipeline's dict (`target_pos`, `target_neg`, ... [batch, len]).
      sequence_output: [batch, len, hidden] encoder output of the original input.
      view_outputs: two [batch, len, hidden] outputs of the augmented views, or
        None when no task needs them.
      item_embeddings: [item_size, hidden] the shared item embedding table.
      intent_ids: [batch] intent of each sequence, or None without intents.
      prototypes: [batch, hidden] L2-normalised centroid of each intent, or None.
      intents_ready: scalar bool, False until the first E-step has run.
    """

    batch: dict
    sequence_output: tf.Tensor
    item_embeddings: tf.Tensor
    view_outputs: tuple | None = None
    intent_ids: tf.Tensor | None = None
    prototypes: tf.Tensor | None = None
    intents_ready: tf.Tensor | None = None


def contrastive_loss(anchors, positives, temperature=1.0, false_negative_ids=()):
    """InfoNCE over both directions of a batch of pairs (the reference's NCELoss).

    With A = `anchors` and B = `positives` ([n, dim] each), the 2n rows of logits
    are `[A.B^T | A.A^T]` over `[B.B^T | B.A^T]` (divided by `temperature`),
    the diagonals of A.A^T and B.B^T set to -inf, and row i's label is i.

    Under a strategy with several replicas, each passes its own rows: the
    candidates of its rows come from the whole global batch, and it returns its
    rows' share of the global mean, so that the replicas' losses add up to the
    loss of the global batch on one device.

    Args:
      anchors: [n, dim].
      positives: [n, dim]; row i is the positive of anchor i.
      temperature: divides every dot product.
      false_negative_ids: [n] id vectors (intents, next items) for
        false-negative mitigation: a candidate that shares any of them with the
        anchor is removed from the negatives (logit -inf), except the positive
        itself.

    Returns:
      Scalar: the summed cross entropy of this replica's rows over the 2n rows
      of the global batch (the mean cross entropy, on one replica).
    """
    all_anchors, offset = replica_rows(anchors)
    all_positives, _ = replica_rows(positives)
    num_rows = tf.shape(all_anchors)[0]
    rows = offset + tf.range(tf.shape(anchors)[0])  # global index of each own row
    sim_ab = tf.matmul(anchors, all_positives, transpose_b=True) / temperature
    sim_aa = tf.matmul(anchors, all_anchors, transpose_b=True) / temperature
    sim_bb = tf.matmul(positives, all_positives, transpose_b=True) / temperature
    if all_anchors is anchors:  # one replica: B.A^T is (A.B^T)^T, no second matmul
        sim_ba = tf.transpose(sim_ab)
    else:
        sim_ba = tf.matmul(positives, all_anchors, transpose_b=True) / temperature
    own = tf.cast(tf.one_hot(rows, num_rows, dtype=tf.int8), tf.bool)
    shared = tf.zeros_like(own)
    for ids in false_negative_ids:
        all_ids, _ = replica_rows(ids)
        shared |= tf.equal(ids[:, None], all_ids[None, :])
    same_block, cross_block = shared | own, shared & ~own
    negative_infinity = tf.fill(tf.shape(sim_ab), float("-inf"))
    sim_aa = tf.where(same_block, negative_infinity, sim_aa)
    sim_bb = tf.where(same_block, negative_infinity, sim_bb)
    sim_ab = tf.where(cross_block, negative_infinity, sim_ab)
    sim_ba = tf.where(cross_block, negative_infinity, sim_ba)
    logits = tf.concat([tf.concat([sim_ab, sim_aa], axis=1),
                        tf.concat([sim_bb, sim_ba], axis=1)], axis=0)
    labels = tf.concat([rows, num_rows + rows], axis=0)
    cross_entropy = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
    return tf.reduce_sum(cross_entropy) / tf.cast(2 * num_rows, cross_entropy.dtype)


class Task(keras.layers.Layer):
    """Base of a loss task.

    Args:
      weight: multiplies the task's loss in the total.
      **kwargs: Keras layer arguments; `name` is the loss's name in logs
        (`rec_loss`, ...).

    Subclasses set `needs_views` / `needs_intents` and implement `call(outputs)`.
    """

    needs_views = False
    needs_intents = False

    def __init__(self, weight=1.0, **kwargs):
        super().__init__(**kwargs)
        self.weight = weight

    def get_config(self):
        return {**super().get_config(), "weight": self.weight}


@keras.utils.register_keras_serializable("iclrec_tf")
class NextItemTask(Task):
    """Next-item binary cross entropy with one sampled negative per position.

    `-log sigmoid(h_t . e_pos) - log(1 - sigmoid(h_t . e_neg))`, averaged over
    positions whose target is not padding. Computed as softplus, which equals
    the reference's `log(sigmoid + 1e-24)` form except where that one saturates.
    """

    def __init__(self, weight=1.0, name="rec_loss", **kwargs):
        super().__init__(weight=weight, name=name, **kwargs)

    def call(self, outputs):
        hidden = outputs.sequence_output  # (B, L, D)
        positive = tf.gather(outputs.item_embeddings, outputs.batch["target_pos"])
        negative = tf.gather(outputs.item_embeddings, outputs.batch["target_neg"])
        positive_logits = tf.reduce_sum(hidden * positive, axis=-1)  # (B, L)
        negative_logits = tf.reduce_sum(hidden * negative, axis=-1)
        is_target = tf.cast(outputs.batch["target_pos"] > 0, hidden.dtype)
        per_position = tf.nn.softplus(-positive_logits) + tf.nn.softplus(negative_logits)
        # Over the global batch's targets, so that replicas add up to one device.
        return tf.reduce_sum(per_position * is_target) / global_sum(tf.reduce_sum(is_target))


def target_positions(outputs):
    """The real next-item targets of a step: `(hidden [n, dim], item ids [n])`.

    Gathered first, so that the logits are `[n, items]`, never `[batch, len, items]`.
    """
    targets = outputs.batch["target_pos"]
    is_target = targets > 0
    return (tf.boolean_mask(outputs.sequence_output, is_target),
            tf.boolean_mask(targets, is_target))


@keras.utils.register_keras_serializable("iclrec_tf")
class SoftmaxNextItemTask(Task):
    """Next-item cross entropy over every item id, at every real target position.

    The padding id 0 and the mask id (the last id) are never candidates. The
    mean is over the global batch's targets. Past `max_logits` logits, rows are
    chunked (`iclrec_tf.model.softmax`), so a catalogue of a million items
    trains in bounded memory.

    Args:
      weight: multiplies the loss in the total.
      max_logits: the most logits held at once.
    """

    def __init__(self, weight=1.0, max_logits=DEFAULT_MAX_LOGITS, name="rec_loss",
                 **kwargs):
        super().__init__(weight=weight, name=name, **kwargs)
        self.max_logits = max_logits

    def call(self, outputs):
        hidden, targets = target_positions(outputs)
        table = outputs.item_embeddings
        total = softmax_cross_entropy_sum(hidden, targets, table,
                                          excluded_ids=(0, table.shape[0] - 1),
                                          max_logits=self.max_logits)
        count = global_sum(tf.cast(tf.size(targets), total.dtype))
        return total / tf.maximum(count, 1.0)

    def get_config(self):
        return {**super().get_config(), "max_logits": self.max_logits}


@keras.utils.register_keras_serializable("iclrec_tf")
class SampledNextItemTask(Task):
    """Sampled-softmax next-item loss: `tfrs.tasks.Retrieval` over a few candidates.

    The candidates of a step are its own target items (each query's positive,
    and the others' as in-batch negatives) and `batch["sampled_items"]`, ids
    drawn uniformly by the pipeline. The logits are corrected by the log of
    each candidate's probability to be among them (logQ), and a candidate
    equal to the query's positive is removed from its negatives
    (`remove_accidental_hits`). What catalogues too large for a full softmax
    need.

    Args:
      item_size: the vocabulary size; ids 1..item_size-2 are items.
      num_negatives: uniform samples per step (the pipeline draws them).
      weight: multiplies the loss in the total.

    Attributes:
      target_frequencies: [item_size] non-trainable, each id's share of the
        training targets (`set_target_frequencies`); zeros until set.
    """

    def __init__(self, item_size, num_negatives=256, weight=1.0, name="rec_loss", **kwargs):
        super().__init__(weight=weight, name=name, **kwargs)
        self.item_size = item_size
        self.num_negatives = num_negatives
        loss = keras.losses.CategoricalCrossentropy(from_logits=True,
                                                    reduction=keras.losses.Reduction.SUM)
        self.retrieval = tfrs.tasks.Retrieval(loss=loss, remove_accidental_hits=True)
        self.target_frequencies = self.add_weight(
            name="target_frequencies", shape=(item_size,), initializer="zeros",
            trainable=False)

    def set_target_frequencies(self, counts):
        """Sets the frequencies from `counts` [item_size] of each id among the targets."""
        counts = np.asarray(counts, np.float64)
        self.target_frequencies.assign((counts / max(counts.sum(), 1.0)).astype(np.float32))

    def candidate_probabilities(self, candidate_ids, num_targets):
        """Each candidate's chance to be drawn, up to a constant factor.

        The step draws `num_targets` ids from the target frequencies (its own
        targets) and `num_negatives` uniformly: the expected count of id j is
        `n f(j) + m / items`. Scaled so that the largest is 1 (the correction is
        a shift of each row, so any factor will do), within `Retrieval`'s
        clipping to [1e-6, 1].
        """
        uniform = self.num_negatives / (self.item_size - 2)
        expected = (tf.cast(num_targets, tf.float32)
                    * tf.gather(self.target_frequencies, candidate_ids) + uniform)
        return expected / tf.reduce_max(expected)

    def call(self, outputs):
        queries, positives = target_positions(outputs)
        candidate_ids = tf.concat([tf.cast(positives, tf.int32),
                                   tf.cast(outputs.batch["sampled_items"], tf.int32)], axis=0)
        candidates = tf.gather(outputs.item_embeddings, candidate_ids)
        total = self.retrieval(
            queries, candidates, compute_metrics=False, compute_batch_metrics=False,
            candidate_ids=candidate_ids,
            candidate_sampling_probability=self.candidate_probabilities(
                candidate_ids, tf.size(positives)))
        count = global_sum(tf.cast(tf.size(positives), total.dtype))
        return total / tf.maximum(count, 1.0)

    def get_config(self):
        return {**super().get_config(), "item_size": self.item_size,
                "num_negatives": self.num_negatives}


def view_representations(outputs, method, normalize):
    """The two augmented views of a step as `pool(..., method)`, L2-normalised if asked."""
    views = [pool(view, outputs.batch[name], method)
             for view, name in zip(outputs.view_outputs, ("view_1", "view_2"), strict=True)]
    return [tf.math.l2_normalize(view, axis=1) for view in views] if normalize else views


class ContrastTask(Task):
    """Base of the contrastive tasks: temperature, FNM, and how a view is represented.

    Args:
      weight: multiplies the loss in the total.
      temperature: of `contrastive_loss`.
      fnm: false-negative mitigation with the sequences' intents.
      representation: how a view becomes one vector (`iclrec_tf.model.pooling`).
      normalize: L2-normalise the view representations (cosine similarities).
    """

    needs_views = True

    def __init__(self, weight, temperature=1.0, fnm=False, representation="mean",
                 normalize=False, **kwargs):
        super().__init__(weight=weight, **kwargs)
        self.temperature = temperature
        self.fnm = fnm
        self.representation = representation
        self.normalize = normalize

    def get_config(self):
        return {**super().get_config(), "temperature": self.temperature, "fnm": self.fnm,
                "representation": self.representation, "normalize": self.normalize}


@keras.utils.register_keras_serializable("iclrec_tf")
class InstanceContrastTask(ContrastTask):
    """SeqCL: the two views of a sequence are positives, the batch's others negatives.

    Args:
      weight: beta (`cf_weight` in the reference), 0.1 by default.
      representation: `flatten` (the reference's: [len * hidden]), `masked_mean`
        or `last`.
      mask_same_target: the batch's other samples with the same next item
        (`target_pos[:, -1]`) are not negatives: for same-target views, where
        they are positives too (ICSRec's false-negative mask).
      temperature: as `ContrastTask`'s.
      fnm: as `ContrastTask`'s.
      normalize: as `ContrastTask`'s.
    """

    def __init__(self, weight=0.1, temperature=1.0, fnm=False, representation="flatten",
                 normalize=False, mask_same_target=False, name="seqcl_loss", **kwargs):
        super().__init__(weight, temperature, fnm, representation, normalize, name=name,
                         **kwargs)
        self.needs_intents = fnm
        self.mask_same_target = mask_same_target

    def call(self, outputs):
        view_1, view_2 = view_representations(outputs, self.representation, self.normalize)
        false_negative_ids = _fnm_ids(self, outputs)
        if self.mask_same_target:
            false_negative_ids += (outputs.batch["target_pos"][:, -1],)
        return contrastive_loss(view_1, view_2, self.temperature, false_negative_ids)

    def get_config(self):
        return {**super().get_config(), "mask_same_target": self.mask_same_target}


@keras.utils.register_keras_serializable("iclrec_tf")
class IntentContrastTask(ContrastTask):
    """ICL: each pooled view is pulled to its sequence's intent prototype.

    The loss is the mean of `contrastive_loss(view_1, prototypes)` and
    `contrastive_loss(view_2, prototypes)`; it is 0 until the first E-step.

    Args:
      weight: lambda (`intent_cf_weight` in the reference), 0.1 by default.
      representation: the pooling of a view, as the intents': `mean` (the
        reference's) or `masked_mean`.
      temperature: as `ContrastTask`'s.
      fnm: as `ContrastTask`'s.
      normalize: as `ContrastTask`'s.
    """

    needs_intents = True

    def __init__(self, weight=0.1, temperature=1.0, fnm=False, representation="mean",
                 normalize=False, name="icl_loss", **kwargs):
        super().__init__(weight, temperature, fnm, representation, normalize, name=name,
                         **kwargs)

    def call(self, outputs):
        false_negative_ids = _fnm_ids(self, outputs)
        losses = [contrastive_loss(view, outputs.prototypes, self.temperature, false_negative_ids)
                  for view in view_representations(outputs, self.representation,
                                                   self.normalize)]
        ready = tf.cast(outputs.intents_ready, losses[0].dtype)
        return ready * (losses[0] + losses[1]) / 2.0


def _fnm_ids(task, outputs):
    """The intent ids FNM masks with, as a tuple for `contrastive_loss`: empty with
    FNM off; before the first E-step, an id of each sequence's own."""
    if not task.fnm:
        return ()
    # Before the first E-step every sequence would share intent 0; give each its
    # own id (unique in the global batch) so that nothing but the usual diagonal
    # is masked.
    _, offset = replica_rows(outputs.intent_ids)
    rows = offset + tf.range(tf.shape(outputs.intent_ids)[0])
    own_ids = -1 - tf.cast(rows, outputs.intent_ids.dtype)
    return (tf.where(outputs.intents_ready, outputs.intent_ids, own_ids),)


def tasks_for(config, item_size):
    """The task list of a `TrainConfig`'s model variant.

    Args:
      config: the `TrainConfig`: `next_item_loss` picks the first task;
        `contrast_type` the contrastive ones (`hybrid`: SeqCL + ICL, the
        paper's ICLRec; `intent`; `instance`; `none`: plain SASRec), with their
        weights, temperature, FNM, representations and normalisation.
      item_size: the vocabulary size.

    Returns:
      A list of `Task`s, the next-item task first.
    """
    if config.next_item_loss == "softmax":
        tasks = [SoftmaxNextItemTask()]
    elif config.next_item_loss == "sampled":
        tasks = [SampledNextItemTask(item_size, config.num_negatives)]
    else:
        tasks = [NextItemTask()]
    contrast = {"temperature": config.temperature, "fnm": config.fnm,
                "normalize": config.normalize_views}
    if config.uses_instance_contrast:
        tasks.append(InstanceContrastTask(
            config.seqcl_weight, representation=config.seqcl_representation,
            mask_same_target=config.contrast_views == "same_target", **contrast))
    if config.contrast_type in ("hybrid", "intent"):
        tasks.append(IntentContrastTask(config.icl_weight, representation=config.pooling,
                                        **contrast))
    return tasks

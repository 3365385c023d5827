"""The three ICLRec losses as small composable tasks.

A task is a layer that turns one training step's `StepOutputs` into a scalar
loss. `ICLRecModel` adds up `task.weight * task(outputs)` over the tasks it was
built with, so a model variant (plain SASRec, instance-only, intent-only,
hybrid) is a different list of tasks, not a branch in the training step.
"""

import dataclasses

import tensorflow as tf
import tf_keras as keras

from iclrec_tf.model.replicas import global_sum, replica_rows


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


def contrastive_loss(anchors, positives, temperature=1.0, intent_ids=None):
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
      intent_ids: [n] bool-maskable ids for false-negative mitigation, or None.
        Where given, a candidate with the anchor's intent is removed from the
        negatives (logit -inf), except the positive itself.

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
    if intent_ids is None:
        same_block, cross_block = own, tf.zeros_like(own)
    else:
        all_intent_ids, _ = replica_rows(intent_ids)
        same_intent = tf.equal(intent_ids[:, None], all_intent_ids[None, :])
        same_block = same_intent | own
        cross_block = same_intent & ~own
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
      name: the loss's name in logs (`rec_loss`, ...).

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


@keras.utils.register_keras_serializable("iclrec_tf")
class InstanceContrastTask(Task):
    """SeqCL: the two views of a sequence, flattened to [len * hidden], are positives.

    Args:
      weight: beta (`cf_weight` in the reference), 0.1 by default.
      temperature: of `contrastive_loss`.
      fnm: false-negative mitigation with the sequences' intents.
    """

    needs_views = True

    def __init__(self, weight=0.1, temperature=1.0, fnm=False, name="seqcl_loss",
                 **kwargs):
        super().__init__(weight=weight, name=name, **kwargs)
        self.temperature = temperature
        self.fnm = fnm
        self.needs_intents = fnm

    def call(self, outputs):
        view_1, view_2 = outputs.view_outputs
        flat_1 = tf.reshape(view_1, (tf.shape(view_1)[0], -1))  # (B, L*D)
        flat_2 = tf.reshape(view_2, (tf.shape(view_2)[0], -1))
        return contrastive_loss(flat_1, flat_2, self.temperature, _fnm_ids(self, outputs))

    def get_config(self):
        return {**super().get_config(), "temperature": self.temperature, "fnm": self.fnm}


@keras.utils.register_keras_serializable("iclrec_tf")
class IntentContrastTask(Task):
    """ICL: each mean-pooled view is pulled to its sequence's intent prototype.

    The loss is the mean of `contrastive_loss(view_1, prototypes)` and
    `contrastive_loss(view_2, prototypes)`; it is 0 until the first E-step.

    Args:
      weight: lambda (`intent_cf_weight` in the reference), 0.1 by default.
      temperature: of `contrastive_loss`.
      fnm: false-negative mitigation with the sequences' intents.
    """

    needs_views = True
    needs_intents = True

    def __init__(self, weight=0.1, temperature=1.0, fnm=False, name="icl_loss", **kwargs):
        super().__init__(weight=weight, name=name, **kwargs)
        self.temperature = temperature
        self.fnm = fnm

    def call(self, outputs):
        intent_ids = _fnm_ids(self, outputs)
        losses = [
            contrastive_loss(tf.reduce_mean(view, axis=1), outputs.prototypes,
                             self.temperature, intent_ids)
            for view in outputs.view_outputs
        ]
        ready = tf.cast(outputs.intents_ready, losses[0].dtype)
        return ready * (losses[0] + losses[1]) / 2.0

    def get_config(self):
        return {**super().get_config(), "temperature": self.temperature, "fnm": self.fnm}


def _fnm_ids(task, outputs):
    """The intent ids FNM should mask with, or None (FNM off, or no intents yet)."""
    if not task.fnm:
        return None
    # Before the first E-step every sequence would share intent 0; give each its
    # own id (unique in the global batch) so that nothing but the usual diagonal
    # is masked.
    _, offset = replica_rows(outputs.intent_ids)
    rows = offset + tf.range(tf.shape(outputs.intent_ids)[0])
    own_ids = -1 - tf.cast(rows, outputs.intent_ids.dtype)
    return tf.where(outputs.intents_ready, outputs.intent_ids, own_ids)


def tasks_for(contrast_type, seqcl_weight=0.1, icl_weight=0.1, temperature=1.0, fnm=False):
    """The task list of a model variant.

    Args:
      contrast_type: `hybrid` (SeqCL + ICL, the paper's ICLRec), `intent`,
        `instance`, or `none` (plain SASRec).
      seqcl_weight: beta.
      icl_weight: lambda.
      temperature: of both contrastive tasks.
      fnm: false-negative mitigation in both contrastive tasks.

    Returns:
      A list of `Task`s, the next-item task first.
    """
    tasks = [NextItemTask()]
    if contrast_type in ("hybrid", "instance"):
        tasks.append(InstanceContrastTask(seqcl_weight, temperature, fnm))
    if contrast_type in ("hybrid", "intent"):
        tasks.append(IntentContrastTask(icl_weight, temperature, fnm))
    return tasks

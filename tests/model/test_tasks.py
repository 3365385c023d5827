import math

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from iclrec_tf.config import TrainConfig
from iclrec_tf.model.tasks import (
    InstanceContrastTask,
    IntentContrastTask,
    NextItemTask,
    SampledNextItemTask,
    SoftmaxNextItemTask,
    StepOutputs,
    contrastive_loss,
    tasks_for,
)

RNG = np.random.default_rng(0)


def _numpy_nce(a, b, temperature=1.0, intents=None, targets=None):
    """Row by row, as REFERENCE.md states the instance contrast; a candidate that
    shares the anchor's intent or target is no negative."""
    n = len(a)
    groups = [g for g in (intents, targets) if g is not None]
    shares = [[any(g[i] == g[j] for g in groups) for j in range(n)] for i in range(n)]
    rows, labels = [], []
    for i in range(n):  # anchors from A: candidates B then A
        row = [a[i] @ b[j] / temperature for j in range(n)] + \
              [a[i] @ a[j] / temperature for j in range(n)]
        for j in range(n):
            if j == i or shares[i][j]:
                row[n + j] = -np.inf
            if j != i and shares[i][j]:
                row[j] = -np.inf
        rows.append(row)
        labels.append(i)
    for i in range(n):  # anchors from B: candidates B then A
        row = [b[i] @ b[j] / temperature for j in range(n)] + \
              [b[i] @ a[j] / temperature for j in range(n)]
        for j in range(n):
            if j == i or shares[i][j]:
                row[j] = -np.inf
            if j != i and shares[i][j]:
                row[n + j] = -np.inf
        rows.append(row)
        labels.append(n + i)
    losses = []
    for row, label in zip(rows, labels, strict=True):
        row = np.asarray(row)
        top = row[np.isfinite(row)].max()
        losses.append(-(row[label] - top - np.log(np.exp(row - top).sum())))
    return float(np.mean(losses))


def test_contrastive_loss_worked_by_hand():
    identity = tf.eye(2)
    # row 0: logits [1, 0 | -inf, 0], label 0 -> log(e + 2) - 1; all four rows alike
    assert float(contrastive_loss(identity, identity)) == pytest.approx(math.log(math.e + 2) - 1)
    # FNM with one shared intent: every candidate but the positive is removed -> 0
    shared_intent = [tf.constant([3, 3])]
    assert float(contrastive_loss(identity, identity, false_negative_ids=shared_intent)) == \
        pytest.approx(0.0, abs=1e-7)


@pytest.mark.parametrize("intents", [None, [0, 1, 0, 2, 1, 0]])
@pytest.mark.parametrize("temperature", [1.0, 0.5])
def test_contrastive_loss_matches_numpy(intents, temperature):
    a, b = RNG.standard_normal((6, 5)), RNG.standard_normal((6, 5))
    ours = contrastive_loss(tf.constant(a, tf.float32), tf.constant(b, tf.float32), temperature,
                            () if intents is None else [tf.constant(intents)])
    assert float(ours) == pytest.approx(_numpy_nce(a, b, temperature, intents), rel=1e-5)


def _outputs(batch=4, length=5, hidden=3, item_size=9, ready=True, intent_ids=(0, 1, 0, 2)):
    sequence = RNG.standard_normal((batch, length, hidden)).astype(np.float32)
    views = tuple(RNG.standard_normal((batch, length, hidden)).astype(np.float32)
                  for _ in range(2))
    table = RNG.standard_normal((item_size, hidden)).astype(np.float32)
    target_pos = RNG.integers(1, item_size, (batch, length)).astype(np.int32)
    target_pos[:, :2] = 0
    target_pos[0, :4] = 0
    target_neg = np.where(target_pos > 0, RNG.integers(1, item_size, (batch, length)), 0)
    prototypes = RNG.standard_normal((batch, hidden)).astype(np.float32)
    return StepOutputs(
        batch={"target_pos": tf.constant(target_pos), "target_neg": tf.constant(target_neg),
               # views without padding: every representation reads every position
               "view_1": tf.ones((batch, length), tf.int32),
               "view_2": tf.ones((batch, length), tf.int32)},
        sequence_output=tf.constant(sequence), item_embeddings=tf.constant(table),
        view_outputs=tuple(tf.constant(v) for v in views),
        intent_ids=tf.constant(intent_ids, tf.int32), prototypes=tf.constant(prototypes),
        intents_ready=tf.constant(ready))


def test_next_item_loss_matches_the_reference_formula():
    outputs = _outputs()
    h = outputs.sequence_output.numpy()
    table = outputs.item_embeddings.numpy()
    pos, neg = outputs.batch["target_pos"].numpy(), outputs.batch["target_neg"].numpy()

    def sigmoid(x):
        return 1 / (1 + np.exp(-x))

    pos_logits = (h * table[pos]).sum(-1)
    neg_logits = (h * table[neg]).sum(-1)
    is_target = pos > 0
    per_position = -np.log(sigmoid(pos_logits) + 1e-24) - np.log(1 - sigmoid(neg_logits) + 1e-24)
    expected = (per_position * is_target).sum() / is_target.sum()
    assert float(NextItemTask()(outputs)) == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("fnm", [False, True])
def test_instance_contrast_flattens_the_views(fnm):
    outputs = _outputs()
    a, b = (v.numpy().reshape(4, -1) for v in outputs.view_outputs)
    expected = _numpy_nce(a, b, intents=[0, 1, 0, 2] if fnm else None)
    assert float(InstanceContrastTask(fnm=fnm)(outputs)) == pytest.approx(expected, rel=1e-5)


def test_contrastive_loss_masks_candidates_sharing_any_id():
    a, b = RNG.standard_normal((6, 5)), RNG.standard_normal((6, 5))
    intents, targets = [0, 1, 0, 2, 1, 3], [7, 8, 9, 9, 5, 6]
    ours = contrastive_loss(tf.constant(a, tf.float32), tf.constant(b, tf.float32), 0.5,
                            [tf.constant(intents), tf.constant(targets)])
    expected = _numpy_nce(a, b, 0.5, intents, targets)
    assert float(ours) == pytest.approx(expected, rel=1e-5)
    assert expected != pytest.approx(_numpy_nce(a, b, 0.5, intents), rel=1e-3)


@pytest.mark.parametrize("fnm", [False, True])
def test_same_target_views_are_no_negatives_of_each_other(fnm):
    outputs = _outputs()
    targets = [4, 4, 6, 2]  # the first two samples share their next item
    outputs.batch["target_pos"] = tf.constant([[0, 0, 0, 0, t] for t in targets])
    a, b = (v.numpy().reshape(4, -1) for v in outputs.view_outputs)
    expected = _numpy_nce(a, b, intents=[0, 1, 0, 2] if fnm else None, targets=targets)
    task = InstanceContrastTask(fnm=fnm, mask_same_target=True)
    assert float(task(outputs)) == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("fnm", [False, True])
def test_intent_contrast_averages_both_views_against_prototypes(fnm):
    outputs = _outputs()
    prototypes = outputs.prototypes.numpy()
    intents = [0, 1, 0, 2] if fnm else None
    expected = np.mean([_numpy_nce(v.numpy().mean(axis=1), prototypes, intents=intents)
                        for v in outputs.view_outputs])
    assert float(IntentContrastTask(fnm=fnm)(outputs)) == pytest.approx(expected, rel=1e-5)


def test_intent_tasks_wait_for_the_first_estep():
    outputs = _outputs(ready=False)
    assert float(IntentContrastTask()(outputs)) == 0.0
    # FNM before any E-step masks nothing beyond the usual diagonal
    a, b = (v.numpy().reshape(4, -1) for v in outputs.view_outputs)
    assert float(InstanceContrastTask(fnm=True)(outputs)) == pytest.approx(_numpy_nce(a, b),
                                                                          rel=1e-5)


@pytest.mark.parametrize("contrast_type,names", [
    ("hybrid", ["rec_loss", "seqcl_loss", "icl_loss"]),
    ("intent", ["rec_loss", "icl_loss"]),
    ("instance", ["rec_loss", "seqcl_loss"]),
    ("none", ["rec_loss"]),
])
def test_variants_are_task_lists(contrast_type, names):
    tasks = tasks_for(TrainConfig(contrast_type=contrast_type, seqcl_weight=0.3,
                                  icl_weight=0.7), item_size=30)
    assert [t.name for t in tasks] == names
    assert [t.weight for t in tasks] == [{"rec_loss": 1.0, "seqcl_loss": 0.3,
                                          "icl_loss": 0.7}[n] for n in names]


def test_task_config_round_trip():
    for task in (NextItemTask(weight=2.0), InstanceContrastTask(0.2, 0.5, fnm=True),
                 IntentContrastTask(0.4, 2.0, fnm=True), SoftmaxNextItemTask(max_logits=99),
                 SampledNextItemTask(item_size=40, num_negatives=7),
                 InstanceContrastTask(representation="last", normalize=True,
                                      mask_same_target=True),
                 IntentContrastTask(representation="masked_mean")):
        clone = keras.layers.deserialize(keras.layers.serialize(task))
        assert type(clone) is type(task)
        assert clone.get_config() == task.get_config()
        assert clone.needs_intents == task.needs_intents


def _real_targets(outputs):
    """(hidden [n, d], targets [n]) at the positions whose target is an item, in numpy."""
    pos = outputs.batch["target_pos"].numpy()
    return outputs.sequence_output.numpy()[pos > 0], pos[pos > 0]


def test_softmax_next_item_loss_is_the_mean_cross_entropy_over_every_item():
    outputs = _outputs(item_size=9)
    hidden, targets = _real_targets(outputs)
    logits = hidden.astype(np.float64) @ outputs.item_embeddings.numpy().T
    logits[:, [0, 8]] = -np.inf  # padding and the mask id are never candidates
    log_softmax = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    expected = -log_softmax[np.arange(len(targets)), targets].mean()
    assert float(SoftmaxNextItemTask()(outputs)) == pytest.approx(expected, rel=1e-5)
    # Chunked, one row at a time: the same loss.
    assert float(SoftmaxNextItemTask(max_logits=9)(outputs)) == pytest.approx(expected,
                                                                             rel=1e-5)


def _sampled_expected(outputs, sampled, frequencies, num_negatives, item_size):
    """Sampled softmax by hand: candidates are the targets then `sampled`; logQ with
    each candidate's expected count n f(j) + m / items; a candidate with the row's
    target id (other than the row's own column) removed."""
    hidden, targets = _real_targets(outputs)
    candidates = np.concatenate([targets, sampled])
    logits = hidden.astype(np.float64) @ outputs.item_embeddings.numpy()[candidates].T
    expected_count = len(targets) * frequencies[candidates] + num_negatives / (item_size - 2)
    logits -= np.log(expected_count / expected_count.max())
    losses = []
    for row, target in enumerate(targets):
        scores = logits[row].copy()
        hits = candidates == target
        hits[row] = False
        scores[hits] = -np.inf
        losses.append(np.log(np.exp(scores).sum()) - scores[row])
    return np.mean(losses)


def test_sampled_next_item_loss_matches_numpy_with_log_q_and_accidental_hits():
    outputs = _outputs(item_size=9)
    _, targets = _real_targets(outputs)
    assert len(set(targets.tolist())) < len(targets)  # the batch repeats targets: hits
    sampled = np.array([3, 5, 5, 7, int(targets[0])], np.int32)  # one equals a target
    outputs.batch["sampled_items"] = tf.constant(sampled)
    task = SampledNextItemTask(item_size=9, num_negatives=len(sampled))
    counts = np.array([0, 5, 1, 0, 9, 2, 2, 30, 0])
    task.set_target_frequencies(counts)
    expected = _sampled_expected(outputs, sampled, counts / counts.sum(), len(sampled), 9)
    assert float(task(outputs)) == pytest.approx(expected, rel=1e-5)
    # Without frequencies every candidate is equally likely: no correction at all.
    plain = SampledNextItemTask(item_size=9, num_negatives=len(sampled))
    assert float(plain(outputs)) == pytest.approx(
        _sampled_expected(outputs, sampled, np.zeros(9), len(sampled), 9), rel=1e-5)
    assert float(plain(outputs)) != pytest.approx(expected, rel=1e-3)


def test_next_item_losses_are_chosen_by_the_config():
    kinds = {loss: type(tasks_for(TrainConfig(next_item_loss=loss), item_size=30)[0])
             for loss in ("bce", "softmax", "sampled")}
    assert kinds == {"bce": NextItemTask, "softmax": SoftmaxNextItemTask,
                     "sampled": SampledNextItemTask}


def test_contrast_representations_and_normalisation():
    outputs = _outputs(length=5)
    ids = np.ones((4, 5), np.int32)
    ids[:, :2] = 0
    outputs.batch.update(view_1=tf.constant(ids), view_2=tf.constant(ids))
    v1, v2 = (v.numpy() for v in outputs.view_outputs)
    for representation, pooled in (("masked_mean", lambda v: v[:, 2:].mean(axis=1)),
                                   ("last", lambda v: v[:, -1])):
        a, b = pooled(v1), pooled(v2)
        task = InstanceContrastTask(representation=representation)
        assert float(task(outputs)) == pytest.approx(_numpy_nce(a, b), rel=1e-5)
        normalized = InstanceContrastTask(representation=representation, normalize=True,
                                          temperature=0.5)
        unit = [x / np.linalg.norm(x, axis=1, keepdims=True) for x in (a, b)]
        assert float(normalized(outputs)) == pytest.approx(_numpy_nce(*unit, 0.5), rel=1e-5)
    icl = IntentContrastTask(representation="masked_mean")
    expected = (_numpy_nce(v1[:, 2:].mean(1), outputs.prototypes.numpy())
                + _numpy_nce(v2[:, 2:].mean(1), outputs.prototypes.numpy())) / 2
    assert float(icl(outputs)) == pytest.approx(expected, rel=1e-5)

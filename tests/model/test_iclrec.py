import dataclasses

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras
from conftest import synthetic_sequences, write_dataset

from iclrec_tf.config import TrainConfig
from iclrec_tf.data.datasets import load_sequences
from iclrec_tf.data.pipeline import SequencePipelines
from iclrec_tf.model.iclrec import ICLRecModel, build_model

RATIOS = {"crop": 0.2, "mask": 0.7, "reorder": 0.2}


def _small_config(**overrides):
    settings = dict(max_seq_length=10, hidden_size=16, num_blocks=1, num_intent_clusters=4,
                    hidden_dropout=0.1, attention_dropout=0.1, batch_size=32, lr=0.01)
    settings.update(overrides)
    return TrainConfig(**settings)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    path = tmp_path_factory.mktemp("d") / "d.txt"
    return load_sequences(write_dataset(path, synthetic_sequences(num_users=96, num_items=30)))


def _first_batch(data, config, seed=1):
    pipelines = SequencePipelines(data, config.max_seq_length)
    return next(iter(pipelines.train(config.batch_size, seed, "random", RATIOS)))


@pytest.mark.parametrize(("contrast_type", "mixed_precision"),
                         [("hybrid", "float32"), ("none", "float32"), ("hybrid", "bfloat16")])
def test_train_step_lowers_the_loss(data, contrast_type, mixed_precision):
    keras.utils.set_random_seed(0)
    config = _small_config(contrast_type=contrast_type, mixed_precision=mixed_precision)
    model = build_model(config, data.item_size)
    model.set_centroids(np.random.default_rng(0).standard_normal((4, 16)))
    model.compile(optimizer=keras.optimizers.Adam(config.lr))
    batch = _first_batch(data, config)

    def total(losses):
        return sum(task.weight * float(losses[task.name]) for task in model.tasks)

    before = model.task_losses(batch, training=False)
    table_before = model.encoder.embedding_table.numpy().copy()
    logs = [model.train_on_batch(batch, return_dict=True) for _ in range(60)]
    table_after = model.encoder.embedding_table.numpy()
    # the padding row is frozen (PyTorch's padding_idx=0); item rows in the batch learn
    np.testing.assert_array_equal(table_after[0], table_before[0])
    used = np.unique(batch["input_ids"].numpy())
    assert not np.allclose(table_after[used[used > 0]], table_before[used[used > 0]])
    after = model.task_losses(batch, training=False)
    assert set(logs[-1]) == {"loss"} | {task.name for task in model.tasks}
    assert total(after) < 0.8 * total(before)
    assert float(after["rec_loss"]) < 0.8 * float(before["rec_loss"])


def _encoder_calls(model, batch, training=False):
    """The number of rows of each encoder call one `task_losses` makes."""
    calls = []
    original = model.encoder.call

    def counting_call(item_ids, training=None):
        calls.append(item_ids.shape[0])
        return original(item_ids, training=training)

    model.encoder.call = counting_call
    model.task_losses(batch, training=training)
    return calls


def test_each_sequence_is_encoded_once_per_step_for_every_task(data):
    config = _small_config()
    calls = _encoder_calls(build_model(config, data.item_size), _first_batch(data, config))
    # the original input and both views, a pass each (cheaper than one stacked pass)
    assert calls == [config.batch_size] * 3


def test_assign_intents_picks_the_nearest_centroid_and_prototypes_are_unit():
    model = build_model(_small_config(hidden_size=4, num_heads=2), item_size=20)
    centroids = np.random.default_rng(1).standard_normal((4, 4)).astype(np.float32) * 3
    model.set_centroids(centroids)
    assert bool(model.intents_ready.numpy())
    points = np.random.default_rng(2).standard_normal((50, 4)).astype(np.float32) * 3
    expected = np.argmin(((points[:, None] - centroids[None]) ** 2).sum(-1), axis=1)
    ids = model.assign_intents(tf.constant(points)).numpy()
    np.testing.assert_array_equal(ids, expected)
    prototypes = model.prototypes(tf.constant(ids)).numpy()
    np.testing.assert_allclose(np.linalg.norm(prototypes, axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(prototypes * np.linalg.norm(centroids[ids], axis=1)[:, None],
                               centroids[ids], rtol=1e-5)


@pytest.mark.parametrize("pooling", ["mean", "masked_mean"])
def test_the_intent_representation_is_the_runs_pooling(pooling):
    model = build_model(_small_config(pooling=pooling), item_size=20)
    hidden = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    ids = np.array([[0, 3, 4], [5, 6, 7]])
    expected = hidden.mean(1) if pooling == "mean" else np.stack(
        [hidden[0, 1:].mean(0), hidden[1].mean(0)])
    np.testing.assert_allclose(model.intent_representation(tf.constant(hidden), ids), expected)


def test_scores_cover_every_id():
    model = build_model(_small_config(), item_size=20)
    ids = tf.constant([[0] * 8 + [3, 4]])
    scores = model.score_items(ids).numpy()
    h_last = model(ids, training=False).numpy()[:, -1]
    np.testing.assert_allclose(scores, h_last @ model.encoder.embedding_table.numpy().T,
                               rtol=1e-5, atol=1e-6)


def test_config_round_trip_and_weights_with_centroids_reload(tmp_path):
    config = _small_config(contrast_type="intent", fnm=True, icl_weight=0.3)
    model = build_model(config, item_size=20)
    model.set_centroids(np.full((4, 16), 0.5, np.float32))
    clone = ICLRecModel.from_config(model.get_config())
    assert [t.get_config() for t in clone.tasks] == [t.get_config() for t in model.tasks]
    assert clone.encoder.get_config() == model.encoder.get_config()
    clone(tf.zeros((1, 10), tf.int32))
    model.save_weights(str(tmp_path / "w"))
    clone.load_weights(str(tmp_path / "w"))
    np.testing.assert_array_equal(clone.intent_centroids.numpy(), 0.5)
    assert bool(clone.intents_ready.numpy())
    ids = tf.constant([[0] * 5 + [1, 2, 3, 4, 5]])
    np.testing.assert_allclose(clone(ids).numpy(), model(ids).numpy(), atol=1e-6)


def test_separate_view_encodings_encode_the_views_once_per_contrastive_task(data):
    config = _small_config(view_encodings="separate")
    model = build_model(config, data.item_size)
    model.set_centroids(np.random.default_rng(0).standard_normal((4, 16)))
    calls = _encoder_calls(model, _first_batch(data, config), training=True)
    # the input, then both views for SeqCL, and both again for ICL
    assert calls == [config.batch_size] * 5


def test_separate_view_encodings_differ_by_dropout_only(data):
    shared_config, separate_config = (_small_config(view_encodings=v)
                                      for v in ("shared", "separate"))
    batch = _first_batch(data, shared_config)
    shared, separate = (build_model(c, data.item_size) for c in (shared_config,
                                                                 separate_config))
    separate.set_weights(shared.get_weights())
    for model in (shared, separate):
        model.set_centroids(np.random.default_rng(0).standard_normal((4, 16)))
    without_dropout = [m.task_losses(batch, training=False) for m in (shared, separate)]
    for name in ("rec_loss", "seqcl_loss", "icl_loss"):
        assert float(without_dropout[0][name]) == pytest.approx(
            float(without_dropout[1][name]), rel=1e-5)
    # In training, every encoding draws its own dropout: the views SeqCL and ICL see
    # differ, so their losses differ from the shared encoding's.
    keras.utils.set_random_seed(5)
    with_shared = shared.task_losses(batch, training=True)
    keras.utils.set_random_seed(5)
    with_separate = separate.task_losses(batch, training=True)
    assert float(with_shared["seqcl_loss"]) != pytest.approx(
        float(with_separate["seqcl_loss"]), rel=1e-4)


def test_sampled_softmax_trains_a_step_on_a_million_items():
    item_size = 1_000_002  # a million items, padding and the mask id
    config = _small_config(next_item_loss="sampled", num_negatives=64, contrast_type="none",
                           hidden_size=8, max_seq_length=6, batch_size=4)
    rng = np.random.default_rng(0)
    counts = rng.integers(0, 3, item_size)
    model = build_model(config, item_size, target_counts=counts)
    model.compile(optimizer=keras.optimizers.Adam(0.05))
    ids = tf.constant(rng.integers(1, item_size - 1, (4, 6)), tf.int32)
    batch = {"input_ids": ids, "target_pos": tf.concat([ids[:, 1:], ids[:, :1]], axis=1),
             "sampled_items": tf.constant(rng.integers(1, item_size - 1, 64), tf.int32)}
    before = float(model.task_losses(batch, training=False)["rec_loss"])
    table = model.encoder.embedding_table.numpy()[batch["target_pos"].numpy().ravel()]
    # As the pipeline gives it: one element a batch (`sampled_items` is not per user).
    history = model.fit(tf.data.Dataset.from_tensors(batch).repeat(3), epochs=1, verbose=0)
    assert np.isfinite(history.history["rec_loss"][-1])
    assert float(model.task_losses(batch, training=False)["rec_loss"]) < before
    assert not np.allclose(
        model.encoder.embedding_table.numpy()[batch["target_pos"].numpy().ravel()], table)


@pytest.mark.parametrize("next_item_loss", ["softmax", "bce"])
def test_grouping_rows_by_length_gives_the_same_losses(data, next_item_loss):
    config = _small_config(pooling="masked_mean", seqcl_representation="masked_mean",
                           next_item_loss=next_item_loss, max_seq_length=20)
    _assert_grouping_keeps_the_losses(config, _first_batch(data, config), data.item_size)


def _assert_grouping_keeps_the_losses(config, batch, item_size):
    """The losses of `batch` (dropout off) with rows grouped by length, and padded."""
    padded = build_model(config, item_size)
    grouped = build_model(dataclasses.replace(config, length_buckets=True), item_size)
    grouped.set_weights(padded.get_weights())
    assert grouped.group_by_length and not padded.group_by_length
    for model in (padded, grouped):
        model.set_centroids(np.random.default_rng(0).standard_normal((4, 16)))
    expected = padded.task_losses(batch, training=False)
    actual = grouped.task_losses(batch, training=False)
    for name, value in expected.items():
        assert float(actual[name]) == pytest.approx(float(value), rel=1e-5), name


def test_grouping_by_length_encodes_a_same_target_view_longer_than_its_input(data):
    """Another prefix as a view may be longer than the input: it is not cut."""
    config = _small_config(pooling="masked_mean", seqcl_representation="masked_mean",
                           next_item_loss="softmax", max_seq_length=20,
                           train_samples="prefixes", contrast_views="same_target")
    pipelines = SequencePipelines(data, 20, train_samples="prefixes")
    batch = next(iter(pipelines.train(32, 1, "random", RATIOS, views="same_target")))
    lengths = {name: tf.reduce_sum(tf.cast(batch[name] > 0, tf.int32), axis=1)
               for name in ("input_ids", "view_2")}
    assert bool(tf.reduce_any(lengths["view_2"] > lengths["input_ids"]))
    _assert_grouping_keeps_the_losses(config, batch, data.item_size)


def test_recomputed_blocks_train_the_same_step_without_dropout(data):
    """`--recompute-blocks` changes what the step keeps, not what it computes: with
    dropout off (no masks to differ) one SGD step leaves the same weights."""
    config = _small_config(hidden_dropout=0.0, attention_dropout=0.0, num_blocks=2,
                           next_item_loss="softmax", pooling="masked_mean",
                           seqcl_representation="masked_mean", length_buckets=True)
    batch = _first_batch(data, config)
    models = [build_model(dataclasses.replace(config, recompute_blocks=recompute),
                          data.item_size) for recompute in (False, True)]
    models[1].set_weights(models[0].get_weights())
    for model in models:
        model.set_centroids(np.random.default_rng(0).standard_normal((4, 16)))
        model.compile(optimizer=keras.optimizers.SGD(0.5))
    initial = models[0].encoder.embedding_table.numpy().copy()
    logs = [model.train_on_batch(batch, return_dict=True) for model in models]
    assert logs[1] == pytest.approx(logs[0], rel=1e-5)
    assert models[1].encoder.blocks[0].encoder_config.recompute
    assert not np.allclose(models[0].encoder.embedding_table, initial)  # the step trained
    for plain, recomputed in zip(models[0].get_weights(), models[1].get_weights(),
                                 strict=True):
        np.testing.assert_allclose(recomputed, plain, rtol=1e-5, atol=1e-6)

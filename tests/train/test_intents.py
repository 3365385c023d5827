import numpy as np
import pytest
import tf_keras as keras
from conftest import synthetic_sequences, write_dataset

from iclrec_tf.config import TrainConfig
from iclrec_tf.data.datasets import load_sequences
from iclrec_tf.data.pipeline import SequencePipelines
from iclrec_tf.model.iclrec import build_model
from iclrec_tf.train.intents import IntentClustering, encode_representations, fit_intents


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    path = tmp_path_factory.mktemp("d") / "d.txt"
    data = load_sequences(write_dataset(path, synthetic_sequences(num_users=120, num_items=30)))
    config = TrainConfig(max_seq_length=10, hidden_size=16, num_blocks=1, num_intent_clusters=6,
                         batch_size=40)
    return data, config


def _model(data, config):
    keras.utils.set_random_seed(0)
    model = build_model(config, data.item_size)
    model.compile(optimizer=keras.optimizers.Adam(0.01))
    return model


def test_callback_updates_the_centroids_and_assignments_follow(setup, capsys):
    data, config = setup
    model = _model(data, config)
    pipelines = SequencePipelines(data, config.max_seq_length)
    estep = pipelines.estep(50)
    callback = IntentClustering(estep, num_clusters=6, seed=1)
    callback.set_model(model)
    callback.on_train_begin()
    assert not model.intents_ready.numpy()
    callback.on_epoch_begin(0)
    first = model.intent_centroids.numpy().copy()
    assert model.intents_ready.numpy() and np.abs(first).sum() > 0
    representations = encode_representations(model, estep)
    np.testing.assert_array_equal(model.assign_intents(representations).numpy(),
                                  callback.results[-1].labels)
    assert "E-step 1:" in capsys.readouterr().out

    model.fit(pipelines.train(40, 1, "random", {"crop": 0.2, "mask": 0.7, "reorder": 0.2}),
              epochs=2, steps_per_epoch=pipelines.steps_per_epoch(40), verbose=0)
    callback.on_epoch_begin(1)
    second = model.intent_centroids.numpy()
    assert not np.allclose(first, second)
    representations = encode_representations(model, estep)
    np.testing.assert_array_equal(model.assign_intents(representations).numpy(),
                                  callback.results[-1].labels)
    assert len(callback.results) == 2


def test_no_estep_before_the_warm_up_epoch(setup):
    data, config = setup
    model = _model(data, config)
    callback = IntentClustering(SequencePipelines(data, 10).estep(50), 6, warm_up_epochs=2,
                                verbose=0)
    callback.set_model(model)
    callback.on_train_begin()
    callback.on_epoch_begin(1)
    assert not model.intents_ready.numpy() and not callback.results
    callback.on_epoch_begin(2)
    assert model.intents_ready.numpy() and len(callback.results) == 1


def test_fit_intents_is_seeded_and_reports_its_clusters():
    points = np.random.default_rng(0).standard_normal((300, 8)).astype(np.float32)
    first, again = fit_intents(points, 10, seed=3), fit_intents(points, 10, seed=3)
    np.testing.assert_array_equal(first.centroids, again.centroids)
    assert first.cluster_sizes.sum() == 300
    assert first.non_empty_clusters == np.count_nonzero(np.bincount(first.labels, minlength=10))
    assert first.inertia == pytest.approx(
        ((points - first.centroids[first.labels]) ** 2).sum(), rel=1e-3)


def test_full_kmeans_is_seeded_deterministic_and_no_worse_than_minibatch():
    rng = np.random.default_rng(0)
    centers = rng.standard_normal((10, 8)) * 5
    points = (centers[rng.integers(0, 10, 600)] + rng.standard_normal((600, 8))).astype(
        np.float32)
    first, again = (fit_intents(points, 10, seed=3, method="full") for _ in range(2))
    np.testing.assert_array_equal(first.centroids, again.centroids)
    np.testing.assert_array_equal(first.labels, again.labels)
    other_seed = fit_intents(points, 10, seed=4, method="full")
    assert not np.array_equal(other_seed.centroids, first.centroids)
    minibatch = fit_intents(points, 10, seed=3)
    assert first.inertia <= minibatch.inertia * 1.001  # 5 restarts of full Lloyd steps


def test_more_clusters_than_sequences_names_the_flag():
    with pytest.raises(ValueError, match=r"--num-intent-clusters \(11\) exceeds"):
        fit_intents(np.zeros((10, 4), np.float32), 11, seed=1)

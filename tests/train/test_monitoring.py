import dataclasses
import json
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request

import numpy as np
import pytest
from conftest import synthetic_sequences, write_dataset

from iclrec_tf.config import TrainConfig
from iclrec_tf.data.datasets import SequenceData, load_sequences
from iclrec_tf.train.intents import ClusteringResult
from iclrec_tf.train.metrics import METRIC_NAMES
from iclrec_tf.train.monitoring import ICLRecTensorBoard, cluster_health, item_interaction_counts
from iclrec_tf.train.run import prepare_training

LOSSES = ("loss", "rec_loss", "seqcl_loss", "icl_loss")
INTENT_TAGS = tuple(f"intents/{name}" for name in (
    "inertia", "non_empty_clusters", "largest_cluster_share", "size_entropy"))
SECONDS_TAGS = ("seconds/estep", "seconds/train", "seconds/validation")
RUN = "toys-300"


@dataclasses.dataclass
class MonitoredRun:
    log_dir: object
    data: object
    history: dict
    metrics: dict
    clustering: object


def monitored_fit(config, data, log_dir, log_every=0, histograms=False):
    """What `train.run.train` does once monitoring is wired in: fit, test, write the results."""
    training = prepare_training(config, data)
    clustering, validation = training.clustering, training.validation
    board = ICLRecTensorBoard(log_dir, config, data, clustering, validation,
                              log_every=log_every, histograms=histograms)
    history = training.model.fit(training.train_data, epochs=config.epochs, verbose=0,
                                 steps_per_epoch=training.steps_per_epoch,
                                 callbacks=training.callbacks(board))
    best = training.early_stopping.best_epoch
    metrics = {"best_epoch": best + 1,
               "valid": {name[4:]: values[best] for name, values in history.history.items()
                         if name.startswith("val_")},
               "test": training.evaluator("test")()}
    board.write_results(metrics)
    return MonitoredRun(log_dir, data, history.history, metrics, clustering)


@pytest.fixture(scope="module")
def run(toys, tmp_path_factory):
    """Two epochs of a small ICLRec on the first 300 Toys users, logging every 2 steps."""
    config = TrainConfig(epochs=2, num_intent_clusters=8, num_blocks=1, hidden_size=16,
                         max_seq_length=20, batch_size=64, eval_batch_size=300).validate()
    log_dir = tmp_path_factory.mktemp("runs") / RUN
    return monitored_fit(config, toys.subset(300), log_dir, log_every=2)


def read_events(path):
    """{tag: [(step, value), ...]} of the summaries in one run directory."""
    from tensorboard.backend.event_processing import event_accumulator
    from tensorboard.util import tensor_util

    accumulator = event_accumulator.EventAccumulator(
        str(path), size_guidance={event_accumulator.TENSORS: 0})  # 0 keeps every event
    accumulator.Reload()
    return {tag: [(e.step, tensor_util.make_ndarray(e.tensor_proto)) for e in
                  accumulator.Tensors(tag)] for tag in accumulator.Tags()["tensors"]}


def values(events, tag):
    return [float(value) for _, value in events[tag]]


def test_cluster_health_worked_by_hand():
    # 4 users in K=4 clusters: sizes [3, 1, 0, 0]; shares 3/4 and 1/4;
    # entropy -(0.75 log2 0.75 + 0.25 log2 0.25) = 0.311278 + 0.5 = 0.811278 bits.
    result = ClusteringResult(np.zeros((4, 2), np.float32), np.array([0, 1, 0, 0]), 2.5)
    health = cluster_health(result)
    assert health == {"inertia": 2.5, "non_empty_clusters": 2,
                      "largest_cluster_share": 0.75, "size_entropy": pytest.approx(0.811278)}
    # K equally full clusters: log2 K bits.
    uniform = ClusteringResult(np.zeros((8, 2), np.float32), np.arange(16) % 8, 0.0)
    assert cluster_health(uniform)["size_entropy"] == pytest.approx(3.0)


def test_item_counts_leave_out_the_valid_and_test_answers():
    # users [1 2 3 | 4 5] and [2 2 | 6 7]: training parts [1 2 3] and [2 2].
    data = SequenceData(np.array([1, 2]), np.array([1, 2, 3, 4, 5, 2, 2, 6, 7]),
                        np.array([0, 5, 9]), max_item=7)
    assert item_interaction_counts(data).tolist() == [0, 1, 3, 1, 0, 0, 0, 0]


def test_log_every_must_be_a_non_negative_integer(tmp_path):
    with pytest.raises(ValueError, match="log_every must be a non-negative integer, got -1"):
        ICLRecTensorBoard(tmp_path, TrainConfig(), None, log_every=-1)


def test_event_files_give_the_keras_history(run):
    train = read_events(run.log_dir / "train")
    for name in LOSSES:
        assert [step for step, _ in train[f"epoch_{name}"]] == [0, 1]
        assert values(train, f"epoch_{name}") == pytest.approx(run.history[name], rel=1e-6)
    validation = read_events(run.log_dir / "validation")
    for name in METRIC_NAMES:
        assert values(validation, f"epoch_{name}") == pytest.approx(
            run.history[f"val_{name}"], rel=1e-6)
    assert values(train, "epoch_learning_rate") == pytest.approx([1e-3, 1e-3])
    # 300 users in batches of 64: 5 steps an epoch, 10 in all, logged every 2nd.
    for name in (*LOSSES, "learning_rate", "steps_per_second"):
        assert [step for step, _ in train[f"batch_{name}"]] == [2, 4, 6, 8, 10]
    assert all(value > 0 for value in values(train, "epoch_steps_per_second"))
    assert not any(tag.endswith("/histogram") for tag in train)  # off by default

    session = read_events(run.log_dir)
    for tag in (*INTENT_TAGS, *SECONDS_TAGS):
        assert [step for step, _ in session[tag]] == [0, 1], tag
    for epoch, result in enumerate(run.clustering.results):
        for name, value in cluster_health(result).items():
            assert float(session[f"intents/{name}"][epoch][1]) == pytest.approx(value, rel=1e-6)
    assert values(session, "seconds/estep") == pytest.approx(
        [r.seconds for r in run.clustering.results], rel=1e-6)
    best_step = run.metrics["best_epoch"] - 1
    for split, prefix in (("valid", "best_valid"), ("test", "test")):
        for name in METRIC_NAMES:
            [(step, value)] = session[f"{prefix}/{name}"]
            assert (step, float(value)) == (best_step, pytest.approx(run.metrics[split][name]))
    assert "_hparams_/session_start_info" in session


def test_projector_shows_items_with_counts_and_the_intent_prototypes(run):
    folder = run.log_dir / "projector"
    items = np.loadtxt(folder / "item_embeddings.tsv", delimiter="\t")
    item_rows = np.loadtxt(folder / "item_embeddings_metadata.tsv", delimiter="\t", skiprows=1)
    assert items.shape == (run.data.max_item, 16)
    assert item_rows[:, 0].tolist() == list(range(1, run.data.max_item + 1))
    assert item_rows[:, 1].tolist() == item_interaction_counts(run.data)[1:].tolist()
    prototypes = np.loadtxt(folder / "intent_prototypes.tsv", delimiter="\t")
    intent_rows = np.loadtxt(folder / "intent_prototypes_metadata.tsv", delimiter="\t",
                             skiprows=1)
    assert prototypes.shape == (8, 16)
    np.testing.assert_allclose(np.linalg.norm(prototypes, axis=1), 1.0, rtol=1e-5)
    assert intent_rows[:, 0].tolist() == list(range(8))
    assert intent_rows[:, 1].sum() == run.data.num_users


def test_histograms_flag_and_a_run_without_intents(tmp_path):
    data = load_sequences(write_dataset(tmp_path / "d.txt", synthetic_sequences(num_users=40)))
    config = TrainConfig(epochs=1, contrast_type="none", num_blocks=1, hidden_size=8,
                         max_seq_length=10, batch_size=16, eval_batch_size=64).validate()
    run = monitored_fit(config, data, tmp_path / "run", histograms=True)
    train = read_events(tmp_path / "run" / "train")
    assert "iclrec/encoder/item_embeddings/embeddings_0/histogram" in train
    assert not any(tag.startswith("batch_") for tag in train)  # log_every=0: epochs only
    session = read_events(tmp_path / "run")
    assert not any(tag.startswith("intents/") for tag in session)
    assert {"seconds/train", "seconds/validation"} <= set(session)
    assert run.clustering is None
    assert not (tmp_path / "run" / "projector" / "intent_prototypes.tsv").exists()


def _free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _get(base, route, **params):
    url = f"{base}{route}?{urllib.parse.urlencode(params)}" if params else base + route
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)


def _post(base, route, body):
    request = urllib.request.Request(
        base + route, data=json.dumps(body).encode(), method="POST",
        headers={"Content-Type": "application/json", "X-XSRF-Protected": "1"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


def _poll(server, read, done, timeout):
    """Calls `read()` until `done(result)`, for at most `timeout` seconds."""
    deadline, result = time.monotonic() + timeout, None
    while time.monotonic() < deadline and server.poll() is None:
        try:
            result = read()
            if done(result):
                return result
        except OSError:  # not listening yet, or the connection was reset
            pass
        time.sleep(0.5)
    raise AssertionError(f"TensorBoard (exit status {server.poll()}) did not serve it "
                         f"within {timeout} s; last answer: {result}")


def test_a_live_tensorboard_server_shows_the_run(run, tmp_path):
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    # A file, not a pipe: TensorBoard warns on every request, and a full pipe would block it.
    log = open(tmp_path / "tensorboard.log", "wb")
    server = subprocess.Popen(
        [sys.executable, "-m", "tensorboard.main", "--logdir", str(run.log_dir.parent),
         "--host", "127.0.0.1", "--port", str(port)],
        stdout=log, stderr=subprocess.STDOUT)
    try:
        expected = {
            f"{RUN}/train": {f"epoch_{name}" for name in (*LOSSES, "learning_rate",
                                                          "steps_per_second")},
            f"{RUN}/validation": {f"epoch_{name}" for name in METRIC_NAMES},
            RUN: {*INTENT_TAGS, *SECONDS_TAGS},
        }
        tags = _poll(server, lambda: _get(base, "/data/plugin/scalars/tags"),
                     lambda tags: all(want <= set(tags.get(r, {})) for r, want in expected.items()),
                     timeout=90)
        assert {f"batch_{name}" for name in LOSSES} <= set(tags[f"{RUN}/train"])
        for run_name, wanted in expected.items():
            for tag in wanted:
                points = _get(base, "/data/plugin/scalars/scalars", run=run_name, tag=tag)
                assert [step for _, step, _ in points] == [0, 1], (run_name, tag)
        loss = _get(base, "/data/plugin/scalars/scalars", run=f"{RUN}/train", tag="epoch_loss")
        assert [value for _, _, value in loss] == pytest.approx(run.history["loss"], rel=1e-6)

        # The Projector decides it is active in a background thread: ask until it has.
        plugins = _poll(server, lambda: _get(base, "/data/plugins_listing"),
                        lambda listing: listing["projector"]["enabled"], timeout=30)
        assert plugins["hparams"]["enabled"] and plugins["scalars"]["enabled"]
        assert RUN in _get(base, "/data/plugin/projector/runs")
        shapes = {e["tensorName"]: e["tensorShape"] for e in
                  _get(base, "/data/plugin/projector/info", run=RUN)["embeddings"]}
        assert shapes == {"item_embeddings": [run.data.max_item, 16],
                          "intent_prototypes": [8, 16]}

        groups = _post(base, "/data/plugin/hparams/session_groups", {
            "experimentName": "", "allowedStatuses": ["STATUS_UNKNOWN"],
            "startIndex": 0, "sliceSize": 10})["sessionGroups"]
        [group] = groups
        assert group["hparams"]["num_intent_clusters"] == 8
        assert group["hparams"]["contrast_type"] == "hybrid"
        assert group["hparams"]["encoder"] == "attention"  # the encoder is a setting like any
        shown = {m["name"]["tag"]: m["value"] for m in group["metricValues"]}
        assert shown["test/NDCG@20"] == pytest.approx(run.metrics["test"]["NDCG@20"])
        assert shown["best_valid/NDCG@20"] == pytest.approx(run.metrics["valid"]["NDCG@20"])
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()

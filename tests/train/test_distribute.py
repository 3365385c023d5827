"""tf.distribute: a mirrored step equals one device on the global batch; two
`--strategy multi_worker` processes train to the end, and only the chief writes."""

import json
import os
import socket
import subprocess
import sys
import textwrap

import pytest
from conftest import REPO, synthetic_sequences, write_dataset

from iclrec_tf import cli, fit

pytestmark = pytest.mark.heavy

# Runs in a fresh process: logical devices must be set before TensorFlow starts.
MIRRORED_STEP = textwrap.dedent("""
    import json, sys
    import iclrec_tf
    import numpy as np
    import tensorflow as tf
    import tf_keras as keras

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

    from iclrec_tf.config import TrainConfig
    from iclrec_tf.data.datasets import load_sequences
    from iclrec_tf.model.iclrec import build_model
    from iclrec_tf.data.pipeline import SequencePipelines

    data = load_sequences(sys.argv[1])
    ratios = {"crop": 0.2, "mask": 0.7, "reorder": 0.2}
    batch = next(iter(SequencePipelines(data, 12).train(24, 3, "random", ratios)))
    results = {}
    # One mirrored strategy for every model: each new strategy numbers its collective
    # ops from the same keys, which the process keeps with the previous model's shapes.
    strategies = (("one", tf.distribute.get_strategy()),
                  ("mirrored", tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])))
    # FNM with the default encoder; the other encoders without (the filter with its
    # orthogonality loss, which the replicas must add up once).
    for variant in ("fnm", "fourier", "causal_fourier", "filter"):
        # No dropout: the two runs draw different masks. SGD, not Adam: Adam's
        # first step is about lr * sign(gradient), which would turn float noise
        # in near-zero gradients into lr-sized differences.
        config = TrainConfig.for_dataset(
            "x", num_blocks=2, hidden_size=16, max_seq_length=12, num_intent_clusters=4,
            hidden_dropout=0.0, attention_dropout=0.0, fnm=variant == "fnm",
            encoder="attention" if variant == "fnm" else variant,
            filter_reg_weight=0.1)
        centroids = np.random.default_rng(0).standard_normal((4, 16))
        for name, strategy in strategies:
            keras.utils.set_random_seed(7)
            with strategy.scope():
                model = build_model(config, data.item_size)
                model.compile(optimizer=keras.optimizers.SGD(0.5))
            model.set_centroids(centroids)
            before = [w.numpy() for w in model.trainable_weights]
            logs = model.train_on_batch(batch, return_dict=True)
            results[f"{name}/{variant}"] = {
                "replicas": strategy.num_replicas_in_sync,
                "logs": {k: float(v) for k, v in logs.items()},
                "updates": [(w.numpy() - b).tolist()
                            for w, b in zip(model.trainable_weights, before)]}
    print(json.dumps(results))
""")


def test_a_mirrored_step_equals_one_device_on_the_global_batch(tmp_path):
    import numpy as np

    path = write_dataset(tmp_path / "d.txt", synthetic_sequences(num_users=48, seed=5))
    result = subprocess.run([sys.executable, "-c", MIRRORED_STEP, str(path)],
                            capture_output=True, text=True, cwd=REPO, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads(result.stdout.strip().splitlines()[-1])
    for variant in ("fnm", "fourier", "causal_fourier", "filter"):
        one, mirrored = results[f"one/{variant}"], results[f"mirrored/{variant}"]
        assert (one["replicas"], mirrored["replicas"]) == (1, 2)
        assert mirrored["logs"].keys() == one["logs"].keys()
        for name, value in one["logs"].items():
            assert mirrored["logs"][name] == pytest.approx(value, rel=1e-5), name
        assert one["logs"]["seqcl_loss"] > 0 and one["logs"]["icl_loss"] > 0
        assert max(np.abs(update).max() for update in one["updates"]) > 1e-3
        for expected, actual in zip(one["updates"], mirrored["updates"], strict=True):
            expected, actual = np.asarray(expected), np.asarray(actual)
            # 1e-9 for the tensors whose gradient is 0 in exact arithmetic (key biases)
            assert np.abs(actual - expected).max() <= 1e-3 * np.abs(expected).max() + 1e-9


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def test_two_workers_train_to_the_end_and_only_the_chief_writes(tmp_path, data_dir):
    cluster = {"worker": [f"127.0.0.1:{port}" for port in _free_ports(2)]}
    run_dirs = [tmp_path / "chief", tmp_path / "worker"]
    processes = []
    for index, run_dir in enumerate(run_dirs):
        env = dict(os.environ, TF_CONFIG=json.dumps(
            {"cluster": cluster, "task": {"type": "worker", "index": index}}))
        processes.append(subprocess.Popen(
            [sys.executable, "-m", "iclrec_tf.fit", "--strategy", "multi_worker",
             "--dataset", "toys", "--data-dir", str(data_dir), "--max-users", "1000",
             "--num-intent-clusters", "16", "--num-blocks", "1", "--max-seq-length", "20",
             "--epochs", "1", "--verbose", "2", "--threads", "1", "--output-dir", str(run_dir)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO, env=env))
    outputs = [process.communicate(timeout=1200) for process in processes]
    for process, (_, stderr) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, stderr[-3000:]
    chief, worker = run_dirs
    metrics = json.loads((chief / "metrics.json").read_text())
    assert metrics["epochs_trained"] == 1 and metrics["test"]["HR@20"] > 0
    assert (chief / "history.csv").read_text().count("\n") == 2  # header + 1 epoch
    assert (chief / "weights" / "model.index").is_file()
    # The other worker took part (its own E-step line, its share of the checkpoint
    # save) but wrote nothing.
    assert outputs[1][0].count("E-step") == 1
    written = [p.relative_to(worker) for p in worker.rglob("*") if p.is_file()]
    assert written == []


def test_threads_limit_tensorflow_and_kmeans_and_are_refused_once_started():
    script = """
import iclrec_tf
import tensorflow as tf
from iclrec_tf.errors import ConfigError
from iclrec_tf.train.distribute import limit_threads
limit_threads(1)
tf.constant(1.0) + 1.0  # TensorFlow starts here
import threadpoolctl
print(tf.config.threading.get_intra_op_parallelism_threads(),
      tf.config.threading.get_inter_op_parallelism_threads(),
      sorted({pool["num_threads"] for pool in threadpoolctl.threadpool_info()}))
limit_threads(1)  # the same settings again: nothing to change
try:
    limit_threads(2)
except ConfigError as error:
    print(error)
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            cwd=REPO, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.splitlines() == [
        "1 1 [1]", "--threads 2: TensorFlow has already started in this process with other "
        "thread settings"]


def test_multi_worker_without_tf_config_is_a_flag_error(monkeypatch, capsys, tmp_path):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    path = write_dataset(tmp_path / "d.txt", synthetic_sequences(num_users=8))
    code = cli.run(lambda: fit.main(["--dataset", str(path), "--strategy", "multi_worker",
                                     "--output-dir", str(tmp_path / "run")]), "fit")
    error = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in error and "--strategy multi_worker" in error

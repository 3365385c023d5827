"""Kill and resume, determinism, and finished runs, with `python -m iclrec_tf.fit`
run as a user would, on the first 1,500 Toys users with K = 32. One block over 20
positions: resuming does not depend on the encoder's size, and it halves each run,
most of which is tracing."""

import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import REPO

pytestmark = pytest.mark.heavy

# The runs' umask, as a user's shell usually has it: files 0644, directories 0755.
USUAL_UMASK = 0o022
SUBSET = ["--dataset", "toys", "--max-users", "1500", "--num-intent-clusters", "32",
          "--num-blocks", "1", "--max-seq-length", "20", "--verbose", "2"]


def _command(data_dir, run_dir, *flags):
    return [sys.executable, "-u", "-m", "iclrec_tf.fit", *SUBSET, "--data-dir", str(data_dir),
            "--output-dir", str(run_dir), *flags]


def _fit(data_dir, run_dir, *flags):
    result = subprocess.run(_command(data_dir, run_dir, *flags), capture_output=True,
                            text=True, cwd=REPO, timeout=1200, umask=USUAL_UMASK)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def _metrics(run_dir):
    return json.loads((run_dir / "metrics.json").read_text())


def _same_metrics_file(run_dir, other):
    """Byte for byte: docs/training.md promises identical `metrics.json` files for a seed."""
    return (run_dir / "metrics.json").read_bytes() == (other / "metrics.json").read_bytes()


def _latest_checkpoint(run_dir):
    index = run_dir / "checkpoints" / "checkpoint"
    return index.read_text() if index.is_file() else ""


def _kill_when(data_dir, run_dir, ready, flags, checkpoint=None):
    """Starts a fit and SIGKILLs it once `ready(output_so_far)` holds and, if given,
    `checkpoint` is the latest checkpoint; returns the output up to the kill."""
    process = subprocess.Popen(_command(data_dir, run_dir, *flags), stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, text=True, cwd=REPO,
                               umask=USUAL_UMASK)
    output = ""
    deadline = time.monotonic() + 900
    try:
        for line in process.stdout:
            output += line
            if ready(output):
                break
            assert time.monotonic() < deadline, output
        else:
            pytest.fail(f"the run ended before the kill point:\n{output}")
        while checkpoint is not None and checkpoint not in _latest_checkpoint(run_dir):
            time.sleep(0.005)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=60)
    finally:
        process.kill()
    assert process.returncode == -signal.SIGKILL
    return output


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, data_dir):
    run_dir = tmp_path_factory.mktemp("resume") / "uninterrupted"
    _fit(data_dir, run_dir, "--epochs", "2")
    return run_dir


def test_a_kill_during_an_e_step_resumes_into_the_same_result(uninterrupted, data_dir,
                                                               tmp_path):
    run_dir = tmp_path / "killed"

    # Epoch 1 ends with its validation line, then its checkpoint; the E-step of
    # epoch 2 starts right after.
    output = _kill_when(data_dir, run_dir, lambda out: "Validation 1:" in out,
                        ["--epochs", "2"], checkpoint="ckpt-1")
    assert "E-step 2:" not in output
    assert not (run_dir / "metrics.json").exists()
    resumed = _fit(data_dir, run_dir, "--epochs", "2")
    assert "after epoch 1" in resumed and "E-step 1:" not in resumed
    assert _same_metrics_file(run_dir, uninterrupted)
    history = (run_dir / "history.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in history[1:]] == ["0", "1"]
    # Rewritten on resume, and still readable by everyone, as is everything the run kept.
    assert _mode(run_dir / "history.csv") == 0o644
    assert _mode(run_dir / "weights") == 0o755
    assert {_mode(path) for path in (run_dir / "weights").iterdir()} == {0o644}
    assert {_mode(run_dir / name) for name in ("config.json", "metrics.json")} == {0o644}


def _mode(path):
    return path.stat().st_mode & 0o777


def test_a_kill_mid_epoch_resumes_into_the_same_result(uninterrupted, data_dir, tmp_path):
    run_dir = tmp_path / "killed"

    # After epoch 2's E-step line, its training steps run; the checkpoint is ckpt-1.
    output = _kill_when(data_dir, run_dir, lambda out: "E-step 2:" in out, ["--epochs", "2"])
    assert "Validation 2:" not in output
    resumed = _fit(data_dir, run_dir, "--epochs", "2")
    assert "after epoch 1" in resumed
    assert _same_metrics_file(run_dir, uninterrupted)


def test_a_finished_run_says_so_and_does_not_train_again(uninterrupted, data_dir):
    before = (uninterrupted / "metrics.json").stat().st_mtime_ns
    again = _fit(data_dir, uninterrupted, "--epochs", "2")
    assert "has finished" in again and "E-step" not in again
    assert (uninterrupted / "metrics.json").stat().st_mtime_ns == before


def test_a_finished_run_given_more_epochs_and_patience_trains_on_to_the_same_result(
        uninterrupted, data_dir, tmp_path):
    run_dir = tmp_path / "extended"
    _fit(data_dir, run_dir, "--epochs", "1", "--patience", "0")
    assert _metrics(run_dir)["epochs_trained"] == 1
    extended = _fit(data_dir, run_dir, "--epochs", "2")  # and the default patience, 40
    assert "after epoch 1" in extended and "E-step 1:" not in extended
    assert _same_metrics_file(run_dir, uninterrupted)
    assert json.loads((run_dir / "config.json").read_text())["patience"] == 40


def test_a_run_stopped_early_trains_on_under_a_higher_patience_only(tmp_path):
    from iclrec_tf.train.resume import EarlyStoppingState, ResumableEarlyStopping

    state = EarlyStoppingState(_small_model())
    state.wait.assign(10)
    state.stopped.assign(True)

    def stopping(patience):
        return ResumableEarlyStopping(state, monitor="val_NDCG@20", mode="max",
                                      patience=patience)

    assert stopping(10).has_stopped and stopping(5).has_stopped
    assert not stopping(20).has_stopped
    state.stopped.assign(False)  # ended by --epochs, not by early stopping
    assert not stopping(10).has_stopped


def _small_model(item_size=30):
    import tf_keras as keras

    from iclrec_tf.config import TrainConfig
    from iclrec_tf.model.iclrec import build_model
    from iclrec_tf.train.run import reference_adam

    config = TrainConfig.for_dataset("x", num_blocks=1, hidden_size=8, max_seq_length=6,
                                     num_intent_clusters=2)
    keras.utils.set_random_seed(1)
    model = build_model(config, item_size)
    model.compile(optimizer=reference_adam(1e-3))
    model.optimizer.build(model.trainable_variables)
    return model


def test_a_checkpoint_restores_early_stopping_weights_and_dropout(tmp_path):
    import numpy as np
    import tensorflow as tf

    from iclrec_tf.train.resume import (
        EarlyStoppingState,
        EpochCheckpoint,
        ResumableEarlyStopping,
        RunState,
    )

    def run_state(model, fingerprint="3 users"):
        stopping = ResumableEarlyStopping(EarlyStoppingState(model), monitor="val_NDCG@20",
                                          mode="max", patience=5, restore_best_weights=True)
        stopping.set_model(model)
        return RunState(model, stopping.state, fingerprint), stopping

    model = _small_model()
    state, stopping = run_state(model)
    checkpoint = EpochCheckpoint(state, tmp_path)
    stopping.on_train_begin()
    stopping.on_epoch_end(0, {"val_NDCG@20": 0.5, "loss": 2.0})
    best = [w.numpy() for w in model.weights]
    model.encoder.item_embeddings.embeddings.assign_add(tf.ones_like(
        model.encoder.item_embeddings.embeddings))
    stopping.on_epoch_end(1, {"val_NDCG@20": 0.4, "loss": 1.0})
    checkpoint.on_epoch_end(1)
    ids = tf.constant([[0, 1, 2, 3, 4, 5]])
    next_output = model(ids, training=True).numpy()  # what dropout draws after the save

    restored_model = _small_model()
    restored, restored_stopping = run_state(restored_model)
    assert restored.restore(tmp_path) == 2
    restored_stopping.on_train_begin()
    assert (restored_stopping.best, restored_stopping.wait, restored_stopping.best_epoch) == (
        0.5, 1, 0)
    assert restored_stopping.best_logs == {"val_NDCG@20": 0.5, "loss": 2.0}
    for expected, actual in zip(best, restored_stopping.best_weights, strict=True):
        np.testing.assert_array_equal(actual, expected)
    np.testing.assert_array_equal(restored_model(ids, training=True).numpy(), next_output)

    other_data, _ = run_state(_small_model(), fingerprint="4 users")
    with pytest.raises(ValueError, match="trained on other data"):
        other_data.restore(tmp_path)
    other_model, _ = run_state(_small_model(item_size=40))
    with pytest.raises(ValueError, match="cannot resume from this checkpoint"):
        other_model.restore(tmp_path)


def test_history_rows_after_the_checkpoint_are_dropped(tmp_path):
    from iclrec_tf.train.resume import keep_history_rows

    path = tmp_path / "history.csv"
    path.write_text("epoch,loss\r\n0,3.0\r\n1,2.5\r\n2,2.0\r\n")
    keep_history_rows(path, 2)
    assert path.read_bytes() == b"epoch,loss\r\n0,3.0\r\n1,2.5\r\n"  # as CSVLogger writes
    keep_history_rows(tmp_path / "missing.csv", 1)
    assert not (tmp_path / "missing.csv").exists()


def test_a_run_directory_of_other_settings_is_refused(tmp_path, capsys):
    from conftest import synthetic_sequences, write_dataset

    from iclrec_tf import cli, fit
    from iclrec_tf.config import TrainConfig

    path = write_dataset(tmp_path / "d.txt", synthetic_sequences(num_users=8))
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.json").write_text(
        TrainConfig.for_dataset(str(path), lr=0.01).to_json())
    code = cli.run(lambda: fit.main(["--dataset", str(path), "--output-dir", str(run_dir),
                                     "--seed", "3"]), "fit")
    error = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in error
    assert "holds a run with other settings (--seed, --lr)" in error
    assert sorted(p.name for p in run_dir.iterdir()) == ["config.json"]


def test_a_checkpoint_written_before_the_subpackages_resumes(tmp_path, capsys):
    """`tests/fixtures/old_run` was written at commit 0942367 (see its README): every
    object of today's run must find its value there, under the same name."""
    import shutil

    import tensorflow as tf

    from iclrec_tf import cli, fit
    from iclrec_tf.config import TrainConfig
    from iclrec_tf.data.datasets import load_sequences
    from iclrec_tf.train.run import prepare_training

    fixtures = REPO / "tests" / "fixtures"
    data_path = shutil.copy(fixtures / "old_run_data.txt", tmp_path / "data.txt")
    run_dir = tmp_path / "run"
    shutil.copytree(fixtures / "old_run", run_dir)
    config = TrainConfig.from_json((run_dir / "config.json").read_text())
    # The settings of the old run, at this machine's path and with one more epoch to go.
    config.dataset, config.epochs = str(data_path), 2
    (run_dir / "config.json").write_text(config.to_json())

    training = prepare_training(config, load_sequences(data_path),
                                checkpoint_dir=run_dir / "checkpoints")
    assert training.first_epoch == 1
    stored = tf.train.load_checkpoint(str(run_dir / "checkpoints" / "ckpt-1"))
    embeddings = stored.get_tensor(
        "model/encoder/item_embeddings/embeddings/.ATTRIBUTES/VARIABLE_VALUE")
    np.testing.assert_array_equal(training.model.encoder.embedding_table.numpy(), embeddings)
    centroids = stored.get_tensor("model/intent_centroids/.ATTRIBUTES/VARIABLE_VALUE")
    np.testing.assert_array_equal(training.model.intent_centroids.numpy(), centroids)
    assert centroids.any()  # the old run's E-step had filled them

    flags = ["--dataset", str(data_path), "--output-dir", str(run_dir), "--epochs", "2",
             "--num-intent-clusters", "4", "--num-blocks", "1", "--hidden-size", "8",
             "--max-seq-length", "10", "--batch-size", "16", "--eval-batch-size", "64",
             "--verbose", "0"]
    assert cli.run(lambda: fit.main(flags), "fit") == 0
    assert f"Resuming {run_dir} after epoch 1" in capsys.readouterr().out
    assert _metrics(run_dir)["epochs_trained"] == 2
    assert [row.split(",")[0] for row in
            (run_dir / "history.csv").read_text().splitlines()[1:]] == ["0", "1"]

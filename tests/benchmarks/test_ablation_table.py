"""benchmarks/ablation_table.py, run as a user would, on run directories written here."""

import json
import subprocess
import sys

import pytest
import tensorflow as tf
from conftest import REPO

SCRIPT = REPO / "benchmarks" / "ablation_table.py"
METRICS = {"HR@5": 0.05, "HR@10": 0.08, "HR@20": 0.12, "NDCG@5": 0.03, "NDCG@10": 0.04,
           "NDCG@20": 0.05}


def write_epoch_seconds(run_dir, session_start, epochs):
    """One session's TensorBoard scalars, `{epoch: (train, estep, validation)}`, in an
    event file named as if it had been opened at `session_start`."""
    folder = run_dir / f"session-{session_start}"
    writer = tf.summary.create_file_writer(str(folder))
    with writer.as_default():
        for epoch, seconds in epochs.items():
            for name, value in zip(("train", "estep", "validation"), seconds, strict=True):
                tf.summary.scalar(f"seconds/{name}", value, step=epoch)
    writer.close()
    (written,) = folder.glob("events.out.tfevents.*")
    written.rename(folder / f"events.out.tfevents.{session_start}.host.1.v2")


def table(*run_dirs):
    result = subprocess.run([sys.executable, str(SCRIPT), *map(str, run_dirs)],
                            capture_output=True, text=True, cwd=REPO, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout.strip().splitlines()


def test_a_resumed_run_counts_each_kept_epoch_once(tmp_path):
    run_dir = tmp_path / "resumed"
    run_dir.mkdir()
    (run_dir / "history.csv").write_text("epoch,val_NDCG@20\n0,0.01\n1,0.02\n2,0.015\n")
    (run_dir / "metrics.json").write_text(json.dumps(
        {"best_epoch": 2, "epochs_trained": 3, "valid": {"NDCG@20": 0.02}, "test": METRICS}))
    # Killed during epoch 3 (step 2) after its scalars: the resume trains it again.
    write_epoch_seconds(run_dir, 1000, {0: (10, 1, 2), 1: (10, 1, 2), 2: (99, 99, 99)})
    write_epoch_seconds(run_dir, 2000, {2: (20, 1, 2)})
    # Scalars of epochs the resume dropped from history are not part of the run.
    write_epoch_seconds(run_dir, 3000, {3: (500, 0, 0)})
    lines = table(run_dir)
    rows = json.loads(lines[-1])
    assert rows == [{"run": "resumed", "finished": True, **METRICS, "best_epoch": 2,
                     "epochs": 3, "valid_NDCG@20": 0.02, "seconds": 49.0}]
    assert lines[2] == ("| resumed | 0.0500 | 0.0800 | 0.1200 | 0.0300 | 0.0400 | 0.0500 "
                        "| 2 (0.0200) | 3 | 49 |")


def test_a_running_run_shows_its_last_valid_ndcg(tmp_path):
    run_dir = tmp_path / "running"
    run_dir.mkdir()
    (run_dir / "history.csv").write_text("epoch,val_NDCG@20\n0,0.01\n1,0.0234\n")
    rows = json.loads(table(run_dir)[-1])
    assert rows == [{"run": "running", "finished": False, "epochs": 2,
                     "valid_NDCG@20": pytest.approx(0.0234)}]

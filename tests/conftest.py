import json
import os
import pathlib
import subprocess
import sys

import pytest

import iclrec_tf  # noqa: F401  (selects Keras 2 before TensorFlow loads)

REPO = pathlib.Path(__file__).resolve().parents[1]


@pytest.hookimpl(tryfirst=True)  # before xdist reads the marks
def pytest_collection_modifyitems(items):
    """Groups tests for pytest-xdist's `loadgroup` (setup.cfg): a module's tests run
    on one worker, so that its module fixtures are built once, and so do the tests
    of the `toys_run` session fixture, a real `fit`, wherever they live."""
    for item in items:
        uses_toys_run = "toys_run" in getattr(item, "fixturenames", ())
        group = "toys_run" if uses_toys_run else item.module.__name__
        item.add_marker(pytest.mark.xdist_group(group))
    # Heavy modules first: scheduled last, they would leave one worker idle at the end.
    items.sort(key=lambda item: item.get_closest_marker("heavy") is None)


def shared_data_dir():
    """`$ICLREC_DATA_DIR`, else the `../shared/data` beside the checkout."""
    return pathlib.Path(os.environ.get("ICLREC_DATA_DIR", REPO.parent / "shared" / "data"))


def reference_dir():
    """`$ICLREC_REFERENCE_DIR`, else the `../shared/reference` beside the checkout."""
    return pathlib.Path(os.environ.get("ICLREC_REFERENCE_DIR",
                                       REPO.parent / "shared" / "reference"))


@pytest.fixture(scope="session")
def data_dir():
    return shared_data_dir()


@pytest.fixture(scope="session")
def toys_path(data_dir):
    from iclrec_tf.data.datasets import resolve_dataset

    return resolve_dataset("toys", data_dir)


@pytest.fixture(scope="session")
def toys(toys_path):
    from iclrec_tf.data.datasets import load_sequences

    return load_sequences(toys_path)


def write_dataset(path, sequences, first_user=1):
    """Writes `sequences` in the dataset format, users numbered from `first_user`."""
    lines = [" ".join(map(str, [first_user + u, *items])) for u, items in enumerate(sequences)]
    path.write_text("\n".join(lines) + "\n")
    return path


def synthetic_sequences(num_users=64, num_items=40, seed=0, min_len=5, max_len=30):
    """Random sequences with a learnable pattern: each item tends to be followed by the next."""
    import numpy as np

    rng = np.random.default_rng(seed)
    sequences = []
    for _ in range(num_users):
        length = int(rng.integers(min_len, max_len + 1))
        start = int(rng.integers(1, num_items + 1))
        items = [(start + step - 1) % num_items + 1 for step in range(length)]
        sequences.append(items)
    return sequences


def encoder_config(item_size, **train_config):
    """The `EncoderConfig` of a `TrainConfig` with `train_config` overrides."""
    from iclrec_tf.config import TrainConfig
    from iclrec_tf.model.encoder import EncoderConfig

    return EncoderConfig.from_train_config(TrainConfig(**train_config), item_size)


def padded_rows(lengths, width=12, item_size=30, seed=3):
    """[len(lengths), width] int32 rows of random item ids, left-padded to their lengths."""
    import numpy as np

    rng = np.random.default_rng(seed)
    ids = np.zeros((len(lengths), width), np.int32)
    for row, length in enumerate(lengths):
        ids[row, width - length:] = rng.integers(1, item_size, length)
    return ids


def run_benchmark(script, tmp_path, *flags, num_users=80):
    """Runs `benchmarks/SCRIPT` as a user would, on `num_users` synthetic users and a
    small model (one block, 4 intents, batches of 16) at one thread, then `flags`.

    Returns:
      The JSON object of its last line, once its exit code is asserted to be 0.
    """
    path = write_dataset(tmp_path / "d.txt", synthetic_sequences(num_users, num_items=25))
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / script), "--dataset", str(path),
         "--threads", "1", "--num-blocks", "1", "--num-intent-clusters", "4",
         "--batch-size", "16", *flags],
        capture_output=True, text=True, cwd=REPO, timeout=600)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[-1])


@pytest.fixture(scope="session")
def toys_run(tmp_path_factory, data_dir):
    """One epoch of `python -m iclrec_tf.fit --dataset toys`, run as a user would, on the
    first 5,000 users: a whole Toys epoch would cost CI two minutes."""
    import subprocess
    import sys

    run_dir = tmp_path_factory.mktemp("runs") / "toys"
    result = subprocess.run(
        [sys.executable, "-m", "iclrec_tf.fit", "--dataset", "toys", "--data-dir",
         str(data_dir), "--epochs", "1", "--max-users", "5000", "--output-dir", str(run_dir),
         "--verbose", "2"],
        capture_output=True, text=True, cwd=REPO, timeout=1200)
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir, result.stdout

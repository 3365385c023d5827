"""A run directory: config.json, metrics.json, history.csv and the weights.

Every file is written to a temporary name and renamed into place, so an
interrupted run never leaves a half-written file behind.
"""

import json
import os
import pathlib
import shutil
import tempfile

from iclrec_tf.config import TrainConfig

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.json"
HISTORY_FILE = "history.csv"
WEIGHTS_DIR = "weights"


def _umask():
    current = os.umask(0)
    os.umask(current)
    return current


class RunDirectoryError(ValueError):
    """The run directory cannot be written, or has no trained weights."""


class RunDirectory:
    """The files of one training run.

    Args:
      path: the directory; created (with parents) when `create` is True.
      create: make the directory, raising `RunDirectoryError` if impossible.
    """

    def __init__(self, path, create=False):
        self.path = pathlib.Path(path)
        if create:
            try:
                self.path.mkdir(parents=True, exist_ok=True)
                probe = tempfile.NamedTemporaryFile(dir=self.path, prefix=".probe-")
                probe.close()
            except OSError as error:
                raise RunDirectoryError(
                    f"--output-dir {self.path}: not writable ({error.strerror})") from None

    def file(self, name):
        return self.path / name

    def write_text(self, name, text):
        """Writes `name` atomically (temporary file, then rename)."""
        handle, temporary = tempfile.mkstemp(dir=self.path, prefix=f".{name}.")
        with os.fdopen(handle, "w") as stream:
            stream.write(text)
        os.chmod(temporary, 0o666 & ~_umask())  # mkstemp's 0600 is for secrets, not results
        os.replace(temporary, self.file(name))

    def write_json(self, name, value):
        self.write_text(name, json.dumps(value, indent=2, sort_keys=True) + "\n")

    def read_json(self, name):
        try:
            return json.loads(self.file(name).read_text())
        except FileNotFoundError:
            raise RunDirectoryError(f"{self.path}: no {name}; is this a run directory?") from None
        except json.JSONDecodeError as error:
            raise RunDirectoryError(f"{self.file(name)}:{error.lineno}: invalid JSON") from None

    def config(self):
        return TrainConfig.from_json(json.dumps(self.read_json(CONFIG_FILE)))

    def save_weights(self, model):
        """Saves a TF checkpoint of `model` into `weights/`, replacing it atomically."""
        staging = pathlib.Path(tempfile.mkdtemp(dir=self.path, prefix=f".{WEIGHTS_DIR}."))
        model.save_weights(str(staging / "model"))
        final = self.file(WEIGHTS_DIR)
        if final.exists():
            retired = self.file(f".{WEIGHTS_DIR}.old")
            shutil.rmtree(retired, ignore_errors=True)
            os.replace(final, retired)
            os.replace(staging, final)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            os.replace(staging, final)

    def weights_prefix(self):
        """The checkpoint prefix to `load_weights` from."""
        if not (self.file(WEIGHTS_DIR) / "model.index").is_file():
            raise RunDirectoryError(f"{self.path}: no trained weights in {WEIGHTS_DIR}/")
        return str(self.file(WEIGHTS_DIR) / "model")

"""A run directory: config.json, metrics.json, history.csv, items.txt and the weights.

Every file is written to a temporary name and renamed into place
(`iclrec_tf.files`), so an interrupted run never leaves a half-written file
behind.
"""

import dataclasses
import json
import pathlib
import tempfile

from iclrec_tf import files
from iclrec_tf.config import EXTENDABLE_FIELDS, SPEED_ONLY_FIELDS, TrainConfig, flag_name
from iclrec_tf.data.vocabulary import (
    ITEMS_FILE,
    dataset_vocabulary,
    read_vocabulary,
    vocabulary_text,
)
from iclrec_tf.errors import RunDirectoryError

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.json"
HISTORY_FILE = "history.csv"
WEIGHTS_DIR = "weights"


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
        """Writes `name` atomically (`iclrec_tf.files`)."""
        files.write_text(self.file(name), text)

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

    def check_settings(self, config):
        """Checks that the directory is new or holds a run that `config` may resume.

        A run may be resumed with other `SPEED_ONLY_FIELDS`, and with higher
        `EXTENDABLE_FIELDS` (`--epochs`, `--patience`).

        Returns:
          The names of the `EXTENDABLE_FIELDS` that `config` raises.

        Raises:
          RunDirectoryError: the directory holds a run of other settings (the
            message names the flags that differ).
        """
        if not self.file(CONFIG_FILE).is_file():
            return []
        previous = self.config()
        changed = [field.name for field in dataclasses.fields(TrainConfig)
                   if field.name not in SPEED_ONLY_FIELDS
                   and getattr(previous, field.name) != getattr(config, field.name)]
        raised = [name for name in changed if name in EXTENDABLE_FIELDS
                  and getattr(config, name) > getattr(previous, name)]
        refused = [name for name in changed if name not in raised]
        if refused:
            flags = ", ".join(flag_name(name) for name in refused)
            raise RunDirectoryError(f"--output-dir {self.path} holds a run with other "
                                    f"settings ({flags}); rerun it with the same flags "
                                    "(--epochs and --patience may be raised), or choose "
                                    "another --output-dir")
        return raised

    def finished_metrics(self, config):
        """The `metrics.json` of the directory's run if `config` finds it finished.

        The directory must be new or hold a run `config` may resume
        (`check_settings`). A finished run whose `--epochs` or `--patience`
        `config` raises is reopened: its `metrics.json` is removed, and it trains
        on from its last checkpoint.

        Returns:
          That run's `metrics.json` if it has finished, else None.

        Raises:
          RunDirectoryError: from `check_settings`.
        """
        raised = self.check_settings(config)
        metrics = self.file(METRICS_FILE)
        if not (self.file(CONFIG_FILE).is_file() and metrics.is_file()):
            return None
        if raised:
            metrics.unlink()
            return None
        return self.read_json(METRICS_FILE)

    def save_weights(self, model):
        """Saves a TF checkpoint of `model` into `weights/`, replacing it atomically."""
        with files.StagedDirectory(self.path, WEIGHTS_DIR) as staged:
            model.save_weights(str(staged.path / "model"))
            staged.publish(self.file(WEIGHTS_DIR), replace=True)

    def weights_prefix(self):
        """The checkpoint prefix to `load_weights` from."""
        if not (self.file(WEIGHTS_DIR) / "model.index").is_file():
            raise RunDirectoryError(f"{self.path}: no trained weights in {WEIGHTS_DIR}/")
        return str(self.file(WEIGHTS_DIR) / "model")

    def sync_vocabulary(self, dataset, dataset_path, max_item):
        """Makes `items.txt` the dataset's vocabulary, or removes it if it has none.

        A stale copy from an earlier run in a reused directory must not go: its
        ids would label this run's items.

        Args:
          dataset: as for `dataset_vocabulary`.
          dataset_path: as for `dataset_vocabulary`.
          max_item: as for `dataset_vocabulary`.

        Raises:
          DataError: the dataset's `items.txt` is malformed or too short.
        """
        vocabulary = dataset_vocabulary(dataset, dataset_path, max_item)
        if vocabulary is None:
            self.file(ITEMS_FILE).unlink(missing_ok=True)
        else:
            self.write_text(ITEMS_FILE, vocabulary_text(vocabulary))

    def vocabulary(self):
        """The run's raw item ids (its `items.txt`), or None."""
        path = self.file(ITEMS_FILE)
        return read_vocabulary(path) if path.is_file() else None

"""Versioned export (`iclrec_tf.serve.saved_model`): numbering, atomicity, file modes."""

import os
import pathlib

import pytest
import tensorflow as tf

from iclrec_tf import files
from iclrec_tf.config import TrainConfig
from iclrec_tf.model.iclrec import build_model
from iclrec_tf.serve import saved_model


@pytest.fixture(scope="module")
def model():
    """An untrained 10-item model: what is exported does not matter here, only how."""
    model = build_model(TrainConfig(hidden_size=8, num_blocks=1, max_seq_length=6),
                        item_size=12)
    model(tf.zeros([1, 6], tf.int64), training=False)
    return model


def test_an_export_is_readable_by_other_users_under_the_usual_umask(model, tmp_path):
    previous = os.umask(0o022)
    try:
        version_dir = saved_model.export_saved_model(model, tmp_path / "toys", top_k=5,
                                                     config=TrainConfig(encoder="filter"))
    finally:
        os.umask(previous)
    modes = {path.relative_to(version_dir): path.stat().st_mode & 0o777
             for path in version_dir.rglob("*")}
    assert version_dir.stat().st_mode & 0o777 == 0o755  # not tempfile's 0700
    assert {mode for path, mode in modes.items() if (version_dir / path).is_dir()} == {0o755}
    assert {mode for path, mode in modes.items() if (version_dir / path).is_file()} == {0o644}
    assert modes.keys() >= {pathlib.Path("saved_model.pb"), pathlib.Path("variables")}
    config = TrainConfig.from_json((version_dir / "assets.extra" / "config.json").read_text())
    assert config.encoder == "filter"


def test_the_next_version_follows_the_largest_integer(tmp_path):
    for name in ("3", "10", ".export-abc", "notes"):
        (tmp_path / name).mkdir()
    assert saved_model.next_version(tmp_path) == 11


def test_an_interrupted_export_leaves_no_version(model, tmp_path, monkeypatch):
    model_dir = tmp_path / "toys"
    (model_dir / "1").mkdir(parents=True)
    (model_dir / "1" / "saved_model.pb").write_text("version 1")

    def interrupted(source, target):
        raise KeyboardInterrupt

    monkeypatch.setattr(files.os, "rename", interrupted)
    with pytest.raises(KeyboardInterrupt):
        saved_model.export_saved_model(model, model_dir, top_k=10)
    assert [p.name for p in model_dir.iterdir()] == ["1"]
    assert (model_dir / "1" / "saved_model.pb").read_text() == "version 1"

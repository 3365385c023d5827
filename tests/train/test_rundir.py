import dataclasses
import os

import pytest
import tensorflow as tf

from iclrec_tf.config import TrainConfig
from iclrec_tf.errors import RunDirectoryError
from iclrec_tf.model.iclrec import build_model
from iclrec_tf.train.rundir import RunDirectory


def test_files_are_written_whole_and_readable(tmp_path):
    run = RunDirectory(tmp_path / "a" / "b", create=True)
    run.write_json("metrics.json", {"x": 1})
    run.write_json("metrics.json", {"x": 2})
    assert run.read_json("metrics.json") == {"x": 2}
    assert sorted(os.listdir(run.path)) == ["metrics.json"]  # no temporary left behind
    assert os.stat(run.file("metrics.json")).st_mode & 0o044  # readable by others


def test_config_round_trip(tmp_path):
    run = RunDirectory(tmp_path, create=True)
    config = TrainConfig(dataset="yelp", num_blocks=2, fnm=True)
    run.write_text("config.json", config.to_json())
    assert run.config() == config


def test_a_resume_may_change_speed_settings_only(tmp_path):
    run = RunDirectory(tmp_path, create=True)
    config = TrainConfig(dataset="toys", eval_batch_size=1024)
    run.write_text("config.json", config.to_json())
    assert run.finished_metrics(dataclasses.replace(config, eval_batch_size=256)) is None
    with pytest.raises(RunDirectoryError, match=r"other settings \(--seed\)"):
        run.finished_metrics(dataclasses.replace(config, eval_batch_size=256, seed=2))


def test_a_resume_may_raise_epochs_and_patience_and_reopens_a_finished_run(tmp_path):
    run = RunDirectory(tmp_path, create=True)
    config = TrainConfig(dataset="toys", epochs=40, patience=10)
    run.write_text("config.json", config.to_json())
    run.write_json("metrics.json", {"best_epoch": 30})
    assert run.finished_metrics(config) == {"best_epoch": 30}
    for lowered, flag in ((dataclasses.replace(config, patience=5), "--patience"),
                          (dataclasses.replace(config, epochs=300, patience=5), "--patience"),
                          (dataclasses.replace(config, epochs=20), "--epochs")):
        with pytest.raises(RunDirectoryError, match=rf"other settings \({flag}\)"):
            run.finished_metrics(lowered)
    raised = dataclasses.replace(config, epochs=300, patience=20)
    assert sorted(run.check_settings(raised)) == ["epochs", "patience"]
    assert run.file("metrics.json").is_file()  # checking alone changes nothing
    assert run.finished_metrics(raised) is None
    assert not run.file("metrics.json").exists()  # it trains on, and writes it again


def test_weights_are_replaced_atomically_and_reload(tmp_path):
    run = RunDirectory(tmp_path, create=True)
    config = TrainConfig(max_seq_length=5, hidden_size=8, num_blocks=1, num_intent_clusters=2)
    model = build_model(config, item_size=12)
    run.save_weights(model)
    model.set_centroids(tf.ones((2, 8)))
    run.save_weights(model)
    assert sorted(os.listdir(run.path)) == ["weights"]
    clone = build_model(config, item_size=12)
    clone.load_weights(run.weights_prefix())
    assert float(tf.reduce_sum(clone.intent_centroids)) == 16.0


def test_invalid_json_names_file_and_line(tmp_path):
    run = RunDirectory(tmp_path)
    (tmp_path / "config.json").write_text('{\n  "seed": 1,\n}')
    with pytest.raises(RunDirectoryError, match=r"config.json:3: invalid JSON"):
        run.config()

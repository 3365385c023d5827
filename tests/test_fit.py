import csv
import dataclasses
import json
import pathlib

import pytest
from conftest import synthetic_sequences, write_dataset

from iclrec_tf import cli, fit
from iclrec_tf import config as config_module
from iclrec_tf.config import ENCODERS, NON_CAUSAL_ENCODERS, TrainConfig
from iclrec_tf.train.metrics import METRIC_NAMES

pytestmark = pytest.mark.heavy


def test_one_epoch_on_toys_writes_the_run_directory(toys_run):
    run_dir, stdout = toys_run
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["best_epoch"] == 1 and metrics["epochs_trained"] == 1
    for split in ("valid", "test", "test_exclude"):
        assert set(metrics[split]) == set(METRIC_NAMES)
        assert all(0.0 <= value <= 1.0 for value in metrics[split].values())
    # one epoch already beats a random ranking of 11,926 items (HR@20 ~ 0.0017)
    assert metrics["test"]["HR@20"] > 0.0025
    config = TrainConfig.from_json((run_dir / "config.json").read_text())
    assert (config.num_blocks, config.epochs, config.dataset) == (3, 1, "toys")
    with open(run_dir / "history.csv") as stream:
        rows = list(csv.DictReader(stream))
    assert len(rows) == 1
    assert {"loss", "rec_loss", "seqcl_loss", "icl_loss", "val_NDCG@20", "val_HR@5"} <= set(rows[0])
    assert float(rows[0]["val_NDCG@20"]) == pytest.approx(metrics["valid"]["NDCG@20"])
    assert (run_dir / "weights" / "model.index").is_file()
    # one line per phase, with its duration
    assert "E-step 1:" in stdout and "Validation 1:" in stdout and "Test:" in stdout


def _fit(argv, capsys):
    code = cli.run(lambda: fit.main(argv), "fit")
    return code, capsys.readouterr().err.strip()


NUMERIC_FLAGS = {"--epochs": "integer", "--batch-size": "integer",
                 "--num-intent-clusters": "integer", "--max-seq-length": "integer",
                 "--lr": "number"}


@pytest.mark.parametrize("argv,message", [
    *[([flag, value], f"fit: error: {flag} must be a positive {kind}, got {value}")
      for flag, kind in NUMERIC_FLAGS.items() for value in ("0", "-3")],
    (["--max-users", "-1"], "fit: error: --max-users must be a non-negative integer, got -1"),
    (["--dataset", "movies"], "fit: error: --dataset 'movies' is neither a dataset name"),
    (["--contrast-type", "both"], "fit: error: --contrast-type must be one of"),
    (["--train-samples", "sessions"], "fit: error: --train-samples must be one of users, prefixes"),
    (["--strategy", "tpu"], "argument --strategy: invalid choice: 'tpu'"),
    (["--threads", "0"], "fit: error: --threads must be a positive integer, got 0"),
])
def test_bad_values_get_one_line_naming_the_flag(argv, message, capsys):
    try:
        code, err = _fit(argv, capsys)
    except SystemExit as exit_:  # argparse's own checks
        code, err = exit_.code, capsys.readouterr().err.strip()
    assert code == 2
    assert message in err and "\n" not in err


@pytest.mark.parametrize("argv,message", [
    *[([flag, "ten"], f"argument {flag}: invalid {'float' if kind == 'number' else 'int'} "
                      "value: 'ten'") for flag, kind in NUMERIC_FLAGS.items()],
    (["--batch-size", "2.5"], "argument --batch-size: invalid int value: '2.5'"),
    (["--no-such-flag"], "unrecognized arguments: --no-such-flag"),
])
def test_unparsable_flags_get_one_line(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        fit.main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err == f"python -m iclrec_tf.fit: error: {message}"


def test_a_bad_data_file_names_its_line(tmp_path, capsys):
    path = tmp_path / "bad.txt"
    path.write_text("1 1 2 3 4\n2 5 6 seven 8\n")
    code, err = _fit(["--dataset", str(path), "--output-dir", str(tmp_path / "run")], capsys)
    assert code == 2
    assert err == f"fit: error: {path}:2: 'seven' is not an integer"
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_more_clusters_than_users_is_refused(tmp_path, capsys):
    path = write_dataset(tmp_path / "d.txt", synthetic_sequences(num_users=20))
    code, err = _fit(["--dataset", str(path), "--output-dir", str(tmp_path / "run")], capsys)
    assert code == 2
    assert err == "fit: error: --num-intent-clusters (256) exceeds the number of users (20)"


def test_an_unwritable_output_dir_is_refused(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    code, err = _fit(["--output-dir", str(blocker / "run")], capsys)
    assert code == 2
    assert err.startswith(f"fit: error: --output-dir {blocker / 'run'}: not writable")


def test_a_small_run_trains_each_variant(tmp_path, capsys):
    path = write_dataset(tmp_path / "d.txt", synthetic_sequences(num_users=80, num_items=25))
    for contrast_type in ("none", "instance", "intent"):
        run = tmp_path / contrast_type
        code, err = _fit(["--dataset", str(path), "--output-dir", str(run), "--epochs", "2",
                          "--num-intent-clusters", "4", "--num-blocks", "1",
                          "--contrast-type", contrast_type, "--fnm", "--verbose", "0"], capsys)
        assert code == 0, err
        with open(run / "history.csv") as stream:
            columns = set(next(csv.DictReader(stream)))
        expected = {"none": {"rec_loss"}, "instance": {"rec_loss", "seqcl_loss"},
                    "intent": {"rec_loss", "icl_loss"}}[contrast_type]
        assert {c for c in columns if c.endswith("_loss")} == expected


@pytest.mark.parametrize("views", ["augmented", "same_target"])
def test_prefix_samples_make_an_epoch_of_every_prefix(views, tmp_path, capsys):
    sequences = synthetic_sequences(num_users=80, num_items=25)
    path = write_dataset(tmp_path / "d.txt", sequences)
    steps = -(-sum(len(s) - 3 for s in sequences) // 32)
    assert steps > 3 * -(-80 // 32)  # many more samples than users
    argv = ["--dataset", str(path), "--output-dir", str(tmp_path / "run"), "--preset", "plus",
            "--train-samples", "prefixes", "--contrast-views", views, "--epochs", "2",
            "--batch-size", "32",
            "--num-intent-clusters", "4", "--num-blocks", "1", "--verbose", "2"]
    assert cli.run(lambda: fit.main(argv), "fit") == 0
    stdout = capsys.readouterr().out
    assert stdout.count(f"{steps}/{steps} - ") == 2  # Keras's line for each epoch
    config = TrainConfig.from_json((tmp_path / "run" / "config.json").read_text())
    assert (config.train_samples, config.contrast_views) == ("prefixes", views)


def test_an_iclrec_plus_run_resumes_exactly_logs_its_losses_and_serves(tmp_path):
    """`--preset plus` as a user runs it: killed after an epoch, resumed, exported."""
    import signal
    import subprocess
    import sys
    import time

    import numpy as np
    import tensorflow as tf
    from conftest import REPO

    from iclrec_tf.data.datasets import load_sequences
    from iclrec_tf.data.pipeline import SequencePipelines
    from iclrec_tf.model.iclrec import build_model
    from iclrec_tf.serve.saved_model import export_saved_model

    path = write_dataset(tmp_path / "d.txt",
                         synthetic_sequences(num_users=300, num_items=60, seed=5, max_len=40))

    def command(run_dir):
        return [sys.executable, "-u", "-m", "iclrec_tf.fit", "--dataset", str(path),
                "--preset", "plus", "--num-intent-clusters", "8", "--num-blocks", "1",
                "--hidden-size", "16", "--batch-size", "32", "--epochs", "2",
                # ICL from the first epoch, so that two epochs fit intents to serve.
                "--warm-up-epochs", "0",
                "--output-dir", str(run_dir), "--verbose", "2", "--log-every", "0"]

    def metrics(run_dir):
        return json.loads((run_dir / "metrics.json").read_text())

    subprocess.run(command(tmp_path / "whole"), check=True, capture_output=True, cwd=REPO,
                   timeout=900)
    killed = tmp_path / "killed"
    process = subprocess.Popen(command(killed), stdout=subprocess.PIPE, text=True, cwd=REPO,
                               stderr=subprocess.DEVNULL)
    for line in process.stdout:
        if line.startswith("Validation 1:"):
            break
    index = killed / "checkpoints" / "checkpoint"
    deadline = time.monotonic() + 300
    while not (index.is_file() and "ckpt-1" in index.read_text()):
        assert time.monotonic() < deadline
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    resumed = subprocess.run(command(killed), capture_output=True, text=True, cwd=REPO,
                             timeout=900)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "after epoch 1" in resumed.stdout and "E-step 1:" not in resumed.stdout
    assert metrics(killed) == metrics(tmp_path / "whole")

    with open(killed / "history.csv") as stream:
        rows = list(csv.DictReader(stream))
    assert [row["epoch"] for row in rows] == ["0", "1"]
    assert {"rec_loss", "seqcl_loss", "icl_loss"} <= set(rows[0])
    tags = {value.tag for events in (killed / "train").glob("events.out.tfevents.*")
            for event in tf.compat.v1.train.summary_iterator(str(events))
            for value in event.summary.value}
    assert {"epoch_rec_loss", "epoch_seqcl_loss", "epoch_icl_loss"} <= tags

    # The export's intent signature pools as the run did: over the items only.
    config = TrainConfig.from_json((killed / "config.json").read_text())
    data = load_sequences(path)
    model = build_model(config, data.item_size)
    model.load_weights(str(killed / "weights" / "model")).expect_partial()
    served = tf.saved_model.load(str(export_saved_model(model, tmp_path / "served", top_k=5)))
    inputs = SequencePipelines(data, config.max_seq_length).train_inputs()
    intents = served.signatures["intent"](item_ids=tf.constant(inputs, tf.int64))["intent_id"]
    hidden = model(inputs, training=False)
    expected = model.assign_intents(model.intent_representation(hidden, inputs))
    np.testing.assert_array_equal(intents.numpy(), expected.numpy())
    padded_mean = model.assign_intents(tf.reduce_mean(hidden, axis=1))
    assert not np.array_equal(padded_mean.numpy(), expected.numpy())


@pytest.mark.parametrize("argv,message", [
    (["--encoder", "fourier", "--train-samples", "users"],
     "fit: error: --encoder fourier is not causal (a position sees the items after it): it "
     "trains on --train-samples prefixes only"),
    (["--encoder", "rnn"], "fit: error: --encoder must be one of attention, fourier, "
                           "causal_fourier, filter, got 'rnn'"),
    (["--encoder", "fourier", "--fourier-alpha", "2"],
     "fit: error: --fourier-alpha must be in [0, 1], got 2.0"),
    (["--encoder", "fourier", "--fourier-cutoff", "60"],
     "fit: error: --fourier-cutoff (60) must be at most --max-seq-length (50)"),
    (["--encoder", "filter", "--filter-bases", "0"],
     "fit: error: --filter-bases must be a positive integer, got 0"),
    (["--encoder", "filter", "--filter-reg-weight", "-1"],
     "fit: error: --filter-reg-weight must be a non-negative number, got -1.0"),
])
def test_a_refused_encoder_setting_is_one_line_and_exit_2(argv, message, tmp_path, capsys):
    code, err = _fit([*argv, "--output-dir", str(tmp_path / "run")], capsys)
    assert (code, err) == (2, message)
    assert not (tmp_path / "run" / "config.json").exists()


def _small_encoder_run(path, run_dir, encoder, *flags):
    return ["--dataset", str(path), "--preset", "plus", "--encoder", encoder,
            "--num-intent-clusters", "4", "--num-blocks", "1", "--hidden-size", "16",
            "--batch-size", "32", "--warm-up-epochs", "0", "--verbose", "0",
            "--log-every", "0", "--output-dir", str(run_dir), *flags]


def _metrics(run_dir):
    return json.loads((run_dir / "metrics.json").read_text())


@pytest.mark.parametrize("encoder", [e for e in ENCODERS if e != "attention"])
def test_each_encoder_trains_resumes_evaluates_and_serves_as_evaluate_ranks(
        encoder, tmp_path, capsys):
    """SeqCL and ICL (the k-means E-step on the encoder's output) with the plus preset;
    a run stopped after an epoch and taken on equals one that ran through; `evaluate`
    gives the run's test metrics, and its analyses run; the export's top-K give
    evaluate's."""
    import numpy as np
    import tensorflow as tf

    from iclrec_tf import evaluate, export
    from iclrec_tf.data.datasets import load_sequences

    path = write_dataset(tmp_path / "d.txt",
                         synthetic_sequences(num_users=120, num_items=30, seed=4, max_len=25))
    whole, stopped = tmp_path / "whole", tmp_path / "stopped"
    assert cli.run(lambda: fit.main(_small_encoder_run(path, whole, encoder, "--epochs", "2")),
                   "fit") == 0
    for epochs in ("1", "2"):
        assert cli.run(lambda epochs=epochs: fit.main(
            _small_encoder_run(path, stopped, encoder, "--epochs", epochs)), "fit") == 0
    assert "Resuming" in capsys.readouterr().out
    assert _metrics(stopped) == _metrics(whole)
    with open(whole / "history.csv") as stream:
        rows = list(csv.DictReader(stream))
    assert float(rows[-1]["icl_loss"]) > 0 and float(rows[-1]["seqcl_loss"]) > 0
    config = TrainConfig.from_json((whole / "config.json").read_text())
    expected_samples = "prefixes" if encoder in NON_CAUSAL_ENCODERS else "users"
    assert (config.encoder, config.train_samples) == (encoder, expected_samples)

    def evaluated(protocol):
        assert evaluate.main(["--run", str(whole), "--protocol", protocol]) == 0
        return json.loads(capsys.readouterr().out.splitlines()[-1])

    assert evaluated("reference") == pytest.approx(_metrics(whole)["test"], abs=1e-6)
    exclude = evaluated("exclude")
    # The analyses: by history length, and with noise in the histories.
    assert evaluate.main(["--run", str(whole), "--by-length"]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["groups"]
    assert evaluate.main(["--run", str(whole), "--noise-ratio", "0.2"]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["noise_ratio"] == 0.2
    assert export.main(["--run", str(whole), "--model-dir", str(tmp_path / "served"),
                        "--top-k", "10"]) == 0
    version_dir = pathlib.Path(capsys.readouterr().out.splitlines()[-1])
    # The version carries the run's settings, its encoder among them.
    assert TrainConfig.from_json(
        (version_dir / "assets.extra" / "config.json").read_text()) == config
    served = tf.saved_model.load(str(version_dir))
    data = load_sequences(path)
    histories = [data.sequence(user)[:-1] for user in range(data.num_users)]
    width = max(len(history) for history in histories)
    requests = np.stack([np.pad(h, (width - len(h), 0)) for h in histories]).astype(np.int64)
    top = served.signatures["serving_default"](item_ids=tf.constant(requests))["item_ids"]
    answers = data.answers("test")
    found = top.numpy() == answers[:, None]
    ranks = np.where(found.any(axis=1), found.argmax(axis=1), 10)
    for k in (5, 10):
        assert np.mean(ranks < k) == pytest.approx(exclude[f"HR@{k}"], abs=1e-9)
        assert np.mean(np.where(ranks < k, 1 / np.log2(ranks + 2), 0)) == pytest.approx(
            exclude[f"NDCG@{k}"], abs=1e-6)


def test_a_record_re_runs_from_its_config_json_whatever_the_presets_say(
        tmp_path, capsys, monkeypatch):
    path = write_dataset(tmp_path / "d.txt", synthetic_sequences(num_users=80, num_items=25))
    record = tmp_path / "record"
    flags = _small_encoder_run(path, record, "filter", "--epochs", "2", "--temperature", "0.5")
    assert cli.run(lambda: fit.main(flags), "fit") == 0
    written = TrainConfig.from_json((record / "config.json").read_text())
    # Today's presets change: the record's config.json still holds what it ran with.
    monkeypatch.setitem(config_module.PLUS_PRESET, "temperature", 0.9)
    monkeypatch.setitem(config_module.PLUS_PRESET, "length_buckets", False)
    again = tmp_path / "again"
    argv = ["--config", str(record / "config.json"), "--output-dir", str(again),
            "--verbose", "0"]
    assert cli.run(lambda: fit.main(argv), "fit") == 0
    assert TrainConfig.from_json((again / "config.json").read_text()) == written
    assert _metrics(again) == _metrics(record)
    # A flag given beside it overrides its field, and only that one.
    other_seed = tmp_path / "seed2"
    assert cli.run(lambda: fit.main([*argv[:2], "--seed", "2", "--epochs", "1",
                                     "--output-dir", str(other_seed), "--verbose", "0"]),
                   "fit") == 0
    assert TrainConfig.from_json((other_seed / "config.json").read_text()) == \
        dataclasses.replace(written, seed=2, epochs=1)


@pytest.mark.parametrize("contents,message", [
    (None, "fit: error: --config {path}: cannot read it (No such file or directory)"),
    ("{", "fit: error: {path}:1: invalid JSON"),
    ("[1, 2]", "fit: error: {path}: not a config.json (a JSON object of the run's settings)"),
    ('{"lr": -1}', "fit: error: {path}: --lr must be a positive number, got -1"),
    ('{"lr": "fast"}', "fit: error: {path}: a setting is not of its type (compare it with a "
                       "config.json that fit wrote)"),
    ('{"encoder": "fourier"}', "fit: error: {path}: --encoder fourier is not causal (a "
                               "position sees the items after it): it trains on "
                               "--train-samples prefixes only"),
])
def test_a_bad_config_file_is_one_line_naming_it(contents, message, tmp_path, capsys):
    path = tmp_path / "config.json"
    if contents is not None:
        path.write_text(contents)
    code, err = _fit(["--config", str(path), "--output-dir", str(tmp_path / "run")], capsys)
    assert (code, err) == (2, message.format(path=path))


def test_a_preset_beside_a_config_file_is_refused(tmp_path, capsys):
    path = tmp_path / "config.json"
    path.write_text(TrainConfig(preset="plus").to_json())
    code, err = _fit(["--config", str(path), "--preset", "paper"], capsys)
    assert (code, err) == (2, f"fit: error: --preset: not with --config, whose {path} holds "
                              "every setting of its run (preset 'plus' included)")


def test_every_committed_record_reads_back_as_it_ran_with_the_default_encoder():
    import argparse

    from conftest import REPO

    records = sorted((REPO / "docs" / "results").glob("*/config.json"))
    assert records
    for path in records:
        written = json.loads(path.read_text())
        config = json.loads(cli.config_from_file(path, argparse.Namespace()).to_json())
        assert {name: config[name] for name in written} == written, path
        assert config["encoder"] == written.get("encoder", "attention")

import csv
import json

import pytest
from conftest import synthetic_sequences, write_dataset

from iclrec_tf import cli, fit
from iclrec_tf.config import TrainConfig
from iclrec_tf.train.metrics import METRIC_NAMES


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
    (["--dataset", "movies"], "fit: error: --dataset 'movies' is neither a dataset name"),
    (["--contrast-type", "both"], "fit: error: --contrast-type must be one of"),
    (["--strategy", "tpu"], "argument --strategy: invalid choice: 'tpu'"),
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

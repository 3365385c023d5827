import json

import pytest
from conftest import REPO, synthetic_sequences, write_dataset

from iclrec_tf import cli, sweep
from iclrec_tf.config import TrainConfig


def _write(tmp_path, text):
    path = tmp_path / "queue.txt"
    path.write_text(text)
    return path


def test_a_queue_reads_names_and_fit_flags_skipping_comments(tmp_path):
    queue = _write(tmp_path, "# the rows\n\n"
                   "base   --dataset toys --patience 10  # trailing comment\n"
                   "deep/plus --dataset beauty --preset plus --fnm\n")
    runs = sweep.read_queue(queue)
    assert [(run.name, run.flags, run.where) for run in runs] == [
        ("base", ["--dataset", "toys", "--patience", "10"], f"{queue}:3"),
        ("deep/plus", ["--dataset", "beauty", "--preset", "plus", "--fnm"], f"{queue}:4"),
    ]
    # each line's config is fit's: flags over the dataset's (preset's) defaults
    assert (runs[0].config.patience, runs[0].config.next_item_loss) == (10, "bce")
    assert (runs[1].config.fnm, runs[1].config.next_item_loss) == (True, "sampled")


def test_a_line_edited_since_its_run_trained_is_refused_before_anything_trains(tmp_path,
                                                                             capsys):
    runs = tmp_path / "runs"
    (runs / "base").mkdir(parents=True)
    (runs / "base" / "config.json").write_text(TrainConfig.for_dataset("toys").to_json())
    queue = _write(tmp_path, "fresh --dataset toys\nbase  --dataset toys --seed 2\n")
    code = cli.run(lambda: sweep.main([str(queue), "--output-dir", str(runs)]), "sweep")
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err == (f"sweep: error: {queue}:2: --output-dir {runs / 'base'} holds a run with "
                   "other settings (--seed); rerun it with the same flags (--epochs and "
                   "--patience may be raised), or choose another --output-dir")
    assert sorted(p.name for p in runs.iterdir()) == ["base"]  # line 1 did not train
    # a raised --epochs or --patience passes the check: that run trains on
    sweep.check_run_dirs(sweep.read_queue(_write(tmp_path, "base --dataset toys --epochs 400\n")),
                         runs)


@pytest.mark.parametrize("text,message", [
    ("a --dataset toys\nb --bogus 3\n", "queue.txt:2: unrecognized arguments: --bogus 3"),
    ("a --pooling sum\n", "queue.txt:1: --pooling must be one of"),
    ("a --epochs 0\n", "queue.txt:1: --epochs must be a positive integer, got 0"),
    ("a --lr fast\n", "queue.txt:1: argument --lr: invalid float value: 'fast'"),
    ("a --length-buckets\n", "queue.txt:1: --length-buckets"),
    ("a --dataset movies\n", "queue.txt:1: --dataset 'movies' is neither a dataset name"),
    ("a\nb\na --seed 2\n", "queue.txt:3: run 'a' is already on line 1"),
    ("--dataset toys\n", "queue.txt:1: a line starts with the run's name"),
    ("../up --dataset toys\n", "queue.txt:1: a line starts with the run's name"),
    ("a --output-dir elsewhere\n", "queue.txt:1: --output-dir is set by the sweep"),
    ("a --threads=2\n", "queue.txt:1: --threads is set by the sweep"),
    ("a --dataset 'toys\n", "queue.txt:1: No closing quotation"),
    ("# nothing\n\n", "queue.txt: the queue holds no run"),
    ("a @table3:A --dataset toys\n", "queue.txt:1: @EXPERIMENT:ROW: the experiment must be "
     "one of table1, table2"),
    ("a @table2 --dataset toys\n", "queue.txt:1: @EXPERIMENT:ROW: the row is a short label"),
])
def test_a_bad_queue_line_is_one_line_naming_the_file_and_line(tmp_path, capsys, text, message):
    queue = _write(tmp_path, text)
    code = cli.run(lambda: sweep.main([str(queue), "--output-dir", str(tmp_path / "runs")]),
                   "sweep")
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert message in err and "\n" not in err
    assert err.startswith(f"sweep: error: {tmp_path}")
    assert not (tmp_path / "runs").exists()  # checked before anything trains


def test_a_missing_queue_names_the_file(tmp_path, capsys):
    missing = tmp_path / "nope.txt"
    code = cli.run(lambda: sweep.main([str(missing), "--output-dir", str(tmp_path)]), "sweep")
    assert code == 2
    assert capsys.readouterr().err.strip() == (
        f"sweep: error: {missing}: cannot read the queue (No such file or directory)")


@pytest.mark.heavy
def test_a_sweep_trains_what_is_left_reports_failures_and_resumes(tmp_path, capsys,
                                                                   monkeypatch):
    monkeypatch.chdir(REPO)
    data = write_dataset(tmp_path / "d.txt", synthetic_sequences(num_users=60, num_items=25))
    small = (f"--dataset {data} --epochs 1 --num-blocks 1 --hidden-size 8 "
             "--num-intent-clusters 4 --batch-size 32")
    queue = _write(tmp_path, f"fresh {small} --contrast-type none\n"
                             f"nested/seed2 {small} --contrast-type none --seed 2\n"
                             # more intents than users: fit refuses it once it has the data
                             f"refused {small} --num-intent-clusters 100\n")
    runs = tmp_path / "runs"

    failed = sweep.run_queue(sweep.read_queue(queue), runs, threads=1)

    assert failed == ["refused"]
    out = capsys.readouterr().out
    assert "refused: fit exited with 2" in out
    for name in ("fresh", "nested/seed2"):
        metrics = json.loads((runs / name / "metrics.json").read_text())
        assert metrics["epochs_trained"] == 1
        assert f"{name}: done in" in out
        log = (runs / f"{name}.log").read_text()
        assert log.startswith("$ ") and "--threads 1" in log.splitlines()[0]
        assert "Best epoch 1" in log
    assert "exceeds the number of users (60)" in (runs / "refused.log").read_text()
    assert json.loads((runs / "nested/seed2" / "config.json").read_text())["seed"] == 2

    # again, with fresh's --epochs raised: nested is skipped, fresh trains on, and what
    # failed runs again
    queue.write_text(queue.read_text().replace("none\n", "none --epochs 2\n", 1))
    assert sweep.run_queue(sweep.read_queue(queue), runs, threads=1) == ["refused"]
    out = capsys.readouterr().out
    assert "nested/seed2: finished before (best epoch 1 of 1), skipped" in out
    assert "fresh: done in" in out and "refused: fit exited with 2" in out
    assert json.loads((runs / "fresh" / "metrics.json").read_text())["epochs_trained"] == 2


def test_a_label_names_the_experiment_and_row_of_the_runs_record(tmp_path):
    queue = _write(tmp_path, "beauty-t2-E @table2:E --dataset beauty --contrast-type intent "
                             "--augmentation none\nplain --dataset toys\n")
    labelled, plain = sweep.read_queue(queue)
    assert labelled.label == ("table2", "E")
    assert labelled.flags[0] == "--dataset"
    assert labelled.config.augmentation == "none"
    assert plain.label is None


@pytest.mark.parametrize("text,message", [
    ("a --dataset toys\n", "queue.txt:1: --records needs each line's label, "
     "NAME @EXPERIMENT:ROW FLAGS..."),
    ("deep/a @table1:plus --dataset toys\n", "queue.txt:1: a record's name is one folder name"),
])
def test_records_need_labels_and_flat_names(tmp_path, capsys, text, message):
    queue = _write(tmp_path, text)
    code = cli.run(lambda: sweep.main([str(queue), "--check", "--records", "out"]), "sweep")
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and "\n" not in err


def test_check_reads_every_line_and_trains_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    queue = _write(tmp_path, "a @table1:plus --dataset toys --preset plus\n"
                             "b @table1:sasrec --dataset toys --contrast-type none\n")
    assert sweep.main([str(queue), "--check", "--records", "docs/results"]) == 0
    assert capsys.readouterr().out.strip() == f"{queue}: 2 runs checked"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["queue.txt"]
    code = cli.run(lambda: sweep.main([str(queue)]), "sweep")
    assert code == 2
    assert capsys.readouterr().err.strip() == (
        "sweep: error: --output-dir is required to train (or give --check)")


def test_every_queue_of_the_paper_passes_check(capsys):
    queues = sorted((REPO / "pipelines" / "paper").glob("*.txt"))
    assert len(queues) >= 28
    for queue in queues:
        assert sweep.main([str(queue), "--check", "--records", "docs/results"]) == 0
        assert capsys.readouterr().out.endswith("runs checked\n")

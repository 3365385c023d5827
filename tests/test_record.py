import json
import subprocess
import sys

import pytest
from conftest import REPO

from iclrec_tf import cli, record, sweep

pytestmark = pytest.mark.heavy


def _record(*flags):
    return subprocess.run([sys.executable, "-m", "iclrec_tf.record", *flags],
                          capture_output=True, text=True, cwd=REPO, timeout=900)


def test_a_record_holds_the_run_and_its_analyses_on_test(toys_run, data_dir, tmp_path):
    run_dir, _ = toys_run
    out = tmp_path / "results" / "toys-smoke"
    result = _record("--run", str(run_dir), "--data-dir", str(data_dir), "--out", str(out),
                     "--experiment", "table1", "--row", "plus", "--noise-ratios", "0", "0.2",
                     "--noise-seeds", "1", "2", "--threads", "1")
    assert result.returncode == 0, result.stderr[-2000:]
    assert sorted(p.name for p in out.iterdir()) == [
        "by_length.json", "config.json", "history.csv", "metrics.json", "noise.json",
        "record.json"]
    assert all(oct(p.stat().st_mode & 0o777) == "0o644" for p in out.iterdir())
    assert json.loads((out / "record.json").read_text()) == {
        "dataset": "toys", "experiment": "table1", "row": "plus", "seed": 1}
    for name in ("config.json", "history.csv", "metrics.json"):
        assert (out / name).read_text() == (run_dir / name).read_text()
    test = json.loads((run_dir / "metrics.json").read_text())["test"]
    by_length = json.loads((out / "by_length.json").read_text())
    assert sum(group["users"] for group in by_length["groups"]) == 5000
    noise = json.loads((out / "noise.json").read_text())
    assert [(n["noise_ratio"], n["seed"]) for n in noise] == [(0, 1), (0, 2), (0.2, 1), (0.2, 2)]
    for name, value in test.items():
        assert by_length[name] == pytest.approx(value, abs=1e-6)
        assert noise[0][name] == pytest.approx(value, abs=1e-6)
    assert noise[2]["NDCG@20"] != noise[3]["NDCG@20"]  # two seeds of noise
    assert not list(out.parent.glob(".*"))  # no staging folder left behind


@pytest.mark.parametrize("flags,message", [
    (["--run", "r", "--experiment", "table1", "--row", "a b"],
     "--experiment/--row: the row is a short label without spaces, got 'a b'"),
    (["--run", "r", "--experiment", "table1", "--row", "a", "--noise-ratios", "-1"],
     "--noise-ratios must be non-negative numbers, got -1.0"),
    (["--reference-weights", "w.npz", "--experiment", "released", "--row", "released"],
     "--dataset is required with --reference-weights"),
    (["--reference-weights", "w.npz", "--dataset", "mine.txt", "--experiment", "released",
      "--row", "released"], "mine.txt: a record is of one of toys, beauty, sports, yelp"),
])
def test_bad_record_flags_get_one_line_and_exit_2(flags, message, capsys, tmp_path):
    code = cli.run(lambda: record.main([*flags, "--out", str(tmp_path / "rec")]), "record")
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and "\n" not in err
    assert not (tmp_path / "rec").exists()


def test_a_sweep_with_records_writes_each_record_as_its_run_finishes(tmp_path, capsys,
                                                                     monkeypatch, data_dir):
    monkeypatch.chdir(REPO)
    small = ("--dataset beauty --max-users 300 --epochs 1 --num-blocks 1 --hidden-size 8 "
             "--num-intent-clusters 4 --batch-size 64")
    queue = tmp_path / "queue.txt"
    queue.write_text(f"b-sasrec @table2:F {small} --contrast-type none\n"
                     f"b-icl-plain @table2:E {small} --contrast-type intent "
                     "--augmentation none\n")
    runs, records = tmp_path / "runs", tmp_path / "results"
    assert sweep.run_queue(sweep.read_queue(queue), runs, threads=1, data_dir=data_dir,
                           records_dir=records) == []
    for name, row in (("b-sasrec", "F"), ("b-icl-plain", "E")):
        assert json.loads((records / name / "record.json").read_text())["row"] == row
        assert len(json.loads((records / name / "noise.json").read_text())) == 15
    assert "b-icl-plain: record written to" in capsys.readouterr().out
    # Again: the runs have finished and their records are up to date, so nothing runs.
    written = (records / "b-sasrec" / "noise.json").stat().st_mtime_ns
    assert sweep.run_queue(sweep.read_queue(queue), runs, threads=1, data_dir=data_dir,
                           records_dir=records) == []
    assert (records / "b-sasrec" / "noise.json").stat().st_mtime_ns == written
    assert "record written" not in capsys.readouterr().out

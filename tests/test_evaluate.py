import json
import subprocess
import sys

import pytest
from conftest import REPO, reference_dir

from iclrec_tf import cli, evaluate

pytestmark = pytest.mark.heavy


def test_evaluate_a_run_reproduces_its_test_metrics(toys_run, data_dir):
    run_dir, _ = toys_run
    result = subprocess.run(
        [sys.executable, "-m", "iclrec_tf.evaluate", "--run", str(run_dir), "--data-dir",
         str(data_dir)], capture_output=True, text=True, cwd=REPO, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    metrics = json.loads(result.stdout.strip().splitlines()[-1])
    written = json.loads((run_dir / "metrics.json").read_text())
    for name, value in written["test"].items():
        assert metrics[name] == pytest.approx(value, abs=1e-6)


def _evaluate(argv, capsys):
    code = cli.run(lambda: evaluate.main(argv), "evaluate")
    return code, capsys.readouterr().err.strip()


def test_a_run_without_weights_is_refused(tmp_path, capsys):
    (tmp_path / "config.json").write_text("{}")
    code, err = _evaluate(["--run", str(tmp_path)], capsys)
    assert (code, err) == (2, f"evaluate: error: {tmp_path}: no trained weights in weights/")


def test_a_folder_that_is_not_a_run_is_refused(tmp_path, capsys):
    code, err = _evaluate(["--run", str(tmp_path)], capsys)
    assert (code, err) == (2, f"evaluate: error: {tmp_path}: no config.json; "
                              "is this a run directory?")


def test_reference_weights_of_another_dataset_are_refused(data_dir, capsys):
    weights = reference_dir() / "ICLRec-Toys_and_Games-1.npz"
    code, err = _evaluate(["--dataset", "beauty", "--data-dir", str(data_dir),
                           "--reference-weights", str(weights)], capsys)
    assert code == 2
    assert err == (f"evaluate: error: {weights}: 11926 item embeddings, but beauty needs "
                   "12103 (max item id + 2)")


def test_reference_weights_need_a_dataset(capsys):
    code, err = _evaluate(["--reference-weights", "w.npz"], capsys)
    assert (code, err) == (2, "evaluate: error: --dataset is required with --reference-weights")


def test_the_cli_exits_2_without_a_traceback():
    result = subprocess.run([sys.executable, "-m", "iclrec_tf.evaluate", "--run", "/nonexistent"],
                            capture_output=True, text=True, cwd=REPO, timeout=300)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        "python -m iclrec_tf.evaluate: error: /nonexistent: no config.json; "
        "is this a run directory?")


@pytest.mark.parametrize("flags,message", [
    (["--noise-ratio", "-0.1"], "--noise-ratio must be a non-negative number, got -0.1"),
    (["--noise-ratio", "nan"], "--noise-ratio must be a non-negative number, got nan"),
    (["--noise-ratio", "inf"], "--noise-ratio must be a non-negative number, got inf"),
    (["--noise-ratio", "lots"], "argument --noise-ratio: invalid float value: 'lots'"),
    (["--seed", "2"], "--seed seeds the noise: it needs --noise-ratio"),
    (["--noise-ratio", "0.1", "--seed", "-1"], "--seed must be a non-negative integer, got -1"),
    (["--by-length", "--noise-ratio", "0.1"],
     "--by-length groups the clean evaluation: give it without --noise-ratio"),
])
def test_bad_analysis_flags_get_one_line_and_exit_2(flags, message):
    result = subprocess.run(
        [sys.executable, "-m", "iclrec_tf.evaluate", "--run", "/nonexistent", *flags],
        capture_output=True, text=True, cwd=REPO, timeout=300)
    assert result.returncode == 2
    assert result.stderr.strip() == f"python -m iclrec_tf.evaluate: error: {message}"


def _evaluate_json(run_dir, data_dir, *flags):
    result = subprocess.run(
        [sys.executable, "-m", "iclrec_tf.evaluate", "--run", str(run_dir), "--data-dir",
         str(data_dir), *flags], capture_output=True, text=True, cwd=REPO, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_by_length_groups_every_user_once_and_average_to_the_overall_metrics(toys_run,
                                                                            data_dir):
    run_dir, _ = toys_run
    result = _evaluate_json(run_dir, data_dir, "--by-length", "--length-buckets")
    groups = result["groups"]
    # 5,000 users: a group needs 500, so 10-19 and 20+ go together
    assert [g["name"] for g in groups] == ["1-4", "5-9", "10+"]
    assert sum(g["users"] for g in groups) == 5000
    written = json.loads((run_dir / "metrics.json").read_text())["test"]
    for name, value in written.items():
        assert result[name] == pytest.approx(value, abs=1e-6)
        assert sum(g[name] * g["users"] for g in groups) / 5000 == pytest.approx(value, abs=1e-6)


def test_noise_is_seeded_and_a_ratio_of_zero_is_the_clean_evaluation(toys_run, data_dir):
    run_dir, _ = toys_run
    clean = _evaluate_json(run_dir, data_dir, "--noise-ratio", "0")
    assert (clean.pop("noise_ratio"), clean.pop("seed")) == (0.0, 1)
    written = json.loads((run_dir / "metrics.json").read_text())["test"]
    assert clean == pytest.approx(written, abs=1e-6)
    noisy = _evaluate_json(run_dir, data_dir, "--noise-ratio", "0.2", "--seed", "3")
    bucketed = _evaluate_json(run_dir, data_dir, "--noise-ratio", "0.2", "--seed", "3",
                              "--length-buckets", "--batch-size", "100")
    assert noisy == pytest.approx(bucketed, abs=1e-9)
    assert (noisy["noise_ratio"], noisy["seed"]) == (0.2, 3)
    # a one-epoch model hits few answers, so some metrics may stay put; not all do
    assert any(noisy[name] != pytest.approx(clean[name], abs=1e-9) for name in written)

"""pipelines/paper/report.py, run as a user would on small synthetic records."""

import json
import subprocess
import sys

import pytest
from conftest import REPO

SCRIPT = REPO / "pipelines" / "paper" / "report.py"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _metrics(ndcg20):
    """Six metrics that grow with `ndcg20`, distinguishable in a table."""
    return {"HR@5": 2 * ndcg20, "NDCG@5": 0.6 * ndcg20, "HR@10": 3 * ndcg20,
            "NDCG@10": 0.8 * ndcg20, "HR@20": 4 * ndcg20, "NDCG@20": ndcg20}


def write_record(folder, name, dataset, experiment, row, seed=1, preset="plus", ndcg20=0.05):
    record = folder / name
    record.mkdir(parents=True)
    (record / "record.json").write_text(json.dumps(
        {"dataset": dataset, "experiment": experiment, "row": row, "seed": seed}))
    (record / "config.json").write_text(json.dumps({"preset": preset, "seed": seed}))
    (record / "metrics.json").write_text(json.dumps(
        {"valid": _metrics(ndcg20 * 1.2), "test": _metrics(ndcg20)}))
    groups = [{"name": name, "users": users, **_metrics(ndcg20 * factor)}
              for name, users, factor in (("1-4", 600, 0.9), ("5-9", 300, 1.1),
                                          ("20+", 100, 1.3))]
    (record / "by_length.json").write_text(json.dumps({**_metrics(ndcg20), "groups": groups}))
    (record / "noise.json").write_text(json.dumps(
        [{**_metrics(ndcg20 * (1 - ratio) - 0.0001 * noise_seed), "noise_ratio": ratio,
          "seed": noise_seed} for ratio in (0.0, 0.1, 0.2) for noise_seed in (1, 2)]))
    if experiment != "released":  # released weights have no history
        epochs = range(6)
        (record / "history.csv").write_text("epoch,rec_loss,val_NDCG@20\n" + "".join(
            f"{epoch},{9 - epoch},{ndcg20 * (1 - abs(epoch - 3) / 10)}\n" for epoch in epochs))
    return record


def _report(records, out):
    return subprocess.run([sys.executable, str(SCRIPT), str(records), "--out", str(out)],
                          capture_output=True, text=True, cwd=REPO, timeout=300)


@pytest.fixture
def records(tmp_path):
    folder = tmp_path / "results"
    write_record(folder, "toys-released", "toys", "released", "released", preset="paper",
                 ndcg20=0.0557)
    write_record(folder, "toys-plus-s1", "toys", "table1", "plus", seed=1, ndcg20=0.0720)
    write_record(folder, "toys-plus-s2", "toys", "table1", "plus", seed=2, ndcg20=0.0730)
    write_record(folder, "toys-sasrec", "toys", "table1", "sasrec", ndcg20=0.0700)
    write_record(folder, "toys-plus-lr", "toys", "preset_tuning", "lr0.0005", ndcg20=0.0710)
    for row, value in zip("ABCDEF", (0.065, 0.066, 0.060, 0.064, 0.058, 0.063), strict=True):
        write_record(folder, f"beauty-t2-{row}", "beauty", "table2", row, ndcg20=value)
    for k, value in ((16, 0.061), (64, 0.064), (256, 0.066)):
        write_record(folder, f"beauty-k{k}", "beauty", "fig5_k", str(k), ndcg20=value)
    return folder


def test_the_report_draws_tables_and_figures_from_records_and_names_what_is_missing(
        records, tmp_path):
    (tmp_path / "empty").mkdir()
    out = tmp_path / "paper"
    result = _report(records, out)
    assert result.returncode == 0, result.stderr
    drawn = {"table1.md", "table2.md", "fig3_toys.png", "fig4_toys.png", "fig5_k.png",
             "curves_toys.png", "README.md"}
    assert {p.name for p in out.iterdir()} == drawn
    for png in out.glob("*.png"):
        assert png.read_bytes()[:8] == PNG_SIGNATURE and png.stat().st_size > 10_000
        assert oct(png.stat().st_mode & 0o777) == "0o644"
    table1 = (out / "table1.md").read_text()
    # the two seeds' mean, their range, the paper's row and an anchor beside ours
    assert ("| ICLRec+ (ours) | 1, 2 | 0.1450 | 0.2175 | 0.2900 | 0.0435 | 0.0580 | 0.0725 "
            "| 0.0870 | 0.0720–0.0730 |") in table1
    assert "| ICLRec (paper, Table 1) | | 0.0590 | – | 0.1150 | 0.0403 | – | 0.0560 |" in table1
    assert "| ICSRec (WSDM 2024) (published) |" in table1
    assert "| released weights | 1 |" in table1
    table2 = (out / "table2.md").read_text()
    assert "| C | only ICL | 0.0600 | 0.0429 |" in table2
    out_lines = result.stdout.splitlines()
    for missing in ("table1: no records of sports", "fig3: no records of yelp",
                    "fig4: no records of beauty", "fig5_lambda: no records",
                    "fig6_batch: no records"):
        assert f"not drawn yet: {missing}" in out_lines
        assert f"- {missing}" in (out / "README.md").read_text()
    assert "table2: no records" not in result.stdout
    # a tuning run is in no table, but among the learning curves
    assert "toys-plus-lr" not in table1
    assert "![curves_toys.png](curves_toys.png)" in (out / "README.md").read_text()
    # without records of an experiment: its table says so, and the output names it
    result = _report(tmp_path / "empty", tmp_path / "empty-paper")
    assert "not drawn yet: table2: no records" in result.stdout.splitlines()
    assert "No records yet" in (tmp_path / "empty-paper" / "table2.md").read_text()


def test_a_broken_record_is_one_line_naming_its_file(records, tmp_path):
    (records / "toys-sasrec" / "noise.json").write_text("[{")
    result = _report(records, tmp_path / "paper")
    assert result.returncode == 2
    assert result.stderr.strip() == (f"python pipelines/paper/report.py: error: "
                                     f"{records / 'toys-sasrec' / 'noise.json'}:1: invalid JSON")
    (records / "toys-sasrec" / "noise.json").unlink()
    result = _report(records, tmp_path / "paper")
    assert result.stderr.strip().endswith("noise.json: missing from the record")
    (records / "toys-plus-s1" / "history.csv").write_text("epoch,rec_loss\n0,9\n1,nan?\n")
    result = _report(records, tmp_path / "paper")
    assert result.stderr.strip().endswith(
        f"{records / 'toys-plus-s1' / 'history.csv'}:3: rec_loss is not a number")
    result = _report(tmp_path / "nowhere", tmp_path / "paper")
    assert result.returncode == 2 and "no such folder of records" in result.stderr


def test_noise_seeds_with_equal_figures_draw_fig4(tmp_path):
    """Three noise seeds with one NDCG@5 (sports-seqcl's at ratio 0): their mean rounds
    past it, and the range drawn around the mean must not go negative."""
    folder = tmp_path / "results"
    record = write_record(folder, "sports-plus-s1", "sports", "table1", "plus")
    (record / "noise.json").write_text(json.dumps(
        [{**_metrics(0.05), "NDCG@5": 0.02726751706450512, "noise_ratio": ratio, "seed": seed}
         for ratio in (0.0, 0.1) for seed in (1, 2, 3)]))
    result = _report(folder, tmp_path / "paper")
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "paper" / "fig4_sports.png").read_bytes().startswith(PNG_SIGNATURE)

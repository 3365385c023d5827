"""The paper's tables and figures, drawn from run records alone.

    python pipelines/paper/report.py docs/results --out docs/paper

Reads every record folder under the first argument (`iclrec_tf.record`: its
`record.json`, `config.json`, `metrics.json`, `by_length.json` and `noise.json`)
and writes into `--out`:

- `table1.md`: the results table, six test metrics for each dataset and row
  (mean over seeds), beside the paper's ICLRec, the released weights and the
  published anchors (`published.json`), then its compact form (NDCG@20, HR@20);
- `table2.md`: the ablation, test NDCG@20 of rows A to F by recipe, beside the
  paper's (written without records too, saying so);
- `fig3_<dataset>.png`: test NDCG@20 of each user group by train-history length,
  one bar for each model, each group's user count under it;
- `fig4_<dataset>.png`: test NDCG@5 at each noise ratio (bars, mean over the
  noise seeds, their range as error bars) and its drop from ratio 0 (lines);
- `fig5_k.png`, `fig5_lambda.png`, `fig6_batch.png`: test NDCG@20 against the
  value varied, one line for each dataset and recipe;
- `curves_<dataset>.png`: the learning curves (valid NDCG@20 and the training
  next-item loss by epoch) of the dataset's results-table runs and of its
  `preset_tuning` runs, what was tried in choosing its preset;
- `README.md`: what was drawn, and each dataset or experiment that has no
  records yet (printed too; that is not an error).

Nobody needs to train to redraw them: the records are in the repository.
"""

import argparse
import collections
import csv
import io
import json
import pathlib
import sys

import numpy as np

from iclrec_tf import files

DATASETS = ("toys", "beauty", "sports", "yelp")
METRICS = ("HR@5", "HR@10", "HR@20", "NDCG@5", "NDCG@10", "NDCG@20")
# The results table's rows, in order; any other row (a new encoder's) follows them.
TABLE1_ROWS = ("paper", "sasrec", "seqcl", "plus")
ROW_NAMES = {"paper": "ICLRec, paper preset (ours)", "sasrec": "SASRec, full softmax (ours)",
             "seqcl": "ICLRec+ SeqCL only (ours)", "plus": "ICLRec+ (ours)",
             "released": "released weights"}
SWEEPS = {"fig5_k": ("number of intents K", "fig5_k.png"),
          "fig5_lambda": ("ICL weight λ", "fig5_lambda.png"),
          "fig6_batch": ("batch size", "fig6_batch.png")}
PUBLISHED = pathlib.Path(__file__).with_name("published.json")


class ReportError(Exception):
    """A record that cannot be read; the message names its file."""


Record = collections.namedtuple("Record", "name dataset experiment row seed preset metrics "
                                          "by_length noise history")
# The records whose learning curves `curves` draws.
CURVE_EXPERIMENTS = ("table1", "preset_tuning")


def read_records(folder):
    """Every record under `folder`, sorted by name.

    Raises:
      ReportError: naming the file of a record that cannot be read.
    """
    records = []
    for path in sorted(pathlib.Path(folder).glob("*/record.json")):
        record_dir = path.parent

        def load(name, record_dir=record_dir):
            file = record_dir / name
            try:
                return json.loads(file.read_text())
            except FileNotFoundError:
                raise ReportError(f"{file}: missing from the record") from None
            except json.JSONDecodeError as error:
                raise ReportError(f"{file}:{error.lineno}: invalid JSON") from None

        label = load("record.json")
        missing = {"dataset", "experiment", "row", "seed"} - set(label)
        if missing:
            raise ReportError(f"{path}: no {', '.join(sorted(missing))}")
        config = load("config.json")
        records.append(Record(record_dir.name, label["dataset"], label["experiment"],
                              str(label["row"]), label["seed"], config["preset"],
                              load("metrics.json"), load("by_length.json"),
                              load("noise.json"), _history(record_dir / "history.csv")))
    return records


def _history(path):
    """`{column: [value per epoch]}` of a record's `history.csv`; None without one
    (released weights have no history).

    Raises:
      ReportError: naming the file and line of a value that is not a number.
    """
    if not path.exists():
        return None
    with open(path, newline="") as stream:
        rows = list(csv.DictReader(stream))
    history = collections.defaultdict(list)
    for line, row in enumerate(rows, start=2):
        for column, value in row.items():
            try:
                history[column].append(float(value))
            except (TypeError, ValueError):
                raise ReportError(f"{path}:{line}: {column} is not a number") from None
    return dict(history)


def _mean(values):
    return float(np.mean(values)) if values else None


def _cell(value, digits=4):
    return "–" if value is None else f"{value:.{digits}f}"


def _ordered_rows(rows):
    return sorted(rows, key=lambda row: (TABLE1_ROWS.index(row) if row in TABLE1_ROWS
                                         else len(TABLE1_ROWS), row))


def table1(records, published):
    """The results table's Markdown, and the datasets it has no records for."""
    lines = ["# The results table", "",
             "Test, full ranking, leave-one-out, on the files of `../shared/data`. Our rows "
             "are the mean over their seeds (the seeds' range in the last column), each run "
             "selected on valid NDCG@20. Drawn by `python pipelines/paper/report.py "
             "docs/results --out docs/paper` from the records under `docs/results/`.", ""]
    compact = ["## Compact form (test NDCG@20 / HR@20)", "",
               "| model | " + " | ".join(DATASETS) + " |", "|---" * (len(DATASETS) + 1) + "|"]
    # The compact form's rows: the paper and the released weights, ours, then the anchors.
    compact_rows, compact_anchors = collections.OrderedDict(), collections.OrderedDict()
    missing = []
    for dataset in DATASETS:
        ours = [r for r in records if r.dataset == dataset
                and r.experiment in ("table1", "released")]
        if not ours:
            missing.append(dataset)
        lines += [f"## {dataset.capitalize()}", "",
                  "| model | seeds | " + " | ".join(METRICS) + " | valid NDCG@20 | "
                  "range of test NDCG@20 |", "|---" * (len(METRICS) + 4) + "|"]
        paper = published["table1"][dataset]
        lines.append("| ICLRec (paper, Table 1) | | "
                     + " | ".join(_cell(paper.get(m)) for m in METRICS) + " | | |")
        compact_rows.setdefault("ICLRec (paper, Table 1)", {})[dataset] = (
            paper["NDCG@20"], paper["HR@20"])
        compact_rows.setdefault(ROW_NAMES["released"], {})
        by_row = collections.defaultdict(list)
        for record in ours:
            by_row[record.row].append(record)
        for row in ["released"] + _ordered_rows(set(by_row) - {"released"}):
            if row not in by_row:
                continue
            runs = by_row[row]
            test = {m: _mean([r.metrics["test"][m] for r in runs]) for m in METRICS}
            valid = _mean([r.metrics["valid"]["NDCG@20"] for r in runs
                           if "NDCG@20" in r.metrics.get("valid", {})])
            spread = [r.metrics["test"]["NDCG@20"] for r in runs]
            seeds = ", ".join(str(r.seed) for r in sorted(runs, key=lambda r: r.seed))
            name = ROW_NAMES.get(row, f"{row} (ours)")
            lines.append(f"| {name} | {seeds} | "
                         + " | ".join(_cell(test[m]) for m in METRICS)
                         + f" | {_cell(valid)} | "
                         + (f"{min(spread):.4f}–{max(spread):.4f}" if len(runs) > 1 else "")
                         + " |")
            compact_rows.setdefault(name, {})[dataset] = (test["NDCG@20"], test["HR@20"])
        for anchor, values in published["anchors"].items():
            if dataset in values:
                hr20, ndcg20 = values[dataset]
                lines.append(f"| {anchor} (published) | | – | – | {hr20:.4f} | – | – | "
                             f"{ndcg20:.4f} | | |")
                compact_anchors.setdefault(f"{anchor} (published)", {})[dataset] = (ndcg20,
                                                                                    hr20)
        lines.append("")
    for name, cells in [*compact_rows.items(), *compact_anchors.items()]:
        if not cells:  # the released weights' place, where no dataset has them
            continue
        compact.append(f"| {name} | " + " | ".join(
            f"{cells[d][0]:.4f} / {cells[d][1]:.4f}" if d in cells else "–"
            for d in DATASETS) + " |")
    lines += compact + ["", "How the anchors' protocol differs from ours: "
                        + published["anchor_protocol"], ""]
    return "\n".join(lines), missing


def table2(records, published):
    """The ablation's Markdown, and whether it has records."""
    ours = [r for r in records if r.experiment == "table2"]
    lines = ["# Table 2: the ablation", "",
             "Test NDCG@20, mean over seeds; the paper's beside ours. Rows G and H need "
             "S3-Rec's pre-training, which this project does not have.", ""]
    if not ours:
        lines += ["No records yet: `python -m iclrec_tf.sweep "
                  "pipelines/paper/table2_<dataset>_<recipe>.txt --output-dir runs/paper "
                  "--records docs/results` trains its rows.", ""]
    for preset in sorted({r.preset for r in ours}):
        datasets = [d for d in DATASETS if any(r.dataset == d and r.preset == preset
                                               for r in ours)]
        lines += [f"## The {preset} recipe (`--preset {preset}`)", "",
                  "| row | model | " + " | ".join(f"{d} (ours) | {d} (paper)" for d in datasets)
                  + " |", "|---" * (2 + 2 * len(datasets)) + "|"]
        for row in "ABCDEF":
            cells = []
            for dataset in datasets:
                values = [r.metrics["test"]["NDCG@20"] for r in ours
                          if (r.dataset, r.preset, r.row) == (dataset, preset, row)]
                cells += [_cell(_mean(values)), _cell(published["table2"][row][dataset])]
            lines.append(f"| {row} | {published['table2'][row]['model']} | "
                         + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines), bool(ours)


def _models(records, dataset):
    """`{label: [records]}` of the dataset's results-table rows and released weights."""
    models = collections.OrderedDict()
    rows = [r for r in records if r.dataset == dataset and r.experiment in ("table1",
                                                                            "released")]
    for row in ["released"] + _ordered_rows({r.row for r in rows} - {"released"}):
        runs = [r for r in rows if r.row == row]
        if runs:
            models[ROW_NAMES.get(row, row).replace(" (ours)", "")] = runs
    return models


def fig3(plt, records, dataset, path):
    """Test NDCG@20 by user group; returns whether there was anything to draw."""
    models = _models(records, dataset)
    if not models:
        return False
    groups = [g["name"] for g in next(iter(models.values()))[0].by_length["groups"]]
    users = [g["users"] for g in next(iter(models.values()))[0].by_length["groups"]]
    figure, axes = plt.subplots(figsize=(7.5, 4.2))
    width = 0.8 / len(models)
    for index, (label, runs) in enumerate(models.items()):
        values = [_mean([next(g["NDCG@20"] for g in r.by_length["groups"] if g["name"] == name)
                         for r in runs]) for name in groups]
        axes.bar(np.arange(len(groups)) + (index - (len(models) - 1) / 2) * width, values,
                 width, label=label)
    axes.set_xticks(range(len(groups)),
                    [f"{name}\n{count:,} users" for name, count in zip(groups, users,
                                                                        strict=True)])
    axes.set_xlabel("length of the user's train history")
    axes.set_ylabel("test NDCG@20")
    axes.set_title(f"{dataset.capitalize()}: accuracy by user group (the paper's Fig. 3)")
    axes.legend(fontsize=8)
    _save(plt, figure, path)
    return True


def fig4(plt, records, dataset, path):
    """Test NDCG@5 under noise and its drop; returns whether there was anything to draw."""
    models = _models(records, dataset)
    if not models:
        return False
    ratios = sorted({n["noise_ratio"] for runs in models.values() for r in runs
                     for n in r.noise})
    figure, (bars, drops) = plt.subplots(2, 1, figsize=(7.5, 6), sharex=True,
                                         height_ratios=(3, 2))
    width = 0.8 / len(models)
    for index, (label, runs) in enumerate(models.items()):
        per_ratio = [[n["NDCG@5"] for r in runs for n in r.noise if n["noise_ratio"] == ratio]
                     for ratio in ratios]
        means = np.array([np.mean(values) for values in per_ratio])
        # Clipped at 0: the mean of equal values can round past them.
        low = np.maximum(means - np.array([np.min(values) for values in per_ratio]), 0)
        high = np.maximum(np.array([np.max(values) for values in per_ratio]) - means, 0)
        positions = np.arange(len(ratios)) + (index - (len(models) - 1) / 2) * width
        bar = bars.bar(positions, means, width, yerr=[low, high], capsize=2, label=label)
        drops.plot(np.arange(len(ratios)), 100 * (1 - means / means[0]), marker="o",
                   label=label, color=bar.patches[0].get_facecolor())
    drops.set_xticks(range(len(ratios)), [f"{100 * ratio:g}%" for ratio in ratios])
    drops.set_xlabel("noise ratio (random items inserted into each test input)")
    bars.set_ylabel("test NDCG@5\n(range over noise seeds)")
    drops.set_ylabel("drop from no noise, %")
    drops.grid(alpha=0.3)
    bars.set_title(f"{dataset.capitalize()}: robustness to noise (the paper's Fig. 4)")
    bars.legend(fontsize=8, loc="lower left")
    _save(plt, figure, path)
    return True


def sweep_figure(plt, records, experiment, path):
    """Test NDCG@20 against a swept value; returns whether there was anything to draw."""
    ours = [r for r in records if r.experiment == experiment]
    if not ours:
        return False
    title, _ = SWEEPS[experiment]
    figure, axes = plt.subplots(figsize=(6.5, 4))
    for dataset, preset in sorted({(r.dataset, r.preset) for r in ours}):
        line = sorted((float(r.row), r.metrics["test"]["NDCG@20"]) for r in ours
                      if (r.dataset, r.preset) == (dataset, preset))
        values = collections.defaultdict(list)
        for value, ndcg in line:
            values[value].append(ndcg)
        x = sorted(values)
        axes.plot(x, [np.mean(values[v]) for v in x], marker="o",
                  label=f"{dataset}, {preset} recipe")
    axes.set_xscale("log")
    axes.set_xlabel(title)
    axes.set_ylabel("test NDCG@20")
    axes.set_title(f"Test NDCG@20 by {title}")
    axes.legend(fontsize=8)
    _save(plt, figure, path)
    return True


def curves(plt, records, dataset, path):
    """Valid NDCG@20 and the training next-item loss by epoch, one line a run of the
    dataset's results table and preset tuning; returns whether there was anything
    to draw."""
    runs = [r for r in records if r.dataset == dataset and r.experiment in CURVE_EXPERIMENTS
            and r.history is not None]
    if not runs:
        return False
    figure, (valid, loss) = plt.subplots(2, 1, figsize=(7.5, 6.5), sharex=True)
    for run in sorted(runs, key=lambda r: (r.experiment, r.name)):
        epochs = np.array(run.history["epoch"]) + 1
        style = "-" if run.experiment == "table1" else "--"
        line, = valid.plot(epochs, run.history["val_NDCG@20"], style, label=run.name)
        best = int(np.argmax(run.history["val_NDCG@20"]))
        valid.plot(epochs[best], run.history["val_NDCG@20"][best], "o",
                   color=line.get_color())
        loss.plot(epochs, run.history["rec_loss"], style, color=line.get_color())
    valid.set_ylabel("valid NDCG@20\n(dot: the epoch kept)")
    loss.set_ylabel("training next-item loss")
    loss.set_xlabel("epoch")
    valid.grid(alpha=0.3)
    loss.grid(alpha=0.3)
    valid.set_title(f"{dataset.capitalize()}: learning curves (solid: results table, "
                    "dashed: preset tuning)")
    valid.legend(fontsize=7, ncol=2)
    _save(plt, figure, path)
    return True


def _save(plt, figure, path):
    """Writes `figure` as a PNG atomically (`iclrec_tf.files`), and closes it."""
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    plt.close(figure)
    files.write_bytes(path, buffer.getvalue())


def write_report(records_dir, out):
    """Writes every table and figure the records allow into `out`.

    Returns:
      `(written, missing)`: the file names written, and a line for each dataset or
      experiment without records.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = read_records(records_dir)
    published = json.loads(PUBLISHED.read_text())
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written, missing = [], []
    text, no_table1 = table1(records, published)
    files.write_text(out / "table1.md", text)
    written.append("table1.md")
    missing += [f"table1: no records of {dataset}" for dataset in no_table1]
    text, has_records = table2(records, published)
    files.write_text(out / "table2.md", text)
    written.append("table2.md")
    if not has_records:
        missing.append("table2: no records")
    for dataset in DATASETS:
        for number, draw in ((3, fig3), (4, fig4)):
            name = f"fig{number}_{dataset}.png"
            if draw(plt, records, dataset, out / name):
                written.append(name)
            else:
                missing.append(f"fig{number}: no records of {dataset}")
    for experiment, (_, name) in SWEEPS.items():
        if sweep_figure(plt, records, experiment, out / name):
            written.append(name)
        else:
            missing.append(f"{experiment}: no records")
    for dataset in DATASETS:
        name = f"curves_{dataset}.png"
        if curves(plt, records, dataset, out / name):
            written.append(name)
    index = ["# The paper's tables and figures, from our records", "",
             f"Drawn from the {len(records)} records under `{records_dir}` by "
             f"`python pipelines/paper/report.py {records_dir} --out {out}`.", "",
             *[f"- [{name}]({name})" for name in written if name.endswith(".md")], "",
             *[f"![{name}]({name})\n" for name in written if name.endswith(".png")],
             "Not drawn yet:", "", *[f"- {line}" for line in missing], ""]
    files.write_text(out / "README.md", "\n".join(index))
    return written, missing


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python pipelines/paper/report.py",
        description="Draw the paper's tables and figures from run records.")
    parser.add_argument("records", help="the folder of records, docs/results")
    parser.add_argument("--out", required=True, help="where the PNGs and tables go")
    args = parser.parse_args(argv)
    if not pathlib.Path(args.records).is_dir():
        parser.exit(2, f"{parser.prog}: error: {args.records}: no such folder of records\n")
    try:
        written, missing = write_report(args.records, args.out)
    except ReportError as error:
        parser.exit(2, f"{parser.prog}: error: {error}\n")
    except OSError as error:
        parser.exit(2, f"{parser.prog}: error: {error.filename}: cannot write "
                       f"({error.strerror})\n")
    for line in missing:
        print(f"not drawn yet: {line}")
    print(f"Wrote {len(written)} files to {args.out}: {', '.join(written)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

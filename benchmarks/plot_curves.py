"""Plots runs' validation NDCG@20 and HR@20 by epoch beside the reference's Toys curve.

    python benchmarks/plot_curves.py runs/toys [RUN_DIR ...] --out curves.png

Reads each run directory's `history.csv` (Keras's CSVLogger) and draws two panels,
NDCG@20 and HR@20, one line per run labelled by the directory's name, a dot on the
`best_epoch` of its `metrics.json` when it has one, and the reference's Toys curve
(REFERENCE.md) as a dashed grey line unless `--no-reference`. Needs matplotlib
(`pip install -e ".[plots]"`). Prints one JSON object on its last line: `out`, and
per run its `epochs`, `best_epoch` (from `metrics.json`, else the epoch of the
highest NDCG@20) and `best_val_NDCG@20` (the value at that epoch).
"""

import argparse
import csv
import io
import json
import math
import pathlib

from learning_curve import REFERENCE_CURVE

from iclrec_tf.files import write_bytes

HISTORY_FILE = "history.csv"
METRICS_FILE = "metrics.json"
NDCG, HR = "val_NDCG@20", "val_HR@20"
PANELS = ((NDCG, "valid NDCG@20"), (HR, "valid HR@20"))
REFERENCE_LABEL = "reference (Toys, REFERENCE.md)"
# 1000 x 400 pixels: line plots at that size stay well under 100 KB.
FIGURE_INCHES = (10, 4)
DPI = 100


class InputError(Exception):
    """A run directory that cannot be plotted; the message names the file."""


class Run:
    """One run directory's curves: `epochs` (1-based) and their metric values."""

    def __init__(self, label, epochs, values, best_epoch_of_record):
        self.label = label
        self.epochs = epochs
        self.values = values
        self.best_epoch_of_record = best_epoch_of_record

    @property
    def best_epoch(self):
        if self.best_epoch_of_record is not None:
            return self.best_epoch_of_record
        ndcg = self.values[NDCG]
        return self.epochs[ndcg.index(max(ndcg))]

    def value_at(self, metric, epoch):
        return self.values[metric][self.epochs.index(epoch)]


def parse_number(text, path, line, column):
    try:
        value = float(text)
    except (TypeError, ValueError):
        value = math.nan
    if not math.isfinite(value):
        raise InputError(f"{path}, line {line}: {column} is {text!r}, not a finite number")
    return value


def read_history(path):
    """Returns `(epochs, {metric: values})` from a CSVLogger file, epochs 1-based and sorted."""
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    rows = {}
    try:
        with path.open(newline="") as stream:
            reader = csv.DictReader(stream)
            if reader.fieldnames is None:
                raise InputError(f"{path}: empty, no header row")
            missing = [name for name in ("epoch", NDCG, HR) if name not in reader.fieldnames]
            if missing:
                raise InputError(f"{path}: no column {', '.join(missing)} in the header row")
            for row in reader:
                line = reader.line_num
                epoch_text = row["epoch"]
                if epoch_text is None or not epoch_text.strip().isdigit():
                    raise InputError(f"{path}, line {line}: epoch is {epoch_text!r}, "
                                     "not a whole number")
                # CSVLogger's epochs count from 0: the row of epoch 0 is after 1 epoch.
                epoch = int(epoch_text) + 1
                if epoch in rows:
                    raise InputError(f"{path}, line {line}: epoch {epoch_text} appears twice")
                rows[epoch] = {metric: parse_number(row[metric], path, line, metric)
                               for metric in (NDCG, HR)}
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise InputError(f"{path}: cannot be read as CSV ({error})") from None
    if not rows:
        raise InputError(f"{path}: no epochs below the header row")
    epochs = sorted(rows)
    return epochs, {metric: [rows[epoch][metric] for epoch in epochs] for metric in (NDCG, HR)}


def read_best_epoch(path, epochs):
    """`best_epoch` of a `metrics.json`, or None if the run has none."""
    if not path.is_file():
        return None
    try:
        metrics = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise InputError(f"{path}: cannot be read as JSON ({error})") from None
    if not isinstance(metrics, dict) or "best_epoch" not in metrics:
        return None
    best_epoch = metrics["best_epoch"]
    if type(best_epoch) is not int or best_epoch not in epochs:
        raise InputError(f"{path}: best_epoch {best_epoch!r} is not an epoch of {HISTORY_FILE}")
    return best_epoch


def read_run(run_dir, label):
    if not run_dir.is_dir():
        raise InputError(f"{run_dir}: no such directory")
    epochs, values = read_history(run_dir / HISTORY_FILE)
    return Run(label, epochs, values, read_best_epoch(run_dir / METRICS_FILE, epochs))


def run_labels(run_dirs):
    """Each directory's name, or the path as given where two runs share a name."""
    names = [pathlib.Path(run_dir).resolve().name for run_dir in run_dirs]
    return [name if names.count(name) == 1 else run_dir
            for name, run_dir in zip(names, run_dirs, strict=True)]


def render_png(runs, show_reference, title):
    """The figure as PNG bytes, drawn with matplotlib's Agg canvas (no display, no pyplot)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=FIGURE_INCHES, dpi=DPI)
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, len(PANELS))
    reference_epochs = sorted(REFERENCE_CURVE)
    for position, (panel, (metric, heading)) in enumerate(zip(axes, PANELS, strict=True)):
        for run in runs:
            (line,) = panel.plot(run.epochs, run.values[metric], label=run.label)
            if run.best_epoch_of_record is not None:
                epoch = run.best_epoch_of_record
                panel.plot([epoch], [run.value_at(metric, epoch)], "o", color=line.get_color())
        if show_reference:
            panel.plot(reference_epochs,
                       [REFERENCE_CURVE[epoch][position] for epoch in reference_epochs],
                       linestyle="--", color="grey", label=REFERENCE_LABEL)
        panel.set_title(heading)
        panel.set_xlabel("epoch")
        panel.grid(alpha=0.3)
    axes[0].legend(fontsize="small")
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR",
                        help=f"a run directory holding {HISTORY_FILE}")
    parser.add_argument("--out", required=True, help="the PNG file to write")
    parser.add_argument("--no-reference", action="store_true",
                        help="leave out the reference's Toys curve (for other datasets)")
    parser.add_argument("--title", help="a title above the two panels")
    args = parser.parse_args()

    def fail(message):
        parser.exit(2, f"{parser.prog}: error: {message}\n")

    try:
        import matplotlib  # noqa: F401
    except ImportError:
        fail('matplotlib is missing; pip install -e ".[plots]"')
    try:
        runs = [read_run(pathlib.Path(run_dir), label)
                for run_dir, label in zip(args.run_dirs, run_labels(args.run_dirs), strict=True)]
    except InputError as error:
        fail(str(error))
    png = render_png(runs, show_reference=not args.no_reference, title=args.title)
    try:
        write_bytes(args.out, png)
    except OSError as error:
        fail(f"{args.out}: cannot be written ({error.strerror or error})")
    print(json.dumps({"out": args.out, "runs": {
        run.label: {"epochs": len(run.epochs),
                    "best_val_NDCG@20": round(run.value_at(NDCG, run.best_epoch), 4),
                    "best_epoch": run.best_epoch}
        for run in runs}}))


if __name__ == "__main__":
    main()

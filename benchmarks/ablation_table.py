"""A markdown table of finished runs: test metrics, best epoch, epochs and wall time.

    python benchmarks/ablation_table.py runs/ablation/toys-* [--protocol test]

For each run directory with a `metrics.json`: its test HR@5/10/20 and NDCG@5/10/20
(`--protocol test_exclude` for the other protocol), the best epoch (chosen on valid
NDCG@20) and its valid NDCG@20, the epochs trained, and the seconds its epochs took:
steps, E-step and validation, summed over every kept epoch from the run's own
TensorBoard scalars (`seconds/train`, `seconds/estep`, `seconds/validation`), so a run
resumed over several sessions counts each epoch once. A run without `metrics.json` is
listed as running, with its last epoch's valid NDCG@20. The last line is one JSON
object of the same.
"""

import argparse
import csv
import json
import pathlib

from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
from tensorboard.util.tensor_util import make_ndarray

METRICS = ("HR@5", "HR@10", "HR@20", "NDCG@5", "NDCG@10", "NDCG@20")
EPOCH_SECONDS = ("seconds/train", "seconds/estep", "seconds/validation")


def training_seconds(run_dir, epochs):
    """The summed epoch seconds of `run_dir`'s first `epochs` epochs, or None.

    An epoch written again after a resume counts once, with its later value.
    """
    seconds = {}
    for events in sorted(run_dir.rglob("events.out.tfevents.*"),
                         key=lambda path: int(path.name.split(".")[3])):
        for event in EventFileLoader(str(events)).Load():
            for value in event.summary.value:
                if value.tag in EPOCH_SECONDS and event.step < epochs:
                    seconds[value.tag, event.step] = float(make_ndarray(value.tensor))
    return round(sum(seconds.values()), 1) if seconds else None


def describe(run_dir, protocol):
    metrics_file = run_dir / "metrics.json"
    if metrics_file.is_file():
        metrics = json.loads(metrics_file.read_text())
        return {"run": run_dir.name, "finished": True,
                **{name: metrics[protocol][name] for name in METRICS},
                "best_epoch": metrics["best_epoch"], "epochs": metrics["epochs_trained"],
                "valid_NDCG@20": metrics["valid"]["NDCG@20"],
                "seconds": training_seconds(run_dir, metrics["epochs_trained"])}
    with open(run_dir / "history.csv") as stream:
        rows = list(csv.DictReader(stream))
    return {"run": run_dir.name, "finished": False, "epochs": len(rows),
            "valid_NDCG@20": float(rows[-1]["val_NDCG@20"]) if rows else None}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=pathlib.Path)
    parser.add_argument("--protocol", default="test", choices=("test", "test_exclude"))
    args = parser.parse_args()
    rows = [describe(run, args.protocol) for run in args.runs
            if (run / "history.csv").is_file()]
    print("| run | " + " | ".join(METRICS) + " | best epoch (valid NDCG@20) | epochs | "
          "training s |")
    print("|---" * (len(METRICS) + 4) + "|")
    for row in rows:
        if row["finished"]:
            cells = [f"{row[name]:.4f}" for name in METRICS]
            tail = [f"{row['best_epoch']} ({row['valid_NDCG@20']:.4f})", str(row["epochs"]),
                    "" if row["seconds"] is None else f"{row['seconds']:.0f}"]
        else:
            cells = ["running"] + [""] * (len(METRICS) - 1)
            tail = [f"last {row['valid_NDCG@20']:.4f}", str(row["epochs"]), ""]
        print(f"| {row['run']} | " + " | ".join(cells + tail) + " |")
    print(json.dumps(rows))


if __name__ == "__main__":
    main()

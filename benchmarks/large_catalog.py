"""Peak memory of a one-epoch `fit` over a catalogue of a million item ids.

    python benchmarks/large_catalog.py [--items 1000000] [--users 3000]

Writes a synthetic dataset (`--users` users, 5 to 30 items each, ids spread over
1..`--items`, the largest id always present), then runs, for each next-item loss,
`python -m iclrec_tf.fit --dataset FILE --epochs 1` under `/usr/bin/time -v`, and
reports its peak resident memory and wall time. Prints a line per run, then one
JSON object: `{loss: {"peak_rss_mb": ..., "seconds": ...}}`.
"""

import argparse
import json
import pathlib
import re
import subprocess
import sys
import tempfile
import time

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]


def write_catalogue(path, users, items, seed=0):
    """Sequences of 5-30 ids drawn from a Zipf-like popularity over 1..items."""
    rng = np.random.default_rng(seed)
    popularity = 1.0 / np.arange(1, items + 1) ** 0.8
    popularity /= popularity.sum()
    with open(path, "w") as stream:
        for user in range(users):
            sequence = rng.choice(items, size=int(rng.integers(5, 31)), p=popularity) + 1
            if user == 0:
                sequence[-1] = items  # the vocabulary is the full million
            stream.write(f"{user + 1} {' '.join(map(str, sequence))}\n")


def peak_rss(command):
    """(peak RSS in MB, seconds) of `command` under GNU time."""
    start = time.perf_counter()
    result = subprocess.run(["/usr/bin/time", "-v", *command], capture_output=True,
                            text=True, cwd=REPO)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"large_catalog.py: {' '.join(command)} failed:\n{result.stderr[-2000:]}")
    kilobytes = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)",
                              result.stderr).group(1))
    return round(kilobytes / 1024, 1), round(seconds, 1)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--users", type=int, default=3000)
    parser.add_argument("--losses", default="sampled,softmax,bce")
    args = parser.parse_args()
    figures = {}
    with tempfile.TemporaryDirectory(prefix="large-catalog-") as folder:
        dataset = pathlib.Path(folder) / "catalogue.txt"
        write_catalogue(dataset, args.users, args.items)
        for loss in args.losses.split(","):
            command = [sys.executable, "-m", "iclrec_tf.fit", "--dataset", str(dataset),
                       "--epochs", "1", "--next-item-loss", loss, "--verbose", "0",
                       "--output-dir", str(pathlib.Path(folder) / loss)]
            figures[loss] = dict(zip(("peak_rss_mb", "seconds"), peak_rss(command),
                                     strict=True))
            print(f"{loss}: {figures[loss]}", file=sys.stderr, flush=True)
    print(json.dumps({"items": args.items, "users": args.users, **figures}))


if __name__ == "__main__":
    main()

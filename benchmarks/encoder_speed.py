"""Each encoder's training epoch and peak memory against the default's, interleaved.

    python benchmarks/encoder_speed.py --dataset beauty [--repeats 2] [--encoders ...]
        [--peer "COMMAND"]

Runs `benchmarks/train_speed.py` once per encoder and repeat, each in a process of
its own (a process's peak memory is its own), in the order A B C D, then D C B A,
..., so that the load of a shared machine falls on every encoder alike. Every other
flag goes to `train_speed.py` unchanged (`--preset`, `--max-users`, `--threads`,
...); each encoder trains as its preset would train it, so a non-causal one trains
on prefixes (`samples` says which). Prints one JSON object on its last line: per
encoder the median `epoch_s`, `train_s` (the training steps alone) and `step_s`, the
largest `peak_rss_mb`, `samples`, and `epoch_ratio` and `peak_ratio` against the
first encoder given (the default's).

`--peer "COMMAND"` takes a turn in the same interleaving: another implementation's
training epoch (a peer's own code, in its own environment), a command whose last
line is a JSON object with its `seconds` and `peak_rss_mb`. The result then has
`peer` (their medians and largest peak) and, per encoder, `train_ratio_to_peer`:
our training steps' time over the peer's epoch.
"""

import argparse
import json
import os
import pathlib
import shlex
import statistics
import subprocess
import sys

from iclrec_tf.config import ENCODERS, NON_CAUSAL_ENCODERS

TRAIN_SPEED = pathlib.Path(__file__).resolve().with_name("train_speed.py")
PEER = "peer"


def interleaved(names, repeats):
    """`names` forwards, then backwards, ... `repeats` times: [(repeat, name), ...]."""
    return [(repeat, name) for repeat in range(repeats)
            for name in (names if repeat % 2 == 0 else names[::-1])]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encoders", default=",".join(ENCODERS),
                        help="comma-separated, the reference first (default: all)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--peer", metavar="COMMAND",
                        help="a peer's training epoch, timed in the same interleaving")
    args, train_flags = parser.parse_known_args()
    names = args.encoders.split(",")
    unknown = [name for name in names if name not in ENCODERS]
    if unknown or args.repeats < 1:
        parser.error(f"--encoders takes {', '.join(ENCODERS)}, got {', '.join(unknown)}"
                     if unknown else f"--repeats must be positive, got {args.repeats}")
    commands = {name: [sys.executable, str(TRAIN_SPEED), *train_flags, "--encoder", name]
                for name in names}
    if args.peer:
        commands[PEER] = shlex.split(args.peer)
    runs = {name: [] for name in commands}
    for _, name in interleaved(list(commands), args.repeats):
        result = subprocess.run(commands[name], capture_output=True, text=True)
        if result.returncode != 0:
            sys.stderr.write(result.stderr[-3000:])
            return result.returncode
        runs[name].append(json.loads(result.stdout.splitlines()[-1]))
    peer = runs.pop(PEER, None)
    figures = {}
    for name, results in runs.items():
        figures[name] = {
            "epoch_s": round(statistics.median(r["epoch_s"] for r in results), 2),
            "train_s": round(statistics.median(r["train_s"] for r in results), 2),
            "step_s": round(statistics.median(r["step_s"] for r in results), 4),
            "peak_rss_mb": max(r["peak_rss_mb"] for r in results),
            "samples": "prefixes" if name in NON_CAUSAL_ENCODERS
            or "prefixes" in train_flags else "users",
        }
    base = figures[names[0]]
    for values in figures.values():
        values["epoch_ratio"] = round(values["epoch_s"] / base["epoch_s"], 3)
        values["peak_ratio"] = round(values["peak_rss_mb"] / base["peak_rss_mb"], 3)
    if peer is not None:
        peer_s = statistics.median(r["seconds"] for r in peer)
        for values in figures.values():
            values["train_ratio_to_peer"] = round(values["train_s"] / peer_s, 3)
        figures["peer"] = {"epoch_s": round(peer_s, 2),
                           "peak_rss_mb": max(r["peak_rss_mb"] for r in peer)}
    load = " ".join(f"{value:.1f}" for value in os.getloadavg())
    print(f"# {args.repeats} repeats, load average {load}", file=sys.stderr)
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())

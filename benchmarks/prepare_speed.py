"""Speed and peak memory of `pipelines/prepare.py` on a generated log; one JSON line.


    python benchmarks/prepare_speed.py --rows 10000000 --workdir /tmp/prepare_bench
    python benchmarks/prepare_speed.py --rows 2000000 --compare   # needs pandas (".[bench]")
    python benchmarks/prepare_speed.py --rows 2000000 --preset yelp --compare
    python benchmarks/prepare_speed.py --rows 60000000 --limit-mb 1536   # 2 GB log

The log is a CSV with a header, `user_id,item_id,timestamp,rating`, string ids
(`U00012345`, `I0001234`), about ten events a user, Zipf-distributed item
popularity and 1% exact duplicates: shaped like the Amazon ratings files. It is
written once into `--workdir` (kept, reused by later runs of the same size), and
prepare runs in a child process, so its peak RSS is its own.

`--preset yelp` writes Yelp-shaped review JSON lines instead (`review_id`,
`user_id`, `business_id`, `stars`, a 400-character `text`, `date`) and prepares
them with `--preset yelp`.

`--memory-mb` is passed on to prepare (the events it sorts at once; a larger log
is split into temporary partitions). `--limit-mb` runs prepare in a memory cgroup
capped at that size (cgroup v1 or v2, where this user may create one): the proof
that a log larger than the memory it is given goes through.

`--id-memory N` measures instead the memory of coding N distinct ids
(`U00012345`-like, 65,536 a block, about what a 2 MiB block of a log brings)
with `iclrec_tf.prepare.idcoder.IdCoder`, against a Python dict from str to int, each in
a fresh child process: peak bytes an id.

`--compare` also times the reading-and-coding step alone (ids -> integer codes,
times -> floats) with the readers considered: for CSV the `csv` module, pandas'
chunked `read_csv` with `factorize`, and pyarrow's streaming CSV reader, which
`iclrec_tf.prepare.events` uses; for JSON lines the `json` module (the line-by-line
reader `iclrec_tf.prepare.events` falls back to) and pyarrow's streaming JSON reader,
which it uses first.
"""

import argparse
import contextlib
import csv
import json
import os
import pathlib
import platform
import re
import resource
import shutil
import subprocess
import sys
import time

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]


def generate(path, rows, seed=0):
    """Writes the synthetic log to `path` (see the module docstring)."""
    rng = np.random.default_rng(seed)
    users = rng.integers(0, max(rows // 10, 1), rows)
    items = rng.zipf(1.2, rows) % max(rows // 50, 1)
    times = 1_300_000_000 + rng.integers(0, 300_000_000, rows)
    ratings = rng.integers(1, 6, rows)
    duplicated = rng.random(rows) < 0.01
    partial = path.with_suffix(".partial")
    with open(partial, "w") as stream:
        stream.write("user_id,item_id,timestamp,rating\n")
        step = 1_000_000
        for start in range(0, rows, step):
            end = min(rows, start + step)
            block = zip(users[start:end].tolist(), items[start:end].tolist(),
                        times[start:end].tolist(), ratings[start:end].tolist(),
                        duplicated[start:end].tolist(), strict=True)
            stream.write("".join(
                (f"U{u:08d},I{i:07d},{t},{r}.0\n" * (2 if d else 1)) for u, i, t, r, d in block))
    partial.rename(path)


def generate_reviews(path, rows, seed=0):
    """Writes Yelp-shaped review JSON lines to `path` (see the module docstring)."""
    rng = np.random.default_rng(seed)
    users = rng.integers(0, max(rows // 10, 1), rows)
    items = rng.zipf(1.2, rows) % max(rows // 50, 1)
    seconds = rng.integers(0, 300_000_000, rows)
    text = json.dumps("Good food, friendly staff, would come back. " * 9)
    partial = path.with_suffix(".partial")
    with open(partial, "w") as stream:
        for row, (user, item, second) in enumerate(zip(
                users.tolist(), items.tolist(), seconds.tolist(), strict=True)):
            date = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(1_300_000_000 + second))
            stream.write(f'{{"review_id": "R{row:010d}", "user_id": "U{user:08d}", '
                         f'"business_id": "B{item:07d}", "stars": 4.0, "text": {text}, '
                         f'"date": "{date}"}}\n')
    partial.rename(path)


def read_with_json_module(path):
    from iclrec_tf.prepare.events import LOG_PRESETS, EventBlocks, _Blocks, _read_jsonl_lines

    return _read_jsonl_lines(path, LOG_PRESETS["yelp"],
                             lambda: _Blocks(EventBlocks(has_rating=False))).num_events


def read_with_pyarrow_json(path):
    from iclrec_tf.prepare.events import LOG_PRESETS, read_events

    return read_events(path, LOG_PRESETS["yelp"]).num_events


def read_with_csv_module(path):
    users, items, user_codes, item_codes, times = {}, {}, [], [], []
    with open(path, newline="") as stream:
        reader = csv.reader(stream)
        next(reader)
        for user, item, moment, _ in reader:
            user_codes.append(users.setdefault(user, len(users)))
            item_codes.append(items.setdefault(item, len(items)))
            times.append(float(moment))
    return len(user_codes)


def read_with_pandas(path):
    import pandas as pd

    tables, coded, times = ({}, {}), ([], []), []
    for chunk in pd.read_csv(path, dtype=str, chunksize=1 << 20, na_filter=False,
                             usecols=["user_id", "item_id", "timestamp"]):
        for column, table, parts in zip(("user_id", "item_id"), tables, coded, strict=True):
            codes, uniques = pd.factorize(chunk[column].to_numpy())
            known = np.fromiter((table.setdefault(u, len(table)) for u in uniques), np.int64,
                                len(uniques))
            parts.append(known[codes])
        times.append(pd.to_numeric(chunk["timestamp"]).to_numpy())
    return sum(map(len, times))


def read_with_pyarrow(path):
    from iclrec_tf.prepare.events import LogFormat, read_events

    return read_events(path, LogFormat("csv")).num_events


def code_ids(kind, count):
    """Peak RSS growth in bytes an id of coding `count` distinct ids (run in a child)."""
    import pyarrow as pa

    from iclrec_tf.prepare.idcoder import IdCoder

    def rss_kib():
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    coder, table = IdCoder(), {}
    block = 1 << 16
    base = rss_kib()
    for start in range(0, count, block):
        names = pa.array([f"U{i:08d}" for i in range(start, min(count, start + block))])
        if kind == "idcoder":
            coder.code(names)
        else:
            for name in names.to_pylist():
                table.setdefault(name, len(table))
    return (rss_kib() - base) * 1024 / count


def time_readers(path, names):
    """`{reader: rows/s}` of the read-and-code step, each in a fresh child process."""
    speeds = {}
    for name in names:
        code = (f"import sys, time; sys.path.insert(0, {str(REPO / 'benchmarks')!r}); "
                f"import prepare_speed as b; s = time.perf_counter(); "
                f"n = b.read_with_{name}({str(path)!r}); print(n / (time.perf_counter() - s))")
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                check=True)
        speeds[name] = round(float(result.stdout.split()[-1]))
    return speeds


@contextlib.contextmanager
def memory_cgroup(limit_mb):
    """Yields a `preexec_fn` that moves the calling process into a new cgroup capped at `limit_mb`.

    After the block, the function's `peak["mb"]` is the cgroup's peak usage in
    MB (page cache included, so it is near the limit), and the cgroup is removed.
    """
    name = f"iclrec_prepare_{os.getpid()}"
    if pathlib.Path("/sys/fs/cgroup/memory/cgroup.procs").exists():  # v1
        group = pathlib.Path("/sys/fs/cgroup/memory") / name
        limit_file, peak_file = "memory.limit_in_bytes", "memory.max_usage_in_bytes"
    else:  # v2
        group = pathlib.Path("/sys/fs/cgroup") / name
        limit_file, peak_file = "memory.max", "memory.peak"
    try:
        group.mkdir()
        (group / limit_file).write_text(str(limit_mb << 20))
    except OSError as error:
        sys.exit(f"--limit-mb: cannot create a memory cgroup at {group}: {error.strerror}")

    def enter():
        (group / "cgroup.procs").write_text(str(os.getpid()))

    enter.peak = {}
    try:
        yield enter
        enter.peak["mb"] = round(int((group / peak_file).read_text()) / 2**20)
    finally:
        group.rmdir()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--workdir", default="/tmp/prepare_bench",
                        help="where the log and the output go (outside the repository)")
    parser.add_argument("--preset", choices=("yelp",),
                        help="a Yelp-shaped JSON lines log instead of the CSV")
    parser.add_argument("--memory-mb", type=float, help="passed on to prepare")
    parser.add_argument("--limit-mb", type=int,
                        help="run prepare in a memory cgroup capped at this many MB")
    parser.add_argument("--id-memory", type=int, metavar="N",
                        help="only measure the memory of coding N distinct ids (see above)")
    parser.add_argument("--compare", action="store_true",
                        help="also time the other readers (see the docstring)")
    args = parser.parse_args()
    if args.id_memory:
        figures = {"ids": args.id_memory}
        for kind in ("idcoder", "dict"):
            code = (f"import sys; sys.path.insert(0, {str(REPO / 'benchmarks')!r}); "
                    f"import prepare_speed as b; print(b.code_ids({kind!r}, {args.id_memory}))")
            result = subprocess.run([sys.executable, "-c", code], capture_output=True,
                                    text=True, check=True)
            figures[f"{kind}_bytes_per_id"] = round(float(result.stdout.split()[-1]), 1)
        print(json.dumps(figures))
        return
    workdir = pathlib.Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    yelp = args.preset == "yelp"
    log = workdir / (f"reviews_{args.rows}.json" if yelp else f"events_{args.rows}.csv")
    if not log.exists():
        start = time.perf_counter()
        (generate_reviews if yelp else generate)(log, args.rows)
        print(f"# generated {log} in {time.perf_counter() - start:.0f} s", file=sys.stderr)
    output = workdir / f"prepared_{log.stem}"
    # A killed run (the cgroup's OOM killer) leaves its hidden staging directory.
    for stale in (output, *workdir.glob(f".{output.name}.*")):
        shutil.rmtree(stale, ignore_errors=True)

    command = [sys.executable, str(REPO / "pipelines" / "prepare.py"), "--input", str(log),
               "--output", str(output),
               *(["--preset", "yelp"] if yelp else ["--rating-col", "rating"]),
               *(["--memory-mb", str(args.memory_mb)] if args.memory_mb else [])]
    with (memory_cgroup(args.limit_mb) if args.limit_mb else
          contextlib.nullcontext()) as enter_cgroup:
        start = time.perf_counter()
        result = subprocess.run(command, capture_output=True, text=True,
                                preexec_fn=enter_cgroup)
        seconds = time.perf_counter() - start
    if result.returncode:
        sys.exit(f"prepare exited with {result.returncode}: {result.stderr[-2000:]}")
    read_seconds = float(re.search(r" in ([\d.]+) s", result.stdout).group(1))
    stats = json.loads((output / "stats.json").read_text())
    figures = {
        "rows": args.rows, "file_mb": round(log.stat().st_size / 2**20),
        "seconds": round(seconds, 1), "read_seconds": read_seconds,
        "rows_per_s": round(args.rows / seconds),
        "partitions": int(re.search(r"into (\d+) partition", result.stdout).group(1)),
        # ru_maxrss is in KiB on Linux.
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024),
        "users": stats["users"], "items": stats["items"],
        "interactions": stats["interactions"], "removed": stats["removed"],
    }
    if args.limit_mb:
        figures.update(limit_mb=args.limit_mb, cgroup_peak_mb=enter_cgroup.peak["mb"])
    if args.compare:
        figures["read_rows_per_s"] = time_readers(
            log, ("json_module", "pyarrow_json") if yelp else ("csv_module", "pandas",
                                                                "pyarrow"))
    print(f"# {platform.processor() or platform.machine()}, Python "
          f"{platform.python_version()}, {log}", file=sys.stderr)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()

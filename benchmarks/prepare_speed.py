"""Speed and peak memory of `pipelines/prepare.py` on a generated log; one JSON line.


    python benchmarks/prepare_speed.py --rows 10000000 --workdir /tmp/prepare_bench
    python benchmarks/prepare_speed.py --rows 10000000 --engine spark
    python benchmarks/prepare_speed.py --rows 2000000 --preset yelp
    python benchmarks/prepare_speed.py --rows 200000000 --memory-mb 1024 --limit-mb 2048

The log is a CSV with a header, `user_id,item_id,timestamp,rating`, string ids
(`U00012345`, `I0001234`), about ten events a user, Zipf-distributed item
popularity and 1% exact duplicates: shaped like the Amazon ratings files. It is
written once into `--workdir` (kept, reused by later runs of the same size), and
prepare runs in a child process, so its peak RSS and CPU time are its own.

`--preset yelp` writes Yelp-shaped review JSON lines instead (`review_id`,
`user_id`, `business_id`, `stars`, a 400-character `text`, `date`) and prepares
them with `--preset yelp`.

`--engine`, `--memory-mb` (the engine's memory limit) and `--threads` are passed
on to prepare. `--limit-mb` runs prepare in a memory cgroup capped at that size
(cgroup v1 or v2, where this user may create one): the proof that a log larger
than the memory it is given goes through. `cpu_seconds` is the user and system
time of prepare and its children (Spark's JVM included): on a shared machine, a
fairer figure than the wall time.
"""

import argparse
import contextlib
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
    parser.add_argument("--engine", choices=("duckdb", "spark"), default="duckdb")
    parser.add_argument("--memory-mb", type=int, help="passed on to prepare")
    parser.add_argument("--threads", type=int, help="passed on to prepare")
    parser.add_argument("--limit-mb", type=int,
                        help="run prepare in a memory cgroup capped at this many MB")
    args = parser.parse_args()
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
               "--engine", args.engine,
               *(["--memory-mb", str(args.memory_mb)] if args.memory_mb else []),
               *(["--threads", str(args.threads)] if args.threads else [])]
    with (memory_cgroup(args.limit_mb) if args.limit_mb else
          contextlib.nullcontext()) as enter_cgroup:
        start = time.perf_counter()
        result = subprocess.run(command, capture_output=True, text=True,
                                preexec_fn=enter_cgroup)
        seconds = time.perf_counter() - start
    if result.returncode:
        sys.exit(f"prepare exited with {result.returncode}: {result.stderr[-2000:]}")
    # prepare's progress lines: "Read 10099951 records from 1 file: 12.3 s".
    read_seconds = float(re.search(r"^Read \d+ records .*: ([\d.]+) s$", result.stdout,
                                   re.MULTILINE).group(1))
    stats = json.loads((output / "stats.json").read_text())
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    figures = {
        "rows": args.rows, "file_mb": round(log.stat().st_size / 2**20), "engine": args.engine,
        "seconds": round(seconds, 1), "cpu_seconds": round(children.ru_utime
                                                           + children.ru_stime, 1),
        "read_seconds": read_seconds, "rows_per_s": round(args.rows / seconds),
        # ru_maxrss is in KiB on Linux; of the largest child (Spark: its JVM).
        "peak_rss_mb": round(children.ru_maxrss / 1024),
        "users": stats["users"], "items": stats["items"],
        "interactions": stats["interactions"], "removed": stats["removed"],
    }
    if args.limit_mb:
        figures.update(limit_mb=args.limit_mb, cgroup_peak_mb=enter_cgroup.peak["mb"])
    print(f"# {platform.processor() or platform.machine()}, Python "
          f"{platform.python_version()}, {log}", file=sys.stderr)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()

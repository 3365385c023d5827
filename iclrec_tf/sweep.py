"""`python -m iclrec_tf.sweep QUEUE --output-dir DIR`: train a queue of runs, one by one.

QUEUE holds one run a line, `NAME FLAGS...`, where FLAGS are `python -m
iclrec_tf.fit`'s (`#` starts a comment). Every line is checked before anything
trains, so a typo on line 9 is one line on stderr, not a failure hours later.
Each run then trains in its own process into `DIR/NAME`, its output appended to
`DIR/NAME.log`. A finished run is skipped and an interrupted one resumes from its
checkpoint, so the same command continues a queue after a kill. A line edited
since its run trained is refused before anything trains, as `fit` would refuse
it; raising its `--epochs` or `--patience` trains the run on.
`python benchmarks/ablation_table.py DIR/*` tabulates the results.

The queues of the ablation and of the paper's Table 1 are under
`pipelines/sweeps/`.
"""

import collections
import os
import pathlib
import shlex
import subprocess
import sys
import time

from iclrec_tf import cli, fit
from iclrec_tf.data.datasets import check_dataset
from iclrec_tf.errors import ConfigError, DataError, RunDirectoryError
from iclrec_tf.train.rundir import RunDirectory

PROG = "python -m iclrec_tf.sweep"
# Set by the sweep for every run, so a queue line must not.
SWEEP_FLAGS = ("--output-dir", "--verbose", "--threads", "--data-dir")

QueuedRun = collections.namedtuple("QueuedRun", ["name", "flags", "config", "where"])
QueuedRun.__doc__ = """One line of a queue: the run's name, its fit flags, the
`TrainConfig` they give, and the line's `file:line`."""


def read_queue(path):
    """The runs of a queue file, each checked as `fit` would check its flags.

    Returns:
      A list of `QueuedRun`, in the file's order.

    Raises:
      DataError: naming the file and line of a malformed line or a repeated name.
      ConfigError: naming the file, line and flag of a setting `fit` would refuse.
    """
    path = pathlib.Path(path)
    try:
        lines = path.read_text().splitlines()
    except OSError as error:
        raise DataError(f"{path}: cannot read the queue ({error.strerror})") from None
    runs, seen = [], {}
    for number, line in enumerate(lines, 1):
        where = f"{path}:{number}"
        try:
            words = shlex.split(line, comments=True)
        except ValueError as error:
            raise DataError(f"{where}: {error}") from None
        if not words:
            continue
        name, flags = words[0], words[1:]
        parts = pathlib.PurePath(name).parts
        if name.startswith("-") or pathlib.PurePath(name).is_absolute() or ".." in parts:
            raise DataError(f"{where}: a line starts with the run's name, a relative path "
                            f"inside --output-dir, got {name!r}")
        if name in seen:
            raise DataError(f"{where}: run {name!r} is already on line {seen[name]}")
        seen[name] = number
        for flag in flags:
            if flag.split("=")[0] in SWEEP_FLAGS:
                raise ConfigError(f"{where}: {flag.split('=')[0]} is set by the sweep for "
                                  "every run; remove it from the queue")
        runs.append(QueuedRun(name, flags, _check_flags(flags, where), where))
    if not runs:
        raise DataError(f"{path}: the queue holds no run")
    return runs


def _check_flags(flags, where):
    parser = fit.build_parser()

    def refuse(message):
        raise ConfigError(f"{where}: {message}")

    parser.error = refuse  # argparse's own checks, as one error instead of an exit
    try:
        args = parser.parse_args(flags)
        config = cli.config_from_flags(args)
        check_dataset(args.dataset)
        return config
    except (ConfigError, DataError) as error:
        message = str(error)
        raise type(error)(message if message.startswith(where) else f"{where}: {message}") \
            from None


def check_run_dirs(runs, output_dir):
    """Checks that each run's directory is new or holds a run its line may resume.

    Raises:
      RunDirectoryError: naming the file and line whose flags differ from those
        its run was trained with, and the flags.
    """
    for run in runs:
        try:
            RunDirectory(pathlib.Path(output_dir) / run.name).check_settings(run.config)
        except RunDirectoryError as error:
            raise RunDirectoryError(f"{run.where}: {error}") from None


def run_queue(runs, output_dir, threads=None, data_dir=None):
    """Trains each run of `runs` (from `read_queue`) that has not finished.

    Prints one line as each run starts, and one as it ends, with its wall time and
    its process's peak memory.

    Returns:
      The names of the runs whose `fit` failed, in order.
    """
    output_dir = pathlib.Path(output_dir)
    sweep_flags = ["--verbose", "2"]
    if threads is not None:
        sweep_flags += ["--threads", str(threads)]
    if data_dir is not None:
        sweep_flags += ["--data-dir", str(data_dir)]
    failed = []
    for name, flags, config, _ in runs:
        run_dir = output_dir / name
        finished = RunDirectory(run_dir).finished_metrics(config)
        if finished is not None:
            print(f"{name}: finished before (best epoch {finished['best_epoch']} of "
                  f"{finished['epochs_trained']}), skipped", flush=True)
            continue
        log_path = output_dir / f"{name}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-u", "-m", "iclrec_tf.fit", *flags,
                   "--output-dir", str(run_dir), *sweep_flags]
        print(f"{name}: training ({shlex.join(flags)}), output in {log_path}", flush=True)
        start = time.perf_counter()
        with open(log_path, "a") as log:
            log.write(f"$ {shlex.join(command)}\n")
            log.flush()
            process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
            # wait4, not wait: the child's own peak memory, not all children's
            _, status, usage = os.wait4(process.pid, 0)
            process.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.perf_counter() - start
        peak_mb = usage.ru_maxrss / 1024
        if process.returncode == 0:
            print(f"{name}: done in {seconds:.1f} s, peak RSS {peak_mb:.0f} MB", flush=True)
        else:
            print(f"{name}: fit exited with {process.returncode} after {seconds:.1f} s; "
                  f"see {log_path}", flush=True)
            failed.append(name)
    return failed


def build_parser():
    parser = cli.ArgumentParser(
        prog=PROG, description="Train the runs of a queue file one by one, each in its own "
        "fit process; finished runs are skipped, interrupted ones resume.")
    parser.add_argument("queue", help="the queue file: one run a line, NAME FLAGS...")
    parser.add_argument("--output-dir", required=True,
                        help="the runs go to OUTPUT_DIR/NAME, their logs to NAME.log")
    parser.add_argument("--threads", type=int, metavar="N",
                        help="fit's --threads for every run (give two sweeps on one "
                        "machine a share each)")
    parser.add_argument("--data-dir", help="fit's --data-dir for every run")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.threads is not None and args.threads < 1:
        raise ConfigError(f"--threads must be a positive integer, got {args.threads}")
    runs = read_queue(args.queue)
    check_run_dirs(runs, args.output_dir)
    failed = run_queue(runs, args.output_dir, threads=args.threads, data_dir=args.data_dir)
    if failed:
        print(f"{PROG}: error: {len(failed)} of {len(runs)} runs failed: "
              f"{', '.join(failed)}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main, PROG))

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

A line may label its run for the paper's report, right after the name:
`NAME @EXPERIMENT:ROW FLAGS...` (`beauty-t2-A @table2:A --dataset beauty --fnm`).
With `--records RECORDS`, every line must, and as soon as a run finishes its
record is written to `RECORDS/NAME` (`iclrec_tf.record`: config, history,
metrics and the analyses on test), so that a machine lost an hour later loses
nothing. `--check` checks every line and exits without training.

The queues of the ablation and of the paper's Table 1 are under
`pipelines/sweeps/`; those of the paper's experiments under `pipelines/paper/`.
"""

import collections
import os
import pathlib
import shlex
import subprocess
import sys
import time

from iclrec_tf import cli, fit, record
from iclrec_tf.data.datasets import check_dataset
from iclrec_tf.errors import ConfigError, DataError, RunDirectoryError
from iclrec_tf.train.rundir import CONFIG_FILE, RunDirectory

PROG = "python -m iclrec_tf.sweep"
# Set by the sweep for every run, so a queue line must not.
SWEEP_FLAGS = ("--output-dir", "--verbose", "--threads", "--data-dir")

QueuedRun = collections.namedtuple("QueuedRun",
                                   ["name", "flags", "config", "where", "label"])
QueuedRun.__doc__ = """One line of a queue: the run's name, its fit flags, the
`TrainConfig` they give, the line's `file:line`, and its `(experiment, row)`
label for the report, or None."""


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
        name, flags, label = words[0], words[1:], None
        if flags and flags[0].startswith("@"):
            experiment, _, row = flags.pop(0)[1:].partition(":")
            record.check_label(experiment, row, f"{where}: @EXPERIMENT:ROW")
            label = (experiment, row)
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
        runs.append(QueuedRun(name, flags, _check_flags(flags, where), where, label))
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


def check_records(runs):
    """Raises `ConfigError` naming the line of a run that cannot have a record: no
    `@EXPERIMENT:ROW` label, or a name that is not one folder name."""
    for run in runs:
        if run.label is None:
            raise ConfigError(f"{run.where}: --records needs each line's label, "
                              "NAME @EXPERIMENT:ROW FLAGS...")
        record.check_record_name(run.name, run.where)


def run_queue(runs, output_dir, threads=None, data_dir=None, records_dir=None):
    """Trains each run of `runs` (from `read_queue`) that has not finished.

    Prints one line as each run starts, and one as it ends, with its wall time and
    its process's peak memory. With `records_dir`, then writes the record of each
    finished run that has none, or a stale one, in a process of its own.

    Returns:
      The names of the runs whose `fit` failed, in order.
    """
    output_dir = pathlib.Path(output_dir)
    shared_flags = []
    if threads is not None:
        shared_flags += ["--threads", str(threads)]
    if data_dir is not None:
        shared_flags += ["--data-dir", str(data_dir)]
    failed = []
    for name, flags, config, _, label in runs:
        run_dir = output_dir / name
        finished = RunDirectory(run_dir).finished_metrics(config)
        if finished is not None:
            print(f"{name}: finished before (best epoch {finished['best_epoch']} of "
                  f"{finished['epochs_trained']}), skipped", flush=True)
        elif not _train(name, flags, run_dir, output_dir / f"{name}.log",
                        ["--verbose", "2", *shared_flags]):
            failed.append(name)
            continue
        if records_dir is not None and not _write_record(
                name, label, run_dir, pathlib.Path(records_dir) / name,
                output_dir / f"{name}.log", shared_flags):
            failed.append(name)
    return failed


def _train(name, flags, run_dir, log_path, sweep_flags):
    """Trains one run in a `fit` process of its own; returns whether it succeeded."""
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
        returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - start
    if returncode == 0:
        print(f"{name}: done in {seconds:.1f} s, peak RSS {usage.ru_maxrss / 1024:.0f} MB",
              flush=True)
    else:
        print(f"{name}: fit exited with {returncode} after {seconds:.1f} s; see {log_path}",
              flush=True)
    return returncode == 0


def _write_record(name, label, run_dir, record_dir, log_path, shared_flags):
    """Writes the record of a finished run unless an up-to-date one exists; returns
    whether the record is there."""
    recorded_config = record_dir / CONFIG_FILE
    if (recorded_config.is_file() and (record_dir / record.RECORD_FILE).is_file()
            and recorded_config.read_text() == (run_dir / CONFIG_FILE).read_text()):
        return True
    experiment, row = label
    command = [sys.executable, "-u", "-m", "iclrec_tf.record", "--run", str(run_dir),
               "--out", str(record_dir), "--experiment", experiment, "--row", row,
               *shared_flags]
    start = time.perf_counter()
    with open(log_path, "a") as log:
        log.write(f"$ {shlex.join(command)}\n")
        log.flush()
        code = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT).returncode
    seconds = time.perf_counter() - start
    if code == 0:
        print(f"{name}: record written to {record_dir} in {seconds:.1f} s", flush=True)
    else:
        print(f"{name}: the record failed (exit {code}); see {log_path}", flush=True)
    return code == 0


def build_parser():
    parser = cli.ArgumentParser(
        prog=PROG, description="Train the runs of a queue file one by one, each in its own "
        "fit process; finished runs are skipped, interrupted ones resume.")
    parser.add_argument("queue", help="the queue file: one run a line, NAME FLAGS...")
    parser.add_argument("--output-dir",
                        help="the runs go to OUTPUT_DIR/NAME, their logs to NAME.log "
                        "(required unless --check)")
    parser.add_argument("--threads", type=int, metavar="N",
                        help="fit's --threads for every run (give two sweeps on one "
                        "machine a share each)")
    parser.add_argument("--data-dir", help="fit's --data-dir for every run")
    parser.add_argument("--records", metavar="DIR",
                        help="write each finished run's record (iclrec_tf.record) to "
                        "DIR/NAME, e.g. docs/results; every line needs @EXPERIMENT:ROW")
    parser.add_argument("--check", action="store_true",
                        help="check every line (and, with --output-dir, its run directory), "
                        "then exit without training")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.threads is not None and args.threads < 1:
        raise ConfigError(f"--threads must be a positive integer, got {args.threads}")
    runs = read_queue(args.queue)
    if args.records is not None:
        check_records(runs)
    if args.output_dir is not None:
        check_run_dirs(runs, args.output_dir)
    if args.check:
        print(f"{args.queue}: {len(runs)} runs checked", flush=True)
        return 0
    if args.output_dir is None:
        raise ConfigError("--output-dir is required to train (or give --check)")
    failed = run_queue(runs, args.output_dir, threads=args.threads, data_dir=args.data_dir,
                       records_dir=args.records)
    if failed:
        print(f"{PROG}: error: {len(failed)} of {len(runs)} runs failed: "
              f"{', '.join(failed)}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main, PROG))

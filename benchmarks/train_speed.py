"""Training speed and memory of the preset: step, E-step, validation, epoch, peak RSS.

    python benchmarks/train_speed.py --dataset toys [--preset plus] [--mixed-precision bfloat16]

Runs two epochs of the real training loop (the first pays for tracing) and reports
the second; prints one JSON object on its last line with `step_s` (median seconds
per training step), `train_s` (the epoch's training steps alone), `estep_s`,
`eval_s`, `epoch_s` (E-step + training + validation) and `peak_rss_mb`.
`--profile` adds `op_time_share`, the share of TensorFlow op time by op type in a
traced training step. `--deterministic` turns on TensorFlow's op determinism, as
`fit` does by default; `--threads N` limits the threads as `fit --threads` does.
Every other flag of `fit` (`--preset`, `--mixed-precision`, `--next-item-loss`, ...)
sets the trained configuration, but `--warm-up-epochs` is 0 unless given
(`report.STEADY_STATE`).
"""

import statistics
import time

# isort: off
import iclrec_tf  # noqa: F401  (selects Keras 2 before TensorFlow loads)

# isort: on
import tensorflow as tf
import tf_keras as keras
from report import STEADY_STATE, add_training_flags, peak_rss_mb, print_figures, training_setting

from iclrec_tf import cli
from iclrec_tf.train.run import prepare_training


class Stopwatch(keras.callbacks.Callback):
    """Times each epoch from before its E-step to after its validation, and each step."""

    def __init__(self):
        super().__init__()
        self.epoch_seconds, self.step_seconds = [], []

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_start = time.perf_counter()
        self.step_seconds.append([])

    def on_train_batch_begin(self, batch, logs=None):
        self._step_start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self.step_seconds[-1].append(time.perf_counter() - self._step_start)

    def close_epoch(self):
        self.epoch_seconds.append(time.perf_counter() - self._epoch_start)


class _CloseEpoch(keras.callbacks.Callback):
    """Placed after validation, so that the epoch's time includes it."""

    def __init__(self, stopwatch):
        super().__init__()
        self.stopwatch = stopwatch

    def on_epoch_end(self, epoch, logs=None):
        self.stopwatch.close_epoch()


def profile_steps(training, steps=3):
    """Share of TensorFlow op time by op type over a few training steps (a real trace).

    Returns:
      `{op_type: share}` for the ten largest, plus `other`; shares add up to 1.
    """
    import collections
    import glob
    import tempfile

    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    step = training.model.make_train_function()
    iterator = iter(training.train_data)
    step(iterator)  # traced before the trace starts
    logdir = tempfile.mkdtemp(prefix="iclrec-profile-")
    tf.profiler.experimental.start(logdir)
    for _ in range(steps):
        step(iterator)
    tf.profiler.experimental.stop()
    space = xplane_pb2.XSpace()
    with open(glob.glob(f"{logdir}/**/*.xplane.pb", recursive=True)[0], "rb") as stream:
        space.ParseFromString(stream.read())
    seconds = collections.Counter()
    for plane in space.planes:
        if plane.name != "/host:CPU":
            continue
        for line in plane.lines:
            for event in line.events:
                name = plane.event_metadata[event.metadata_id].name
                op_type = name.rsplit(":", 1)[-1].strip()
                # "scope/op_name:OpType" is an executed op; the executor's own
                # spans (Process, Run, the function call) contain those ops.
                if ":" in name and op_type not in ("Process", "Run") \
                        and not op_type.startswith("__inference"):
                    seconds[op_type] += event.duration_ps * 1e-12
    total = sum(seconds.values())
    top = dict(seconds.most_common(10))
    shares = {op: round(value / total, 3) for op, value in top.items()}
    shares["other"] = round(1 - sum(top.values()) / total, 3)
    return shares


def main():
    parser = cli.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--deterministic", action="store_true",
                        help="TensorFlow op determinism, as `fit` (its default) runs")
    add_training_flags(parser, exclude=("epochs",))  # two epochs, always
    args = parser.parse_args()
    config, data = training_setting(args, epochs=2, **STEADY_STATE)
    if args.deterministic:
        tf.config.experimental.enable_op_determinism()
    training = prepare_training(config, data)
    stopwatch = Stopwatch()
    estep, validation = training.clustering, training.validation
    training.model.fit(training.train_data, epochs=2, verbose=2,
                       steps_per_epoch=training.steps_per_epoch,
                       callbacks=[c for c in (stopwatch, estep, validation,
                                              _CloseEpoch(stopwatch)) if c is not None])
    figures = {
        "step_s": round(statistics.median(stopwatch.step_seconds[-1]), 4),
        "train_s": round(sum(stopwatch.step_seconds[-1]), 2),
        "estep_s": round(estep.results[-1].seconds, 2) if estep and estep.results else 0.0,
        "eval_s": round(validation.seconds[-1], 2),
        "epoch_s": round(stopwatch.epoch_seconds[-1], 2),
        "peak_rss_mb": peak_rss_mb(),
    }
    if args.profile:
        figures["op_time_share"] = profile_steps(training)
    print_figures(figures, config)


if __name__ == "__main__":
    raise SystemExit(cli.run(main, "train_speed.py"))

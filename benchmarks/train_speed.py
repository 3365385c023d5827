"""Training speed and memory of the preset: step, E-step, validation, epoch, peak RSS.

    python benchmarks/train_speed.py --dataset toys

Runs two epochs of the real training loop (the first pays for tracing) and reports
the second; prints one JSON object on its last line with `step_s` (median seconds
per training step), `estep_s`, `eval_s`, `epoch_s` (E-step + training +
validation) and `peak_rss_mb`. `--profile` adds a coarse breakdown of one step.
"""

import argparse
import json
import platform
import resource
import statistics
import sys
import time

# isort: off
import iclrec_tf  # noqa: F401  (selects Keras 2 before TensorFlow loads)

# isort: on
import tensorflow as tf
import tf_keras as keras

from iclrec_tf.config import TrainConfig
from iclrec_tf.data import load_sequences, resolve_dataset
from iclrec_tf.fit import prepare_training
from iclrec_tf.intents import IntentClustering
from iclrec_tf.validation import RankingValidation


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


def profile_step(training, batch):
    """Seconds of forward, forward+backward and a whole step on one batch (median of 5)."""
    model = training.model

    @tf.function
    def forward(batch):
        return model.task_losses(batch, training=True)

    @tf.function
    def forward_backward(batch):
        with tf.GradientTape() as tape:
            losses = model.task_losses(batch, training=True)
            total = tf.add_n([t.weight * losses[t.name] for t in model.tasks])
        return tape.gradient(total, model.trainable_variables)

    def timed(function):
        function(batch)
        times = []
        for _ in range(5):
            start = time.perf_counter()
            tf.nest.map_structure(lambda t: t.numpy() if hasattr(t, "numpy") else t,
                                  function(batch))
            times.append(time.perf_counter() - start)
        return statistics.median(times)

    step = model.make_train_function()
    data_iterator = iter(tf.data.Dataset.from_tensors(batch).repeat())
    return {"forward_s": timed(forward), "forward_backward_s": timed(forward_backward),
            "train_step_s": timed(lambda _: step(data_iterator))}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="toys")
    parser.add_argument("--data-dir")
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()

    config = TrainConfig.for_dataset(args.dataset, epochs=2).validate()
    data = load_sequences(resolve_dataset(args.dataset, args.data_dir))
    training = prepare_training(config, data)
    stopwatch = Stopwatch()
    estep = next(c for c in training.callbacks if isinstance(c, IntentClustering))
    validation = next(c for c in training.callbacks if isinstance(c, RankingValidation))
    training.model.fit(training.train_data, epochs=2, verbose=2,
                       callbacks=[stopwatch, estep, validation, _CloseEpoch(stopwatch)])
    figures = {
        "step_s": round(statistics.median(stopwatch.step_seconds[-1]), 4),
        "estep_s": round(estep.results[-1].seconds, 2),
        "eval_s": round(validation.seconds[-1], 2),
        "epoch_s": round(stopwatch.epoch_seconds[-1], 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    if args.profile:
        batch = next(iter(training.train_data))
        figures["profile"] = {k: round(v, 4) for k, v in profile_step(training, batch).items()}
    print(f"# {platform.processor() or platform.machine()}, {tf.__version__}, "
          f"{args.dataset}, {config.num_blocks} blocks, batch {config.batch_size}",
          file=sys.stderr)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()

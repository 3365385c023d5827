"""What TensorBoard logging adds to an epoch: the same run with and without it.

    python benchmarks/logging_overhead.py --dataset toys

One model trains one epoch per `fit`, alternately without and with
`ICLRecTensorBoard` (histograms off, `--log-every` steps), after one untimed
warm-up epoch that pays for tracing. An epoch is timed from before its E-step to
after its logging, as `fit` runs it. Prints one JSON object on its last line:
the median epoch seconds of each arm (`epoch_s_without`, `epoch_s_with`), their
spread (max - min), `overhead_pct`, and the once-a-run costs of the logging
callback outside the epochs (`train_begin_s`: HParams; `train_end_s`: the
Projector files). `--max-users N` trains on the first N users, to bound the time.
"""

import argparse
import collections
import statistics
import sys
import tempfile
import time

# isort: off
import iclrec_tf  # noqa: F401  (selects Keras 2 before TensorFlow loads)

# isort: on
import tf_keras as keras
from report import print_figures

from iclrec_tf.config import TrainConfig
from iclrec_tf.data.datasets import load_sequences, resolve_dataset
from iclrec_tf.train.monitoring import ICLRecTensorBoard
from iclrec_tf.train.run import prepare_training


class Clock(keras.callbacks.Callback):
    """Notes when its hooks run; its place in the callback list decides what it brackets."""

    def __init__(self):
        super().__init__()
        self.times = collections.defaultdict(list)

    def on_train_begin(self, logs=None):
        self.times["train_begin"].append(time.perf_counter())

    def on_epoch_begin(self, epoch, logs=None):
        self.times["epoch_begin"].append(time.perf_counter())

    def on_epoch_end(self, epoch, logs=None):
        self.times["epoch_end"].append(time.perf_counter())

    def on_train_end(self, logs=None):
        self.times["train_end"].append(time.perf_counter())


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="toys")
    parser.add_argument("--data-dir")
    parser.add_argument("--max-users", type=int, help="train on the first N users only")
    parser.add_argument("--epochs-per-arm", type=int, default=3)
    parser.add_argument("--log-every", type=int, default=10)
    args = parser.parse_args()

    config = TrainConfig.for_dataset(args.dataset).validate()
    data = load_sequences(resolve_dataset(args.dataset, args.data_dir))
    if args.max_users:
        data = data.subset(args.max_users)
    training = prepare_training(config, data)
    clustering, validation = training.clustering, training.validation
    board = ICLRecTensorBoard(tempfile.mkdtemp(prefix="logging-overhead-"), config, data,
                              clustering, validation, log_every=args.log_every)
    # An epoch runs from `first`'s epoch begin (before the E-step) to `last`'s
    # epoch end (after validation and logging); `around` and `last` bracket the
    # board's once-a-run hooks.
    first, around, last = Clock(), Clock(), Clock()

    epochs = {"without": [], "with": []}
    once = {"train_begin_s": [], "train_end_s": []}
    schedule = ["warm-up"] + ["without", "with"] * args.epochs_per_arm
    for epoch, arm in enumerate(schedule):
        logging = [around, board] if arm == "with" else []
        training.model.fit(training.train_data, initial_epoch=epoch, epochs=epoch + 1,
                           steps_per_epoch=training.steps_per_epoch,
                           verbose=0, callbacks=[first, *training.callbacks(), *logging, last])
        seconds = last.times["epoch_end"][-1] - first.times["epoch_begin"][-1]
        epochs.setdefault(arm, []).append(seconds)
        if arm == "with":
            for hook in ("train_begin", "train_end"):
                once[f"{hook}_s"].append(last.times[hook][-1] - around.times[hook][-1])
        print(f"{arm} epoch {epoch + 1}: {seconds:.2f} s", file=sys.stderr, flush=True)

    without, with_logging = (statistics.median(epochs[arm]) for arm in ("without", "with"))
    figures = {
        "dataset": args.dataset,
        "users": data.num_users,
        "epochs_per_arm": args.epochs_per_arm,
        "log_every": args.log_every,
        "histograms": False,
        "epoch_s_without": round(without, 2),
        "epoch_s_with": round(with_logging, 2),
        "spread_s_without": round(max(epochs["without"]) - min(epochs["without"]), 2),
        "spread_s_with": round(max(epochs["with"]) - min(epochs["with"]), 2),
        "overhead_pct": round(100 * (with_logging - without) / without, 2),
        **{name: round(statistics.median(values), 2) for name, values in once.items()},
    }
    print_figures(figures, config)


if __name__ == "__main__":
    main()

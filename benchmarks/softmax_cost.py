"""What the full-softmax next-item loss alone costs a training epoch.

    python benchmarks/softmax_cost.py --dataset toys [--preset plus] [--threads N]

Draws one epoch of the preset's real training pipeline and counts each step's
next-item targets, then times the forward and backward pass of
`SoftmaxNextItemTask` (the `--next-item-loss softmax` task) over those rows
against the model's item table, step by step, with nothing else: no encoder, no
contrastive loss, no optimiser. Its time is a floor under the epoch of any run
with `--next-item-loss softmax` on this machine: add the E-step and validation
of `train_speed.py` for the floor of the whole epoch.

Prints one JSON object on its last line: `targets` (rows scored in the epoch),
`items` (candidates per row), `steps`, `softmax_s` (the median of `--repeats`
timed epochs), `gflop` (the three matmuls: logits, and the gradients of the
queries and of the table) and `gflop_per_s`.
"""

import statistics
import time

# isort: off
import iclrec_tf  # noqa: F401  (selects Keras 2 before TensorFlow loads)

# isort: on
import numpy as np
import tensorflow as tf
from report import STEADY_STATE, add_training_flags, print_figures, training_setting

from iclrec_tf import cli
from iclrec_tf.model.tasks import SoftmaxNextItemTask, StepOutputs
from iclrec_tf.train.run import prepare_training


def epoch_target_counts(training):
    """The number of real next-item targets in each step of one training epoch."""
    batches = iter(training.train_data)
    return [int(np.count_nonzero(next(batches)["target_pos"].numpy()))
            for _ in range(training.steps_per_epoch)]


def main():
    parser = cli.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed epochs (default 3)")
    add_training_flags(parser, exclude=("epochs",))
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error(f"--repeats must be a positive integer, got {args.repeats}")
    config, data = training_setting(args, epochs=1, **STEADY_STATE)
    training = prepare_training(config, data)
    counts = epoch_target_counts(training)
    table = tf.Variable(training.model.encoder.embedding_table)
    item_size, dim = table.shape
    task = SoftmaxNextItemTask()
    rng = np.random.default_rng(config.seed)
    # The rows' values do not change the cost; real queries would need the encoder.
    rows = [(tf.constant(rng.normal(size=(count, dim)), tf.float32),
             tf.constant(rng.integers(1, item_size - 1, size=count), tf.int32))
            for count in counts]

    @tf.function(input_signature=[tf.TensorSpec([None, dim], tf.float32),
                                  tf.TensorSpec([None], tf.int32)])
    def forward_backward(hidden, targets):
        with tf.GradientTape() as tape:
            tape.watch(hidden)
            # Each row a sequence of one position, every position a real target.
            loss = task(StepOutputs(batch={"target_pos": targets[:, None]},
                                    sequence_output=hidden[:, None, :], item_embeddings=table))
        return tape.gradient(loss, [hidden, table])

    forward_backward(*rows[0])  # traced before the clock starts
    seconds = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        for hidden, targets in rows:
            gradients = forward_backward(hidden, targets)
        gradients[1].numpy()  # the last step's work is done, not just queued
        seconds.append(time.perf_counter() - start)
    targets = sum(counts)
    gflop = 3 * 2 * targets * item_size * dim / 1e9
    softmax_s = statistics.median(seconds)
    print_figures({"targets": targets, "items": item_size, "steps": len(counts),
                   "softmax_s": round(softmax_s, 4), "gflop": round(gflop, 4),
                   "gflop_per_s": round(gflop / softmax_s, 1)}, config)


if __name__ == "__main__":
    raise SystemExit(cli.run(main, "softmax_cost.py"))

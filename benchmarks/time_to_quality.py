"""Wall time until a training's test NDCG@20 first reaches a target.

    python benchmarks/time_to_quality.py --dataset toys --preset plus --target 0.0560
        [fit's flags, e.g. --next-item-loss sampled]

Trains as `python -m iclrec_tf.fit` does (E-step, validation, early stopping on
valid NDCG@20), and, for this measurement only, also evaluates test after
every epoch; selection stays on valid. Stops at the first epoch whose test
NDCG@20 reaches `--target` (or when training ends). Prints a line per epoch,
then one JSON object: `seconds` from the start of the process (data loading,
model building and tracing included) to that epoch's test, `train_seconds`
from the start of training, `epochs`, and the test NDCG@20 and HR@20 then.
"""

import time

START = time.perf_counter()

# isort: off
import iclrec_tf  # noqa: E402, F401  (selects Keras 2 before TensorFlow loads)

# isort: on
import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402
from report import add_training_flags, print_figures, training_setting  # noqa: E402

from iclrec_tf import cli  # noqa: E402
from iclrec_tf.train.run import prepare_training  # noqa: E402


class TestUntilTarget(keras.callbacks.Callback):
    """After validation and early stopping: test, and stop once the target is reached."""

    def __init__(self, evaluator, target):
        super().__init__()
        self.evaluator = evaluator
        self.target = target
        self.reached = None
        self.curve = []

    def on_train_begin(self, logs=None):
        self.train_start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        test = self.evaluator()
        now = time.perf_counter()
        self.curve.append((epoch + 1, now - START, test["NDCG@20"]))
        print(f"epoch {epoch + 1}: {now - START:.1f} s, valid NDCG@20 "
              f"{logs['val_NDCG@20']:.4f}, test NDCG@20 {test['NDCG@20']:.4f}", flush=True)
        if self.reached is None and test["NDCG@20"] >= self.target:
            self.reached = {"seconds": round(now - START, 1),
                            "train_seconds": round(now - self.train_start, 1),
                            "epochs": epoch + 1, "test_NDCG@20": round(test["NDCG@20"], 4),
                            "test_HR@20": round(test["HR@20"], 4)}
            self.model.stop_training = True


def main():
    parser = cli.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", type=float, default=0.0560,
                        help="test NDCG@20 to reach (default: the paper's Toys figure)")
    add_training_flags(parser)  # as fit takes them
    args = parser.parse_args()
    config, data = training_setting(args, preset="plus", epochs=100)
    tf.config.experimental.enable_op_determinism()  # as fit runs
    training = prepare_training(config, data)
    tester = TestUntilTarget(training.evaluator("test", "reference"), args.target)
    training.model.fit(training.train_data, epochs=config.epochs, verbose=0,
                       steps_per_epoch=training.steps_per_epoch,
                       callbacks=training.callbacks() + [tester])
    figures = {"dataset": args.dataset, "preset": config.preset, "target": args.target,
               "reached": tester.reached is not None,
               **(tester.reached or {"seconds": round(time.perf_counter() - START, 1),
                                     "epochs": len(tester.curve)})}
    print_figures(figures, config)


if __name__ == "__main__":
    raise SystemExit(cli.run(main, "time_to_quality.py"))

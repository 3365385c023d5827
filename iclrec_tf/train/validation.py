"""Full-ranking validation after every epoch, as Keras logs (`val_NDCG@20`, ...)."""

import time

import tf_keras as keras


class RankingValidation(keras.callbacks.Callback):
    """Evaluates on the validation split at each epoch end and adds to the logs.

    The callbacks after it read the `val_` metrics it adds to the epoch's logs
    (`iclrec_tf.train.run.Training.callbacks`).

    Args:
      evaluator: a `RankingEvaluator` on the validation split.
      verbose: 1 prints one line per validation.
    """

    def __init__(self, evaluator, verbose=1):
        super().__init__()
        self.evaluator = evaluator
        self.verbose = verbose
        self.seconds = []

    def on_train_begin(self, logs=None):
        self.seconds = []

    def on_epoch_end(self, epoch, logs=None):
        start = time.perf_counter()
        metrics = self.evaluator()
        self.seconds.append(time.perf_counter() - start)
        if logs is not None:
            logs.update({f"val_{name}": value for name, value in metrics.items()})
        if self.verbose:
            shown = ", ".join(f"{name} {value:.4f}" for name, value in metrics.items())
            print(f"Validation {epoch + 1}: {self.seconds[-1]:.1f} s, {shown}", flush=True)

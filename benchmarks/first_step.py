"""What a training pays before its first step ends: building, the first E-step, tracing.

    python benchmarks/first_step.py --dataset toys [--preset plus] [--threads N]

Builds the training as `fit` does, runs the first E-step, then the first training
step (Python tracing, Grappler's graph optimisation and the first execution), then
five more. Prints one JSON object on its last line: `prepare_s`, `estep_s`,
`first_step_s`, `step_s` (the median of the five) and `trace_s` (the first step
less a later one: about what tracing and optimising cost). Every flag of `fit`
(`--preset`, `--next-item-loss`, ...) sets the trained configuration, but
`--warm-up-epochs` is 0 unless given (`report.STEADY_STATE`).
"""

import statistics
import time

# isort: off
import iclrec_tf  # noqa: F401  (selects Keras 2 before TensorFlow loads)

# isort: on
from report import STEADY_STATE, add_training_flags, print_figures, training_setting

from iclrec_tf import cli
from iclrec_tf.train.run import prepare_training


def _seconds(action):
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def main():
    parser = cli.ArgumentParser(description=__doc__.splitlines()[0])
    add_training_flags(parser, exclude=("epochs",))
    config, data = training_setting(parser.parse_args(), epochs=1, **STEADY_STATE)
    start = time.perf_counter()
    training = prepare_training(config, data)
    figures = {"prepare_s": round(time.perf_counter() - start, 2), "estep_s": 0.0}
    if training.clustering is not None:
        training.clustering.set_model(training.model)
        figures["estep_s"] = round(_seconds(lambda: training.clustering.on_epoch_begin(0)), 2)
    step = training.model.make_train_function()
    batches = iter(training.train_data)
    first = _seconds(lambda: step(batches))
    later = statistics.median(_seconds(lambda: step(batches)) for _ in range(5))
    figures.update(first_step_s=round(first, 2), step_s=round(later, 3),
                   trace_s=round(first - later, 2))
    print_figures(figures, config)


if __name__ == "__main__":
    raise SystemExit(cli.run(main, "first_step.py"))

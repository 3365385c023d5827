"""Where a training's memory goes: resident megabytes after each phase of its start.

    python benchmarks/memory_phases.py --dataset toys [--preset plus] [--threads N]

Builds the training as `fit` does and reads the process's resident set after each
phase: TensorFlow and the package imported (`import_mb`), the data, model and
pipelines built (`prepared_mb`), the first E-step (`estep_mb`, if the run has
intents), the first training step, which traces and optimises the step's graph
(`first_step_mb`), and five more steps (`steps_mb`). Prints one JSON object on its
last line with those, `peak_rss_mb`, `library_mb` and `train_graph_ops`, the
operations in the traced training step. `library_mb` is the part of the last
phase's resident set that maps files, TensorFlow's shared libraries above all:
pages shared with every other process that loads them, and a floor that no
change to the training can lower. `--warm-up-epochs` is 0 unless given (`report.STEADY_STATE`);
every other flag of `fit` sets the trained configuration.
"""

import resource

# isort: off
import iclrec_tf  # noqa: F401  (selects Keras 2 before TensorFlow loads)

# isort: on
from report import STEADY_STATE, add_training_flags, peak_rss_mb, print_figures, training_setting

from iclrec_tf import cli
from iclrec_tf.train.run import prepare_training


def resident_mb():
    with open("/proc/self/statm") as stream:
        pages = int(stream.read().split()[1])
    return round(pages * resource.getpagesize() / 2**20, 1)


def file_backed_mb():
    """The resident pages that map files (`RssFile` of /proc/self/status), in MB."""
    with open("/proc/self/status") as stream:
        kilobytes = next(int(line.split()[1]) for line in stream if line.startswith("RssFile:"))
    return round(kilobytes / 1024, 1)


def main():
    figures = {"import_mb": resident_mb()}
    parser = cli.ArgumentParser(description=__doc__.splitlines()[0])
    add_training_flags(parser, exclude=("epochs",))
    config, data = training_setting(parser.parse_args(), epochs=1, **STEADY_STATE)
    training = prepare_training(config, data)
    figures["prepared_mb"] = resident_mb()
    if training.clustering is not None:
        training.clustering.set_model(training.model)
        training.clustering.on_epoch_begin(0)
        figures["estep_mb"] = resident_mb()
    step = training.model.make_train_function()
    batches = iter(training.train_data)
    step(batches)
    figures["first_step_mb"] = resident_mb()
    for _ in range(5):
        step(batches)
    figures["steps_mb"] = resident_mb()
    figures["peak_rss_mb"] = peak_rss_mb()
    figures["library_mb"] = file_backed_mb()
    # The function traced by the first step, from the cache: no second trace.
    figures["train_graph_ops"] = len(step.get_concrete_function(batches).graph.get_operations())
    print_figures(figures, config)


if __name__ == "__main__":
    raise SystemExit(cli.run(main, "memory_phases.py"))

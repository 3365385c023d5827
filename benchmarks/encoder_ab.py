"""Interleaved A/B of a training step: the encoder at a git revision vs the working tree.

    python benchmarks/encoder_ab.py --base c8f7718 --dataset toys

Builds the preset's model twice, once with `iclrec_tf/model/encoder.py` and its
kernels (`iclrec_tf/model/kernels.py`) as of `--base` (a revision with this layout)
and once as in the working tree, gives both the same weights and centroids, and times
training steps on the same few batches, alternating A B B A ..., so that the load
of a shared machine falls on both alike. Prints one JSON object: the median wall
and CPU seconds (`time.process_time`, all threads) of a step of each, and the
ratios working / base. `--only base|working` builds one model and adds
`peak_rss_mb` after the steps instead (memory cannot be split within a process).
"""

import argparse
import importlib.util
import os
import pathlib
import re
import statistics
import subprocess
import sys
import tempfile
import time

# isort: off
import iclrec_tf  # noqa: F401  (selects Keras 2 before TensorFlow loads)

# isort: on
import numpy as np
from report import peak_rss_mb, print_figures

from iclrec_tf.config import TrainConfig
from iclrec_tf.data.datasets import load_sequences, resolve_dataset
from iclrec_tf.model import iclrec as model_module
from iclrec_tf.train.run import prepare_training, reference_adam

REPO = pathlib.Path(__file__).resolve().parents[1]


def encoder_module_at(revision):
    """The encoder and its kernels as of `revision`, imported as one module of its own."""
    kernels, encoder = (
        subprocess.run(["git", "show", f"{revision}:iclrec_tf/model/{name}.py"], cwd=REPO,
                       capture_output=True, text=True, check=True).stdout
        for name in ("kernels", "encoder"))
    # The revision's kernels, not the working tree's, in front of its encoder.
    source = kernels + re.sub(r"^from iclrec_tf\.model\.kernels import .*$", "", encoder,
                              flags=re.M)
    # Its classes must not take the registered names of the working tree's.
    source = source.replace('register_keras_serializable("iclrec_tf")',
                            'register_keras_serializable("iclrec_tf_base")')
    # A file of its own, so that AutoGraph can read the source of its functions.
    path = pathlib.Path(tempfile.mkdtemp(prefix="encoder-ab-")) / "base_encoder.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("base_encoder", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def build_with_encoder(config, item_size, encoder_class):
    """`build_model`, with `encoder_class` standing in for `SequenceEncoder`."""
    original = model_module.SequenceEncoder
    model_module.SequenceEncoder = encoder_class
    try:
        return model_module.build_model(config, item_size)
    finally:
        model_module.SequenceEncoder = original


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="git revision of the encoder to compare")
    parser.add_argument("--dataset", default="toys")
    parser.add_argument("--data-dir")
    parser.add_argument("--steps", type=int, default=10, help="timed steps of each model")
    parser.add_argument("--only", choices=("base", "working"))
    args = parser.parse_args()

    config = TrainConfig.for_dataset(args.dataset).validate()
    data = load_sequences(resolve_dataset(args.dataset, args.data_dir))
    training = prepare_training(config, data)
    models = {"working": training.model}
    if args.only != "working":
        base_encoder = encoder_module_at(args.base).SequenceEncoder
        models["base"] = build_with_encoder(config, data.item_size, base_encoder)
        models["base"].compile(optimizer=reference_adam(config.lr))
        models["base"].set_weights(training.model.get_weights())
    if args.only == "base":
        del models["working"]
    centroids = np.random.default_rng(config.seed).normal(
        size=(config.num_intent_clusters, config.hidden_size))
    batches = training.train_data.take(4).cache().repeat()
    steps = {}
    for name, model in models.items():
        model.set_centroids(centroids)  # the intent task is active, as after the E-step
        steps[name] = (model.make_train_function(), iter(batches))
        for _ in range(2):  # tracing, then one warm step
            steps[name][0](steps[name][1])
    wall = {name: [] for name in steps}
    cpu = {name: [] for name in steps}
    order = list(steps)
    for index in range(args.steps):
        for name in order if index % 2 == 0 else order[::-1]:
            step, iterator = steps[name]
            cpu_start, wall_start = time.process_time(), time.perf_counter()
            float(step(iterator)["loss"])
            wall[name].append(time.perf_counter() - wall_start)
            cpu[name].append(time.process_time() - cpu_start)
    figures = {}
    for name in steps:
        figures[f"{name}_step_s"] = round(statistics.median(wall[name]), 4)
        figures[f"{name}_step_cpu_s"] = round(statistics.median(cpu[name]), 4)
    if len(steps) == 2:
        for kind in ("step_s", "step_cpu_s"):
            figures[f"ratio_{kind}"] = round(figures[f"working_{kind}"]
                                             / figures[f"base_{kind}"], 3)
    else:
        figures["peak_rss_mb"] = peak_rss_mb()
    load = " ".join(f"{value:.1f}" for value in os.getloadavg())
    print(f"# base {args.base}, load average {load}", file=sys.stderr)
    print_figures(figures, config)


if __name__ == "__main__":
    main()

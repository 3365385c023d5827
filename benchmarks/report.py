"""What the training benchmarks share: the flags that set a training, and the
closing lines they print (the setting, then one JSON object)."""

import json
import platform
import resource
import sys

import tensorflow as tf

from iclrec_tf import cli
from iclrec_tf.data.datasets import load_sequences, resolve_dataset
from iclrec_tf.train.distribute import limit_threads


def add_training_flags(parser, exclude=()):
    """Adds `--dataset`, `--data-dir`, `--threads` and `fit`'s training flags
    but those of `exclude` (config field names) to `parser`."""
    parser.add_argument("--dataset", default="toys")
    parser.add_argument("--data-dir")
    parser.add_argument("--threads", type=int, help="as `fit --threads`")
    cli.add_config_flags(parser, exclude=("dataset", *exclude))


# What the benchmarks of a step or an epoch measure: the preset's steady state, with
# its E-step and intent loss, not one of `--preset plus`'s warm-up epochs, which have
# neither. `--warm-up-epochs`, if given, still wins.
STEADY_STATE = {"warm_up_epochs": 0}


def training_setting(args, **defaults):
    """Applies `--threads`, then returns the validated `TrainConfig` of `args`
    (`defaults` for the flags not given) and the dataset's sequences."""
    if args.threads is not None:
        limit_threads(args.threads)
    config = cli.config_from_flags(args, **defaults)
    return config, load_sequences(resolve_dataset(args.dataset, args.data_dir))


def peak_rss_mb():
    """This process's peak resident set so far, in megabytes (Linux counts KiB)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def print_figures(figures, config):
    """Prints the machine and preset to stderr, then `figures` as JSON on stdout."""
    print(f"# {platform.processor() or platform.machine()}, {tf.__version__}, "
          f"{config.dataset}, {config.num_blocks} blocks, batch {config.batch_size}",
          file=sys.stderr)
    print(json.dumps(figures))

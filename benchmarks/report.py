"""The closing lines every training benchmark prints: the setting, then one JSON object."""

import json
import platform
import sys

import tensorflow as tf


def print_figures(figures, dataset, config):
    """Prints the machine and preset to stderr, then `figures` as JSON on stdout."""
    print(f"# {platform.processor() or platform.machine()}, {tf.__version__}, "
          f"{dataset}, {config.num_blocks} blocks, batch {config.batch_size}",
          file=sys.stderr)
    print(json.dumps(figures))

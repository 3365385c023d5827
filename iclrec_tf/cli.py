"""Shared command-line plumbing: one-line errors, config flags from `TrainConfig`.

Imports no TensorFlow: `python pipelines/prepare.py` uses it too.
"""

import argparse
import dataclasses
import sys
import time

from iclrec_tf.config import TrainConfig, flag_name
from iclrec_tf.errors import UserError


class ArgumentParser(argparse.ArgumentParser):
    """An argparse parser whose errors are one line, without the usage block."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


def add_config_flags(parser, exclude=()):
    """Adds `--<field>` for every `TrainConfig` field; unset flags stay None."""
    for field in dataclasses.fields(TrainConfig):
        if field.name in exclude:
            continue
        flag = flag_name(field.name)
        if field.type in (bool, "bool"):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None)
        else:
            kind = type(field.default)
            parser.add_argument(flag, type=kind, default=None, metavar=kind.__name__.upper(),
                                help=f"default {field.default} (or the dataset preset)")


def config_from_flags(args, **defaults):
    """The validated `TrainConfig` of `args.dataset`: each field from its flag if
    one was given, else from `defaults`, else from the dataset's preset.

    Raises:
      ConfigError: naming the flag of the first bad setting.
    """
    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)
             if f.name != "dataset" and getattr(args, f.name, None) is not None}
    return TrainConfig.for_dataset(args.dataset, **{**defaults, **given}).validate()


def phase(name, start):
    """Prints one progress line: a phase's name and the seconds since `start`."""
    print(f"{name}: {time.perf_counter() - start:.1f} s", flush=True)


def run(main, prog):
    """Runs `main()`, turning a user's mistake into one line on stderr and exit 2."""
    try:
        return main()
    except UserError as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130

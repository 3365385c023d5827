"""Shared command-line plumbing: one-line errors, config flags from `TrainConfig`.

Imports no TensorFlow: `python pipelines/prepare.py` uses it too.
"""

import argparse
import dataclasses
import json
import pathlib
import sys
import time

from iclrec_tf.config import TrainConfig, flag_name
from iclrec_tf.errors import ConfigError, UserError


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
    return TrainConfig.for_dataset(args.dataset, **{**defaults, **_given(args)}).validate()


def config_from_file(path, args):
    """The validated `TrainConfig` a `config.json` holds (a run's, or a record's), as it
    was written, whatever the presets say today; the config flags given in `args`
    (`--dataset` among them) override its fields.

    Raises:
      ConfigError: naming the file (unreadable, not a config, a bad setting) or the
        flag; `--preset` is refused, as the file already holds every setting.
    """
    try:
        saved = TrainConfig.from_json(pathlib.Path(path).read_text())
    except OSError as error:
        raise ConfigError(f"--config {path}: cannot read it ({error.strerror})") from None
    except json.JSONDecodeError as error:
        raise ConfigError(f"{path}:{error.lineno}: invalid JSON") from None
    except (AttributeError, TypeError):
        raise ConfigError(f"{path}: not a config.json (a JSON object of the run's "
                          "settings)") from None
    try:
        saved.validate()
    except ConfigError as error:
        raise ConfigError(f"{path}: {error}") from None
    except TypeError:  # a number written as a string, say
        raise ConfigError(f"{path}: a setting is not of its type (compare it with a "
                          "config.json that fit wrote)") from None
    if getattr(args, "preset", None) is not None:
        raise ConfigError(f"--preset: not with --config, whose {path} holds every setting "
                          f"of its run (preset {saved.preset!r} included)")
    given = _given(args)
    if getattr(args, "dataset", None) is not None:
        given["dataset"] = args.dataset
    return dataclasses.replace(saved, **given).validate()


def _given(args):
    """`{field: value}` of the `TrainConfig` flags given in `args`, `--dataset` aside."""
    return {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)
            if f.name != "dataset" and getattr(args, f.name, None) is not None}


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

"""Writing the dataset: its files, and the staging directory they go into before it
is renamed into place."""

import contextlib
import pathlib
import sys

from iclrec_tf import files
from iclrec_tf.errors import ConfigError


def write_text(path, chunks):
    """Writes the text `chunks` (e.g. an engine's lines) to `path`, one after the other."""
    with open(path, "w", encoding="utf-8") as stream:
        stream.writelines(chunks)


def check_output(output):
    """Raises `ConfigError` unless `output` is absent or an empty directory."""
    output = pathlib.Path(output)
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise ConfigError(f"--output {output} already exists; remove it or choose another")


@contextlib.contextmanager
def staged(output):
    """Yields a new directory beside `output` that becomes `output` if the block succeeds.

    Raises:
      ConfigError: `output` exists and is not empty, or cannot be written.
    """
    output = pathlib.Path(output)
    check_output(output)
    # A run killed outright (SIGKILL, the OOM killer) cannot clean up after itself.
    for leftover in files.staging_leftovers(output.parent, output.name):
        print(f"note: {leftover} was left by a run that was killed; delete it to free its "
              "space", file=sys.stderr, flush=True)
    try:
        staging = files.StagedDirectory(output.parent, output.name)
    except OSError as error:
        raise ConfigError(f"--output {output}: not writable ({error.strerror})") from None
    with staging:
        yield staging.path
        try:
            staging.publish(output)  # takes an empty directory, refuses a full one
        except FileExistsError:
            raise ConfigError(f"--output {output} was filled while it was being prepared; "
                              "remove it or choose another") from None

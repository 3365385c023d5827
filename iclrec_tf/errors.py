"""The user's mistakes: one line on stderr and exit status 2 (see `iclrec_tf.cli.run`).

Each class names a kind of input. Its message names the flag, or the file and
line, and what was expected: the command-line entry points print it as is,
never a traceback.
"""


class UserError(ValueError):
    """Base of the errors a user can fix by changing a flag or a file."""


class ConfigError(UserError):
    """A setting is out of range or does not fit the data; the message names the flag."""


class DataError(UserError):
    """A dataset or log cannot be found or read; the message names the file and line."""


class ReferenceWeightsError(UserError):
    """A released weights file is missing, unreadable, or does not fit the model."""


class RunDirectoryError(UserError):
    """A run directory cannot be written, resumed, or has no trained weights."""


class StorageError(UserError):
    """A file cannot be written (a full disk, no permission); the message names it."""

"""Atomic writes of files and directories, with one permission policy.

Everything `iclrec_tf` writes for a person or another program to read (run
files, checkpoints' side files, weights, exports, prepared datasets, plots) is
written under a hidden temporary name beside its destination and renamed into
place when complete, so a crash or a kill leaves the previous content or
nothing, never half a file.

One permission policy serves every path: files get `0666` and directories
`0777`, less the process's umask (0644 and 0755 under the usual 022), as
`open` and `mkdir` give them. `tempfile`'s private 0600 and 0700 are for
secrets; a TF Serving process running as another user must be able to read an
export.
"""

import contextlib
import errno
import glob
import os
import pathlib
import shutil
import uuid


def _umask():
    current = os.umask(0)
    os.umask(current)
    return current


def file_mode():
    """The mode of a new file under the current umask (0644 under 022)."""
    return 0o666 & ~_umask()


def directory_mode():
    """The mode of a new directory under the current umask (0755 under 022)."""
    return 0o777 & ~_umask()


def _hidden_name(path, suffix=""):
    return path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}{suffix}")


def publish_file(source, destination):
    """Gives `source` the file mode of the policy and renames it to `destination`.

    Both must be on one file system (in practice: the same directory).
    """
    os.chmod(source, file_mode())
    os.replace(source, destination)


@contextlib.contextmanager
def atomic_file(path, mode="w", **open_kwargs):
    """Opens a temporary file that replaces `path` when the block succeeds.

    Args:
      path: the destination.
      mode: `w` (text) or `wb` (binary).
      **open_kwargs: passed to `open` (`newline`, `encoding`).

    Yields:
      The open stream. If the block raises, the temporary file is removed and
      `path` is left as it was.

    Example:
      >>> with atomic_file("runs/toys/history.csv", newline="") as stream:
      ...     csv.writer(stream).writerows(rows)
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"mode must be 'w' or 'wb', got {mode!r}")
    path = pathlib.Path(path)
    temporary = _hidden_name(path, ".tmp")
    try:
        with open(temporary, mode.replace("w", "x"), **open_kwargs) as stream:
            yield stream
        publish_file(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def write_text(path, text, **open_kwargs):
    """Writes `text` to `path` atomically."""
    with atomic_file(path, "w", **open_kwargs) as stream:
        stream.write(text)


def write_bytes(path, data):
    """Writes `data` to `path` atomically."""
    with atomic_file(path, "wb") as stream:
        stream.write(data)


def normalize_modes(root):
    """Gives `root` and everything below it the policy's modes.

    Writers we do not control (TensorFlow's checkpoint and SavedModel code,
    `tempfile`) choose their own; a published tree follows one policy.
    """
    root = pathlib.Path(root)
    files, directories = file_mode(), directory_mode()
    os.chmod(root, directories)
    for folder, subfolders, names in os.walk(root):
        for name in subfolders:
            os.chmod(os.path.join(folder, name), directories)
        for name in names:
            os.chmod(os.path.join(folder, name), files)


class StagedDirectory:
    """A new hidden directory to fill, then rename into place with `publish`.

    It is `parent/.<name>.<random>`: hidden, and never an integer, so that TF
    Serving ignores one that a killed process left behind. As a context
    manager it removes itself at the end of the block unless it was published.

    Args:
      parent: the directory it is made in (created if missing), the same as
        the destination's.
      name: the destination's name, part of the hidden name.

    Raises:
      OSError: `parent` cannot be created or written.

    Example:
      >>> with StagedDirectory(run_dir, "weights") as staged:
      ...     model.save_weights(str(staged.path / "model"))
      ...     staged.publish(run_dir / "weights", replace=True)
    """

    def __init__(self, parent, name):
        parent = pathlib.Path(parent)
        parent.mkdir(parents=True, exist_ok=True)
        self.path = _hidden_name(parent / name)
        self.path.mkdir()
        self.published = False

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        if not self.published:
            shutil.rmtree(self.path, ignore_errors=True)

    def publish(self, destination, replace=False):
        """Renames the staging directory to `destination`, with the policy's modes.

        Args:
          destination: the final path, in the same parent directory.
          replace: whether an existing `destination` is replaced (it is
            renamed aside first, then deleted). Without it, only an absent or
            empty `destination` is taken.

        Raises:
          FileExistsError: `destination` exists and is not empty, without `replace`.
        """
        destination = pathlib.Path(destination)
        normalize_modes(self.path)
        if replace and destination.exists():
            retired = _hidden_name(destination, ".old")
            os.replace(destination, retired)
            os.replace(self.path, destination)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            try:
                os.rename(self.path, destination)
            except OSError as error:
                if error.errno in (errno.EEXIST, errno.ENOTEMPTY):
                    raise FileExistsError(errno.EEXIST, "exists", str(destination)) from None
                raise
        self.published = True


def staging_leftovers(parent, name):
    """The `StagedDirectory`s of `name` that killed processes left in `parent`."""
    return sorted(pathlib.Path(parent).glob(f".{glob.escape(name)}.*"))

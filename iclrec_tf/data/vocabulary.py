"""`items.txt`: the raw id of each integer item id of a prepared dataset.

Line i (from 1) holds the raw id of item i, so a dataset written by
`pipelines/prepare.py` keeps its string ids beside its integer sequences. `fit`
copies the file into the run directory, and an export of such a run serves
raw ids (see `iclrec_tf.serve.module`).
"""

import pathlib

from iclrec_tf.data.datasets import DATASETS
from iclrec_tf.errors import DataError

ITEMS_FILE = "items.txt"
USERS_FILE = "users.txt"


def vocabulary_text(names):
    """The file content for `names`: one a line, in order."""
    return "".join(f"{name}\n" for name in names)


def read_vocabulary(path, min_size=0):
    """Reads and checks a vocabulary file.

    Args:
      path: the file, one raw id a line.
      min_size: the number of ids the data needs (its largest item id).

    Returns:
      A list of str: element `i - 1` is the raw id of item `i`.

    Raises:
      DataError: naming `path:line` for a blank or repeated id, or `path`
        when the file is unreadable or has fewer than `min_size` ids.
    """
    path = pathlib.Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise DataError(f"{path}: cannot read: {error.strerror}") from None
    except UnicodeDecodeError:
        raise DataError(f"{path}: not UTF-8 text") from None
    names = text.split("\n")
    if names and names[-1] == "":
        names.pop()  # the final newline ends the last line; it starts no id
    first_line = {}
    for number, name in enumerate(names, start=1):
        if not name.strip():
            raise DataError(f"{path}:{number}: blank id")
        if first_line.setdefault(name, number) != number:
            raise DataError(f"{path}:{number}: id {name[:40]!r} already on line "
                            f"{first_line[name]}")
    if len(names) < min_size:
        raise DataError(f"{path}: {len(names)} ids, but the dataset has item ids up to "
                        f"{min_size}")
    return names


def dataset_vocabulary(dataset, dataset_path, max_item):
    """The item vocabulary of a dataset given by path, from the `items.txt` beside it.

    Args:
      dataset: the `--dataset` value; a named dataset (`toys`, ...) has none.
      dataset_path: the resolved dataset file.
      max_item: the dataset's largest item id.

    Returns:
      The list of raw ids, or None without a vocabulary.

    Raises:
      DataError: the file exists but is malformed or too short.
    """
    if str(dataset).lower() in DATASETS:
        return None
    path = pathlib.Path(dataset_path).with_name(ITEMS_FILE)
    return read_vocabulary(path, max_item) if path.is_file() else None

"""Writing the dataset: the sequence file in user order, the vocabularies, and the
staging directory everything goes into before it is renamed into place."""

import contextlib
import math
import pathlib
import sys

import numpy as np

from iclrec_tf import files
from iclrec_tf.data.vocabulary import vocabulary_text
from iclrec_tf.errors import ConfigError
from iclrec_tf.prepare.partitions import Partitions


def sequence_lines(first_user, items, lengths, users_per_chunk=1 << 16):
    """Yields sequence file text, `user item_1 ... item_n` a line.

    Args:
      first_user: the number of the first line's user; the next ones follow.
      items: [records] item numbers, the users' sequences one after the other.
      lengths: [users] each user's share of `items`.
      users_per_chunk: lines made at once: all of them as Python ints and text
        would be the largest thing in memory (28 bytes an int).
    """
    splits = np.concatenate([[0], np.cumsum(lengths)])
    for first in range(0, len(lengths), users_per_chunk):
        last = min(first + users_per_chunk, len(lengths))
        chunk = items[splits[first]:splits[last]].tolist()
        bounds = (splits[first:last + 1] - splits[first]).tolist()
        yield "".join(f"{user} {' '.join(map(str, chunk[start:end]))}\n" for user, start, end
                      in zip(range(first_user + first, first_user + last), bounds[:-1],
                             bounds[1:], strict=True))


def write_sequences(partitions, user_numbers, lengths, path, work):
    """Writes the sequence file: users in number order, items numbered as they appear.

    The records are split once more, into partitions of consecutive user
    numbers, so that each can be sorted (by user, time, input order) and
    written in turn.

    Args:
      partitions: the filtered `Partitions` by user; emptied (files deleted).
      user_numbers: [all user codes] the number (from 0) of each kept user, from
        `number_users`.
      lengths: [users kept] records of each, in number order.
      path: the sequence file to write.
      work: a directory for the second partitions.

    Returns:
      The item codes in number order.
    """
    per_part = max(1, math.ceil(lengths.sum() / partitions.count))
    # Consecutive users, about `per_part` records a partition (a longer user
    # alone), numbered without gaps.
    starts = (np.cumsum(lengths, dtype=np.int64) - lengths) // per_part
    part_of_rank = np.concatenate([[0], np.cumsum(starts[1:] != starts[:-1])]).astype(np.int32)
    del starts
    first_ranks = np.searchsorted(part_of_rank, np.arange(part_of_rank[-1] + 2))
    by_rank = Partitions(work, len(first_ranks) - 1, partitions.has_rating)
    for index in range(partitions.count):
        records = partitions.load(index)
        records["user"] = user_numbers[records["user"]]
        by_rank.append(records, part_of_rank[records["user"]])
        partitions.remove(index)

    item_numbers = np.zeros(len(partitions.item_names), dtype=np.int64)
    item_codes = []
    numbered = 0
    with open(path, "w", encoding="utf-8") as stream:
        for index in range(by_rank.count):
            records = by_rank.load(index)
            # One user's records come from one partition by user, in input order,
            # so a stable sort leaves their ties in input order.
            records = records[np.lexsort((records["time"], records["user"]))]
            codes = records["item"]
            distinct, first_seen = np.unique(codes[item_numbers[codes] == 0],
                                             return_index=True)
            newcomers = distinct[np.argsort(first_seen)]
            item_numbers[newcomers] = np.arange(numbered + 1, numbered + len(newcomers) + 1)
            numbered += len(newcomers)
            item_codes.append(newcomers)
            ranks = slice(first_ranks[index], first_ranks[index + 1])
            stream.writelines(sequence_lines(ranks.start + 1, item_numbers[codes],
                                             lengths[ranks]))
            by_rank.remove(index)
    return np.concatenate(item_codes)


def write_names(path, names, codes, per_chunk=1 << 16):
    """Writes `names[codes]`, one a line (a vocabulary file), a chunk of names at a time.

    Args:
      path: the file.
      names: a pyarrow string array (chunked or not), code -> raw id.
      codes: the codes to write, in line order.
      per_chunk: names converted to Python strings at once.
    """
    with open(path, "w", encoding="utf-8") as stream:
        for start in range(0, len(codes), per_chunk):
            stream.write(vocabulary_text(names.take(codes[start:start + per_chunk]).to_pylist()))


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

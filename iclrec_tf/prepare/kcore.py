"""Deduplication and the k-core, one partition at a time, and the numbering of users.

Exact duplicates (same user, item, time and, if read, rating) go first; then
users with fewer than `min_user` records and items with fewer than
`min_item`, again and again until a round drops nothing. The result is the
largest subset where both hold, so it does not depend on the order of
removal.
"""

import dataclasses
import time

import numpy as np


def first_occurrences(*keys):
    """[events] bool, True for the first record of each distinct tuple of `keys`.

    Sorts by the first key alone, which should be the most selective: only the
    records that share it with another are compared on all keys.

    Args:
      *keys: equal-length 1-D arrays, one per field.
    """
    count = len(keys[0])
    keep = np.ones(count, dtype=bool)
    ordered = np.argsort(keys[0], kind="stable")
    same = keys[0][ordered[1:]] == keys[0][ordered[:-1]]
    shared = np.zeros(count, dtype=bool)
    shared[ordered[1:][same]] = shared[ordered[:-1][same]] = True
    rows = np.flatnonzero(shared)  # input order
    if len(rows):
        shared_keys = [key[rows] for key in keys]
        order = np.lexsort(shared_keys[::-1])  # stable: ties in input order
        repeat = np.ones(len(rows) - 1, dtype=bool)
        for key in shared_keys:
            ordered_key = key[order]
            repeat &= ordered_key[1:] == ordered_key[:-1]
        keep[rows[order[1:][repeat]]] = False
    return keep


@dataclasses.dataclass
class Filtered:
    """What deduplication and the k-core leave, per user code.

    Attributes:
      lengths: [users] records kept of each user (0: the user is gone).
      first_rows: [users] the input index of each kept user's first kept record.
      removed: records removed as `duplicates`, by `min_user` and by `min_item`.
      rounds: k-core rounds, the last one removing nothing.
    """

    lengths: np.ndarray
    first_rows: np.ndarray
    removed: dict
    rounds: int


def filter_partitions(partitions, min_user, min_item):
    """Drops duplicates, then k-cores, rewriting the partitions in place.

    k-core: users with fewer than `min_user` records, then items with fewer than
    `min_item`, repeated until a round drops nothing. One pass over the
    partitions a round: a partition's users are whole in it, so the user half is
    done file by file; the item counts are summed over the files and the item
    half is applied as the next round reads them.

    Args:
      partitions: `Partitions` by user, as `read_events` filled them.
      min_user: records a user needs.
      min_item: records an item needs.

    Returns:
      A `Filtered`.
    """
    num_users, num_items = len(partitions.user_names), len(partitions.item_names)
    # A few numbers per user are what the filter keeps in memory: as narrow as they can be.
    lengths = np.zeros(num_users, dtype=np.int32)
    first_rows = np.zeros(num_users, dtype=np.int64)
    removed = dict.fromkeys(("duplicates", "min_user", "min_item"), 0)
    rare_items = None  # found by a round, applied by the next
    rounds = 0
    while True:
        rounds += 1
        start = time.perf_counter()
        item_counts = np.zeros(num_items, dtype=np.int64)
        by_user = 0
        for index in range(partitions.count):
            records = partitions.load(index)
            before = len(records)
            if rounds == 1:
                unique = first_occurrences(
                    # One int64 key for the pair: a sort pass fewer than two int32 keys.
                    records["user"].astype(np.int64) * num_items + records["item"],
                    records["time"], *((records["rating"],) if partitions.has_rating else ()))
                removed["duplicates"] += int(before - unique.sum())
                records = records[unique]
            else:  # the previous round's item half
                records = records[~rare_items[records["item"]]]
            # Users of partition `index` are index, index + count, ...: local numbers.
            local = records["user"] // partitions.count
            counts = np.bincount(local, minlength=len(range(index, num_users,
                                                            partitions.count)))
            enough = counts[local] >= min_user
            by_user += int(len(records) - enough.sum())
            records, local = records[enough], local[enough]
            lengths[index::partitions.count] = np.where(counts >= min_user, counts, 0)
            # A user's first kept record: the smallest input index still there.
            firsts = first_rows[index::partitions.count]
            firsts[:] = np.iinfo(np.int64).max
            np.minimum.at(firsts, local, records["row"])
            item_counts += np.bincount(records["item"], minlength=num_items)
            if len(records) != before:
                partitions.replace(index, records)
        rare_items = item_counts < min_item
        by_item = int(item_counts[rare_items].sum())
        removed["min_user"] += by_user
        removed["min_item"] += by_item
        print(f"k-core round {rounds}: removed {by_user} records of users with fewer than "
              f"{min_user}, {by_item} of items with fewer than {min_item} "
              f"({time.perf_counter() - start:.1f} s)", flush=True)
        if not by_user and not by_item:
            return Filtered(lengths, first_rows, removed, rounds)


def number_users(filtered):
    """Numbers the users kept (from 0) by their first kept record in the input.

    Args:
      filtered: a `Filtered`.

    Returns:
      ([users kept] their codes in number order, [all user codes] the number of
      each or -1, [users kept] their lengths in number order), all int32.
    """
    kept = np.flatnonzero(filtered.lengths).astype(np.int32)
    user_codes = kept[np.argsort(filtered.first_rows[kept], kind="stable")]
    del kept
    user_numbers = np.full(len(filtered.lengths), -1, dtype=np.int32)
    user_numbers[user_codes] = np.arange(len(user_codes), dtype=np.int32)
    return user_codes, user_numbers, filtered.lengths[user_codes]

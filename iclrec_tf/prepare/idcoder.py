"""Raw string ids -> integer codes, 0, 1, ... in order of first appearance, compactly.

A log's distinct ids are what stays in memory while `prepare` streams the
events to disk, so they are kept compact: the ids themselves as pyarrow
strings (their UTF-8 bytes and a 4-byte offset), and for lookup, two
independent 64-bit hashes of each id and its code in sorted numpy arrays (20
bytes). Coding 6 million 9-character ids peaks at 62 bytes an id, where a
Python dict from str to int takes 160 (`benchmarks/prepare_speed.py --id-memory`).

The hashes are simple tabulation hashing (Carter-Wegman style: a random 64-bit
word per position and byte, XORed): for any fixed set of ids, two distinct ids
share both hashes with probability 2^-128, so among a billion ids the chance of
any collision is about 1e-21. A hash match is therefore taken as the same id.

New ids go to a small sorted array that is merged into the main one once it
holds an eighth as many: a lookup is a binary search, and a merge is linear.
"""

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

# The hash tables' random words, fixed: codes are in order of first appearance
# whatever the hashes, but a fixed seed keeps runs identical to the byte.
SEED = 0x1C17EC


class IdCoder:
    """Numbers distinct strings 0, 1, ... in order of first appearance."""

    def __init__(self):
        self._random = np.random.default_rng(SEED)
        self._tables = np.zeros((2, 0, 256), dtype=np.uint64)
        empty = (np.zeros(0, np.uint64), np.zeros(0, np.uint64), np.zeros(0, np.int32))
        self._main = self._recent = empty
        self._names = []
        self.size = 0

    def code(self, column):
        """[len(column)] int32 codes of a pyarrow string array without nulls; adds new ids."""
        encoded = pc.dictionary_encode(column)
        distinct = encoded.dictionary
        first, second = self._hashes(distinct)
        codes = self._find(first, second, *self._main)
        unknown = codes < 0
        codes[unknown] = self._find(first[unknown], second[unknown], *self._recent)
        new = np.flatnonzero(codes < 0)
        if len(new):
            # `dictionary_encode` lists values in order of first appearance.
            codes[new] = np.arange(self.size, self.size + len(new))
            self.size += len(new)
            self._names.append(distinct.take(pa.array(new)))
            self._add(first[new], second[new], codes[new])
        return codes.astype(np.int32)[encoded.indices.to_numpy(zero_copy_only=False)]

    def names(self):
        """The ids in code order, as a pyarrow chunked string array."""
        return pa.chunked_array(self._names, pa.string())

    def _hashes(self, strings):
        """Two 64-bit tabulation hashes of each string (none empty) of a pyarrow array."""
        if not len(strings):
            return np.zeros(0, np.uint64), np.zeros(0, np.uint64)
        strings = pc.cast(strings, pa.large_string())
        _, offset_buffer, data_buffer = strings.buffers()
        offsets = np.frombuffer(offset_buffer, np.int64)[
            strings.offset:strings.offset + len(strings) + 1]
        data = np.frombuffer(data_buffer, np.uint8)[offsets[0]:offsets[-1]]
        starts = (offsets[:-1] - offsets[0]).astype(np.int32)
        lengths = np.diff(offsets).astype(np.int32)
        self._grow(int(lengths.max()))
        # Row `position * 256 + byte` of a flattened table: int32 keeps it at
        # 13 bytes of memory per byte hashed.
        flat = np.arange(len(data), dtype=np.int32) - np.repeat(starts, lengths)
        flat *= 256
        flat += data
        return tuple(np.bitwise_xor.reduceat(table.reshape(-1)[flat], starts)
                     for table in self._tables)

    def _grow(self, length):
        """Makes the tables cover positions up to `length`: drawn in order, so always the same."""
        have = self._tables.shape[1]
        if length > have:
            more = self._random.integers(0, 2**64, size=(length - have, 2, 256),
                                         dtype=np.uint64, endpoint=False)
            self._tables = np.concatenate([self._tables, more.transpose(1, 0, 2)], axis=1)

    @staticmethod
    def _find(first, second, keys, seconds, codes):
        """Codes of the ids hashed (first, second) in a sorted level; -1 where absent."""
        found = np.full(len(first), -1, dtype=np.int64)
        if not len(keys):
            return found
        # Sorted queries: each binary search starts where the last one ended.
        order = np.argsort(first)
        queries = first[order]
        slots = np.minimum(np.searchsorted(keys, queries), len(keys) - 1)
        same_first = keys[slots] == queries
        match = same_first & (seconds[slots] == second[order])
        found[order[match]] = codes[slots[match]]
        # Ids sharing a first hash sit side by side (about once in 4 billion pairs).
        for query in np.flatnonzero(same_first & ~match):
            slot = slots[query] + 1
            while slot < len(keys) and keys[slot] == queries[query]:
                if seconds[slot] == second[order[query]]:
                    found[order[query]] = codes[slot]
                slot += 1
        return found

    def _add(self, first, second, codes):
        order = np.argsort(first)
        self._merge_into("_recent", (first[order], second[order], codes[order].astype(np.int32)))
        if len(self._recent[0]) * 8 > len(self._main[0]):
            recent, self._recent = self._recent, tuple(array[:0] for array in self._recent)
            self._merge_into("_main", recent)

    def _merge_into(self, name, level):
        """Merges a level (first hashes, second hashes, codes; sorted) into `self.<name>`.

        Each old array is dropped as soon as its merged copy exists, so the peak
        is about one level and a half, not two.
        """
        old = list(getattr(self, name))
        setattr(self, name, None)
        slots = np.searchsorted(old[0], level[0], side="right") + np.arange(len(level[0]))
        size = len(old[0]) + len(level[0])
        from_old = np.ones(size, dtype=bool)
        from_old[slots] = False
        merged = []
        for index, theirs in enumerate(level):
            both = np.empty(size, dtype=theirs.dtype)
            both[slots] = theirs
            both[from_old] = old[index]
            old[index] = None
            merged.append(both)
        setattr(self, name, tuple(merged))

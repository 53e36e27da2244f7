"""Records that appear twice: a raw file joined to itself (`cat F F > F`) or copied under a
second name. AIST's files never repeat a record byte for byte (each record carries its own
serial and sheet numbers), so a repeat is such a copy, and extracting it would put copies of one
record in train and test at once.

Every record gets a 64-bit hash of its bytes as it is read (`record_hashes`, one vectorized
product per chunk); only records whose hashes meet are read again and compared byte for byte.
"""

from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

#: Seeds the hash's per-word multipliers: the same record always gets the same hash.
HASH_SEED = 0x45544C


def record_hashes(raw: np.ndarray) -> np.ndarray:
    """uint64 (n,): a hash of each row of `raw`, (n, record_size) uint8 records of at least 8
    bytes. Identical records get the same hash; different ones the same only by chance."""
    raw = np.ascontiguousarray(raw)
    n, size = raw.shape
    if n == 0:
        return np.zeros(0, np.uint64)
    # the record's whole 8-byte words (unaligned views, no copy) and its last 8 bytes, which
    # cover the bytes after the last whole word
    words = np.ndarray((n, size // 8), np.uint64, raw, 0, (size, 8))
    last = np.ndarray((n,), np.uint64, raw, size - 8, (size,))
    keys = _multipliers(size // 8 + 1)
    return np.einsum("ij,j->i", words, keys[:-1]) + last * keys[-1]  # wraps modulo 2**64


@cache
def _multipliers(count: int) -> np.ndarray:
    """Odd random 64-bit multipliers, one per word, fixed by HASH_SEED."""
    rng = np.random.default_rng(HASH_SEED)
    return rng.integers(0, 2**64 - 1, count, np.uint64, endpoint=True) | np.uint64(1)


@dataclass(frozen=True)
class Repeat:
    """Record `record` of `path` has the bytes of record `first_record` of `first_path`."""

    path: Path
    record: int
    first_path: Path
    first_record: int

    def __str__(self) -> str:
        if self.first_path == self.path:
            first = "its"
        else:
            first = (self.first_path.name if self.first_path.parent == self.path.parent
                     else str(self.first_path))
        return (f"{self.path}: record {self.record} repeats {first} record "
                f"{self.first_record} byte for byte (a file copied or joined twice?)")


@dataclass(frozen=True)
class HashedFile:
    """One raw file's record hashes, with the record numbers they belong to."""

    path: Path
    record_size: int
    hashes: np.ndarray  # uint64 (n,)
    records: np.ndarray  # int (n,): record numbers in the file


def first_repeat(files: list[HashedFile]) -> Repeat | None:
    """The first record, in the order of `files` and their records, whose bytes repeat an
    earlier record's, in the same file or an earlier one; None when no record repeats."""
    if not files:
        return None
    keys = np.concatenate([f.hashes for f in files])
    owner = np.repeat(np.arange(len(files)), [len(f.hashes) for f in files])
    record = np.concatenate([f.records for f in files])
    order = np.argsort(keys, kind="stable")  # equal hashes stay in file and record order
    meet = np.flatnonzero(keys[order[1:]] == keys[order[:-1]])
    earlier, later = order[meet], order[meet + 1]
    for k in np.argsort(later, kind="stable"):
        a, b = (files[owner[i]] for i in (earlier[k], later[k]))
        ra, rb = int(record[earlier[k]]), int(record[later[k]])
        first, again = _record_bytes(a, ra), _record_bytes(b, rb)
        if first is not None and first == again:  # else the hashes met by chance
            return Repeat(b.path, rb, a.path, ra)
    return None


def _record_bytes(file: HashedFile, record: int) -> bytes | None:
    """The record's bytes; None where the file no longer holds it (cut since it was read)."""
    with open(file.path, "rb") as f:
        f.seek(record * file.record_size)
        data = f.read(file.record_size)
    return data if len(data) == file.record_size else None

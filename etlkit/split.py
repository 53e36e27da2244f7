"""Train / val / test assignment: stratified by class, or writer-disjoint. Seeded, vectorized."""

import numpy as np

from .errors import EtlError

TRAIN, VAL, TEST = 0, 1, 2
NAMES = ("train", "val", "test")
METHODS = ("random", "writer")  # the ETL split methods: random_split, writer_split
#: The largest --seed, of extraction's splits as of training: JAX makes its PRNG keys from a
#: seed that fits a signed 64-bit integer, and a manifest's seed past it is not etlkit's.
SEED_MAX = 2**63 - 1


def check_fractions(test_frac: float, val_frac: float) -> None:
    """Both shares must be numbers in [0, 1)."""
    if not all(isinstance(f, int | float) and not isinstance(f, bool) and 0 <= f < 1
               for f in (test_frac, val_frac)):
        raise EtlError("--test-frac and --val-frac must be in [0, 1)")


def random_split(labels: np.ndarray, test_frac: float, val_frac: float, seed: int) -> np.ndarray:
    """Each class split on its own: round(test_frac·n) to test, then round(val_frac·rest) to val."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(labels))
    order = order[np.argsort(labels[order], kind="stable")]  # shuffled within each class
    sorted_labels = labels[order]
    starts = np.searchsorted(sorted_labels, sorted_labels, side="left")
    counts = np.bincount(labels)[sorted_labels]
    rank = np.arange(len(labels)) - starts
    n_test = np.rint(counts * test_frac)
    n_val = np.rint((counts - n_test) * val_frac)
    part = np.where(rank < n_test, TEST, np.where(rank < n_test + n_val, VAL, TRAIN))
    out = np.empty(len(labels), np.int8)
    out[order] = part
    return out


def writer_split(writers: np.ndarray, test_frac: float, val_frac: float, seed: int) -> np.ndarray:
    """Whole writers to one split each: a seeded shuffle of the writer ids, cut by fractions."""
    ids, inverse = np.unique(writers, return_inverse=True)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(ids))
    n_test = int(round(len(ids) * test_frac))
    n_val = int(round((len(ids) - n_test) * val_frac))
    part_of_writer = np.full(len(ids), TRAIN, np.int8)
    part_of_writer[order[:n_test]] = TEST
    part_of_writer[order[n_test : n_test + n_val]] = VAL
    return part_of_writer[inverse]


def stratified_holdout(labels: np.ndarray, n_holdout: int, seed: int) -> np.ndarray:
    """A mask of exactly `n_holdout` records, each class held out in proportion to its size.

    Class c gets floor(n_c · n_holdout / N) records, and the records left over go one each to the
    classes with the largest remainders (ties to the lower class index); which of a class's
    records are held out is a seeded shuffle. Unlike `random_split`'s per-class rounding, the
    total is exact (1,797 sklearn digits → 360, as `train_test_split(test_size=0.2)` gives).
    """
    n = len(labels)
    if not 0 <= n_holdout <= n:
        raise ValueError(f"cannot hold out {n_holdout} of {n} records")
    counts = np.bincount(labels) if n else np.zeros(0, np.int64)
    exact = counts * n_holdout
    quota, remainder = exact // max(n, 1), exact % max(n, 1)
    extra = np.lexsort((np.arange(len(counts)), -remainder))[: n_holdout - quota.sum()]
    quota[extra] += 1
    rng = np.random.default_rng(seed)
    order = rng.permutation(n)
    order = order[np.argsort(labels[order], kind="stable")]  # shuffled within each class
    sorted_labels = labels[order]
    rank = np.arange(n) - np.searchsorted(sorted_labels, sorted_labels, side="left")
    mask = np.zeros(n, bool)
    mask[order] = rank < quota[sorted_labels]
    return mask

"""Train / val / test assignment: stratified by class, or writer-disjoint. Seeded, vectorized."""

import numpy as np

TRAIN, VAL, TEST = 0, 1, 2
NAMES = ("train", "val", "test")


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

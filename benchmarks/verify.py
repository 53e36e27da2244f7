"""`train`'s dataset check: how fast `verify.check_dataset` hashes shards (goal: a few seconds
for ETL-8G's 0.6 GB).

Writes a dataset of random 64×64 images (incompressible, so its size on disk is exact) in
16,384-image shards as `extract` would, with a real manifest, then times `check_dataset` on a
thread pool against one thread. The shards were just written, so they are in the page cache:
this measures hashing, not the disk.

    python benchmarks/verify.py --gb 0.6
"""

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from etlkit import verify
from etlkit.shards import DatasetInfo, DatasetWriter


def build(out: Path, gb: float) -> int:
    """A dataset of about `gb` GB, written by `DatasetWriter` as `extract` writes one; returns
    its bytes on disk."""
    n = int(gb * 1e9 / 4096)
    rng = np.random.default_rng(0)
    totals = [n * 64 // 100, n * 16 // 100, n - n * 64 // 100 - n * 16 // 100]
    info = DatasetInfo("bench", [(f"c{i}", i) for i in range(100)], 64, "random",
                       {"size": 64, "ink": 255, "resize": "none", "binarize": "none"})
    writer = DatasetWriter(out, info, totals, 16384, "none")
    parts = np.repeat(np.arange(3), totals)
    for lo in range(0, n, 16384):
        hi = min(lo + 16384, n)
        arrays = {"images": rng.integers(0, 256, (hi - lo, 64, 64), np.uint8),
                  "labels": rng.integers(0, 100, hi - lo).astype(np.int32),
                  "sjis": np.zeros(hi - lo, np.int32), "codes": np.zeros(hi - lo, np.uint16),
                  "sheets": np.zeros(hi - lo, np.int32),
                  "source": np.zeros((hi - lo, 2), np.int32)}
        writer.add(arrays, parts[lo:hi])
    options = {"split_method": "random", "test_frac": 0.2, "val_frac": 0.2, "seed": 0}
    writer.finish("benchmarks/verify.py", options, [], [])
    return sum(p.stat().st_size for p in out.rglob("*.h5"))


def timed(root: Path, workers: int) -> float:
    verify.HASH_WORKERS = workers
    best = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        verify.check_dataset(root)
        best = min(best, time.perf_counter() - t)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gb", type=float, default=0.6)
    args = parser.parse_args()
    pool = verify.HASH_WORKERS
    with tempfile.TemporaryDirectory() as tmp:
        size = build(Path(tmp), args.gb)
        for workers in sorted({1, pool}):
            s = timed(Path(tmp), workers)
            print(f"{size / 1e9:.2f} GB, {workers} thread(s): {s:.2f} s, {size / 1e9 / s:.2f} GB/s"
                  f" -> {0.6 / (size / 1e9 / s):.1f} s for 0.6 GB")


if __name__ == "__main__":
    main()

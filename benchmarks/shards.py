"""Shard compression, chosen by measurement: size on disk, extraction time and block-read speed.

Extracts ETL-8G hiragana + kanji with each HDF5 filter (none, lzf, gzip), then reads the train
split back through `open_shards(...).blocks(seed=...)`, the two-level shuffled, chunk-aligned
reads a trainer uses. Binarized 64×64 images are mostly flat, so a fast LZ codec shrinks them a
lot; the question is what it costs to read.

    python benchmarks/shards.py --data DIR      # DIR: raw ETL8G_* files (see extract.py)
"""

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from etlkit import open_shards
from etlkit.extract import Options, extract


def measure(data: Path, work: Path, compression: str) -> dict:
    out = work / compression
    t = time.perf_counter()
    extract([data], out, Options(scripts=("hiragana", "kanji"), compression=compression))
    extract_s = time.perf_counter() - t
    size = sum(p.stat().st_size for p in out.rglob("*.h5"))
    train = open_shards(out, "train")
    best = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        n = sum(len(b["labels"]) for b in train.blocks(block=256, seed=0))
        best = min(best, time.perf_counter() - t)
    shutil.rmtree(out)
    return {"compression": compression, "extract_s": extract_s, "gb": size / 1e9,
            "images": n, "read_img_s": n / best}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp())
    try:
        rows = [measure(args.data, work, c) for c in ("none", "lzf", "gzip")]
    finally:
        shutil.rmtree(work)
    print("| compression | shards GB | extract s | shuffled block reads, images/s |")
    print("|---|--:|--:|--:|")
    for r in rows:
        print(f"| {r['compression']} | {r['gb']:.3f} | {r['extract_s']:.1f} | "
              f"{r['read_img_s']:,.0f} |")


if __name__ == "__main__":
    main()

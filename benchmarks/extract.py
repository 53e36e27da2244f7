"""Extracting all of ETL-8G (hiragana + kanji) against the I/O floor and a per-record pipeline.

The per-record pipeline is what public extractors do: struct + PIL decode, PIL resize,
scikit-image Otsu, one h5py write per sample. The floor reads the raw bytes and writes the output
bytes, nothing else. Each method runs in its own process so its peak memory (ru_maxrss) is its
own. Ratios are printed; goals (2 cores): etlkit ≤ 10 s, ≥ 10× the per-record pipeline, peak
memory ≤ 1.5 GB.

    python benchmarks/extract.py --data DIR      # DIR: synthetic ETL8G_01..33, made if absent
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

FLOOR = r"""
import numpy as np, sys, time
from pathlib import Path
t = time.perf_counter()
n = 0
for p in sorted(Path(sys.argv[1]).glob("ETL8G_*")):
    n += len(np.fromfile(p, np.uint8)) // 8199
np.zeros((n, 64, 64), np.uint8).tofile(Path(sys.argv[2]) / "floor.bin")
print(time.perf_counter() - t, n)
"""

ETLKIT = r"""
import sys, time
from pathlib import Path
from etlkit.extract import Options, extract
t = time.perf_counter()
doc = extract([Path(sys.argv[1])], Path(sys.argv[2]) / "etlkit",
              Options(scripts=("hiragana", "kanji"), compression=sys.argv[3]))
print(time.perf_counter() - t, sum(doc["splits"].values()))
"""

PER_RECORD = r"""
import struct, sys, time
from pathlib import Path
import h5py, numpy as np
from PIL import Image
from skimage.filters import threshold_otsu
limit = int(sys.argv[3])
t = time.perf_counter()
with h5py.File(Path(sys.argv[2]) / "per_record.h5", "w") as out:
    images = out.create_dataset("images", (0, 64, 64), np.uint8, maxshape=(None, 64, 64),
                                chunks=(256, 64, 64))
    labels = out.create_dataset("labels", (0,), np.int32, maxshape=(None,))
    n = 0
    for path in sorted(Path(sys.argv[1]).glob("ETL8G_*")):
        with open(path, "rb") as f:
            while n < limit and (record := f.read(8199)):
                r = struct.unpack(">2H8sI4B4H2B30x8128s11x", record)
                img = Image.frombytes("F", (128, 127), r[14], "bit", 4)
                img = Image.eval(img, lambda x: x * 17).convert("L").resize((64, 64), Image.BOX)
                a = np.asarray(img)
                binary = ((a > threshold_otsu(a)) * 255).astype(np.uint8)
                images.resize(n + 1, axis=0); labels.resize(n + 1, axis=0)
                images[n] = binary; labels[n] = r[1]
                n += 1
print(time.perf_counter() - t, n)
"""

PEAK = "\nimport resource\nprint(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)\n"


def run(script: str, *args: str) -> tuple[float, int, int]:
    """Run a method in a fresh process: (seconds, records, peak RSS bytes)."""
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(script + PEAK)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    out = subprocess.run([sys.executable, f.name, *args], capture_output=True, text=True,
                         check=True, env=env).stdout.split()
    return float(out[0]), int(out[1]), int(out[2])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--baseline-records", type=int, default=153916,
                        help="records the per-record pipeline processes (time is scaled)")
    parser.add_argument("--compression", default="lzf")
    args = parser.parse_args()
    if len(list(args.data.glob("ETL8G_*"))) < 33:
        subprocess.run([sys.executable, "-m", "etlkit", "synth", "--dataset", "ETL8G",
                        "--writers", "160", "--out", str(args.data)], check=True)
    work = Path(tempfile.mkdtemp())
    try:
        for p in sorted(args.data.glob("ETL8G_*")):  # page cache, as for every method
            p.read_bytes()
        floor = run(FLOOR, str(args.data), str(work))
        ours = run(ETLKIT, str(args.data), str(work), args.compression)
        base = run(PER_RECORD, str(args.data), str(work), str(args.baseline_records))
    finally:
        shutil.rmtree(work)
    base_full = base[0] * ours[1] / base[1]
    rows = {
        "records": ours[1],
        "floor_s": round(floor[0], 2), "etlkit_s": round(ours[0], 2),
        "per_record_s": round(base_full, 1), "per_record_measured_on": base[1],
        "etlkit_over_floor": round(ours[0] / floor[0], 1),
        "speedup_vs_per_record": round(base_full / ours[0], 1),
        "etlkit_peak_rss_gb": round(ours[2] / 1e9, 2),
        "per_record_peak_rss_gb": round(base[2] / 1e9, 2),
    }
    print(json.dumps(rows, indent=1))
    goals = [("etlkit <= 10 s", ours[0] <= 10), ("10x per-record", base_full / ours[0] >= 10),
             ("peak <= 1.5 GB", ours[2] <= 1.5e9)]
    for name, ok in goals:
        print(f"{'PASS' if ok else 'FAIL'}  {name}")


if __name__ == "__main__":
    main()

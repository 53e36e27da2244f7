"""Decode speed: `etlkit.read` against the official AIST sample's per-record struct + PIL loop.

Why: etlkit decodes a whole raw file with a few vectorized numpy operations, where AIST's sample
code (and the public readers copied from it) runs `struct.unpack` and `Image.frombytes` once per
record. This measures both on the same synthetic files, one per ETL dataset, with ETL-1 and
ETL-8G files of real size (11,288 and 4,780 records). Both decoders must return the same images
(raw levels, uint8) and label codes, so the comparison is of equal work. The floor is the time
numpy needs just to read the file and copy its bytes once.

Goals (on 2 cores): etlkit at least 8x the sample on ETL-1, 5x on ETL-8G (whose sample spends
most of its time in PIL's C unpacker) and 5x on every other dataset. A missed goal is printed as
FAIL; the exit status stays 0, since the numbers are for the record.

    PYTHONPATH=. python benchmarks/decode.py [--data DIR] [--repeat N] [--quick]

Files are built once into DIR (reused while their size is right; delete DIR to rebuild): with
`etlkit.synth` where it supports the dataset, else from seeded random fields and images.
"""

import argparse
import operator
import os
import platform
import struct
import sys
import tempfile
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import PIL
from PIL import Image

import etlkit
from etlkit import manifest, synth
from etlkit.formats import FORMATS, Format

SEED = 0


@dataclass(frozen=True)
class SampleCodec:
    """How the official sample reads one record layout (docs/etl-formats.md §3-§4)."""

    struct: str
    code: Callable[[tuple], int]  # the label code from the unpacked record
    image: int  # index of the image bytes in the unpacked record
    mode: str  # PIL mode and size, and the decoder Image.frombytes is given
    size: tuple[int, int]
    decoder: tuple


def _co59(r: tuple) -> int:
    b0, b1 = r[0]
    return (b0 >> 2) << 6 | ((b0 & 3) << 4 | b1 >> 4)


_jis = operator.itemgetter(1)  # B and G: the JIS X 0208 word follows the sheet number
_M = SampleCodec(">H2sH6BI4H4B4x2016s4x", operator.itemgetter(3), 18, "F", (64, 63), ("bit", 4))
_C = SampleCodec(">9xB206x2736s", operator.itemgetter(0), 1, "F", (72, 76), ("bit", 4))
SAMPLE_CODECS = {
    "ETL1": _M, "ETL6": _M, "ETL7": _M, "ETL3": _C, "ETL4": _C, "ETL5": _C,
    "ETL2": SampleCodec(">21x2s22x2700s", _co59, 1, "F", (60, 60), ("bit", 6)),
    "ETL8B2": SampleCodec(">2H4s504s", _jis, 3, "1", (64, 63), ("raw",)),
    "ETL9B": SampleCodec(">2H4s504s64x", _jis, 3, "1", (64, 63), ("raw",)),
    "ETL8G": SampleCodec(">2H8sI4B4H2B30x8128s11x", _jis, 14, "F", (128, 127), ("bit", 4)),
    "ETL9G": SampleCodec(">2H8sI4B4H2B34x8128s7x", _jis, 14, "F", (128, 127), ("bit", 4)),
}

#: Label codes for the datasets etlkit.synth cannot write (ETL-2 codes are any CO-59 pair).
_JIS0201_ALNUM = [*range(0x30, 0x3A), *range(0x41, 0x5B)]
RANDOM_CODES = {"ETL3": _JIS0201_ALNUM, "ETL6": _JIS0201_ALNUM + [*range(0xB1, 0xDE)]}
#: A stand-in for AIST's euc_co59.dat, so that ETL-2 records get labels as they would for real.
CO59_TABLE = {code: chr(0x4E00 + code) for code in range(1 << 12)}


@dataclass(frozen=True)
class Case:
    """One benchmark file: its real name, records decoded (full and --quick) and the goal."""

    file: str
    records: int
    quick: int
    goal: float

    @property
    def fmt(self) -> Format:
        return FORMATS[manifest.lookup(self.file).dataset]


CASES = [
    Case("ETL1C_07", 11288, 800, 8.0),
    Case("ETL2_1", 9056, 500, 5.0),
    Case("ETL3C_1", 4800, 500, 5.0),
    Case("ETL4C", 6120, 510, 5.0),
    Case("ETL5C", 10608, 510, 5.0),
    Case("ETL6C_01", 13830, 500, 5.0),
    Case("ETL7LC_1", 9600, 960, 5.0),
    Case("ETL8B2C1", 6400, 320, 5.0),
    Case("ETL8G_01", 4780, 956, 5.0),
    Case("ETL9B_1", 3036, 3036, 5.0),  # writer-major: one writer is the least synth writes
    Case("ETL9G_01", 3036, 3036, 5.0),
]


def build(case: Case, records: int, out: Path) -> Path:
    """The case's file in `out`, written unless a file of the right size is already there."""
    fmt = case.fmt
    path = out / case.file
    size = (records + fmt.dummy_records) * fmt.record_size
    if path.exists() and path.stat().st_size == size:
        return path
    if fmt.name in synth.DATASETS:
        entry = manifest.lookup(case.file)
        per_writer = len(entry.classes) * entry.repeats
        if records % per_writer:
            raise ValueError(f"{case.file}: {records} records is not whole writers")
        synth.synth(fmt.name, out, writers=records // per_writer, seed=SEED, files=[case.file])
    else:
        rng = np.random.default_rng([SEED, zlib.crc32(case.file.encode())])
        tmp = path.with_name(f".{case.file}.tmp")
        random_records(fmt, records, rng).tofile(tmp)
        os.replace(tmp, path)
    if path.stat().st_size != size:
        raise RuntimeError(f"{path}: built {path.stat().st_size} bytes, expected {size}")
    return path


def random_records(fmt: Format, n: int, rng: np.random.Generator) -> np.ndarray:
    """n raw records of random header fields, valid label codes and random pixel levels."""
    layout = fmt.layout
    fields = np.zeros(n, layout.field_dtype)
    for name in fields.dtype.names:
        width = fields.dtype[name].itemsize
        if fields.dtype[name].kind == "S":
            letters = rng.integers(ord("A"), ord("Z") + 1, (n, width), np.uint8)
            fields[name] = letters.view(f"S{width}")[:, 0]
        else:  # C/K integers are 36-bit
            fields[name] = rng.integers(0, 1 << min(8 * width, 36), n, np.uint64)
    if fmt.family == "K":
        fields["co59_1"], fields["co59_2"] = rng.integers(0, 64, (2, n))
    else:
        fields["jis"] = rng.choice(RANDOM_CODES[fmt.name], n)
    images = rng.integers(0, 1 << layout.bits, (n, *layout.shape), np.uint8)
    return layout.encode(fields, images)


def sample_decode(path: Path, fmt: Format) -> tuple[list[int], list[np.ndarray]]:
    """The official sample's loop: read a record, struct.unpack it, decode its image with PIL.

    Kept as the sample has it but not handicapped: the struct is compiled once, and the image
    becomes raw levels by the cheapest route (np.asarray + astype, not convert('L')).
    """
    codec = SAMPLE_CODECS[fmt.name]
    unpack = struct.Struct(codec.struct).unpack
    size = fmt.record_size
    codes, images = [], []
    with open(path, "rb") as f:
        f.seek(fmt.dummy_records * size)  # the B family's dummy record, as etlkit skips it
        while s := f.read(size):
            r = unpack(s)
            img = Image.frombytes(codec.mode, codec.size, r[codec.image], *codec.decoder)
            codes.append(codec.code(r))
            images.append(np.asarray(img).astype(np.uint8))
    return codes, images


def etlkit_decode(path: Path, fmt: Format) -> etlkit.RecordBatch:
    return etlkit.read(path, co59_table=CO59_TABLE if fmt.family == "K" else None)


def floor_copy(path: Path) -> np.ndarray:
    """The floor: read the file's bytes into numpy and copy them once."""
    return np.fromfile(path, np.uint8).copy()


def check_agree(path: Path, fmt: Format) -> int:
    """Both decoders return the same images and codes; the number of records."""
    codes, images = sample_decode(path, fmt)
    batch = etlkit_decode(path, fmt)
    if not (np.array_equal(np.stack(images), batch.images)
            and np.array_equal(np.array(codes), batch.codes)):
        raise AssertionError(f"{path.name}: the sample and etlkit decode differently")
    return len(batch)


def best_of(methods: dict[str, Callable[[], object]], repeat: int) -> dict[str, float]:
    """The best wall time of `repeat` calls of each method, in seconds.

    The methods take turns within each round, so that load from elsewhere on the machine
    slows them alike rather than one of them.
    """
    best = dict.fromkeys(methods, float("inf"))
    for _ in range(repeat):
        for name, fn in methods.items():
            start = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def measure(case: Case, path: Path, repeat: int) -> dict:
    fmt = case.fmt
    n = check_agree(path, fmt)  # also puts the file in the page cache
    seconds = best_of({"floor": lambda: floor_copy(path),
                       "sample": lambda: sample_decode(path, fmt),
                       "etlkit": lambda: etlkit_decode(path, fmt)}, repeat)
    rate = {name: n / t for name, t in seconds.items()}
    return {"dataset": fmt.name, "file": case.file, "records": n, **rate,
            "ratio": rate["etlkit"] / rate["sample"], "goal": case.goal}


def machine() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.exists() else []
    cpu = next((line.split(":", 1)[1].strip() for line in lines
                if line.startswith("model name")), platform.processor())
    return (f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}; Python "
            f"{platform.python_version()}, numpy {np.__version__}, Pillow {PIL.__version__}")


def table(rows: list[dict]) -> str:
    lines = ["| dataset | file | records | floor rec/s | sample rec/s | etlkit rec/s | "
             "etlkit/sample | goal | result |", "|---|---|--:|--:|--:|--:|--:|--:|---|"]
    for r in rows:
        result = "PASS" if r["ratio"] >= r["goal"] else "**FAIL**"
        lines.append(f"| {r['dataset']} | {r['file']} | {r['records']:,} | {r['floor']:,.0f} | "
                     f"{r['sample']:,.0f} | {r['etlkit']:,.0f} | {r['ratio']:.1f}x | "
                     f"{r['goal']:g}x | {result} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path(tempfile.gettempdir()) / "etlkit-bench",
                        help="where the files are built and reused (default: %(default)s)")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per method; the best "
                        "counts (default: %(default)s)")
    parser.add_argument("--quick", action="store_true", help="small files, for a smoke run")
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    out = args.data / ("quick" if args.quick else "full")
    out.mkdir(parents=True, exist_ok=True)
    print(f"machine: {machine()}\ndata: {out}, best of {args.repeat}\n", flush=True)
    rows = []
    for case in CASES:
        path = build(case, case.quick if args.quick else case.records, out)
        rows.append(measure(case, path, args.repeat))
        print(f"  {case.file}: {rows[-1]['ratio']:.1f}x", file=sys.stderr, flush=True)
    print(table(rows))
    failed = [r["file"] for r in rows if r["ratio"] < r["goal"]]
    print(f"\nFAIL: goal missed on {', '.join(failed)}" if failed else "\nall goals met")
    return 0


if __name__ == "__main__":
    sys.exit(main())

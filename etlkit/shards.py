"""HDF5 shards: one split per folder, every shard self-describing, written atomically.

A dataset folder holds `{train,val,test}/shard-NNNNN.h5` and `manifest.json`. Each shard has
`images` uint8 (N, S, S) chunked along N (S = the manifest's `image_size`: 64 for ETL, 28 for
digits and letters), `labels` int32, `sjis` int32, `codes` uint16, `sheets` int32 and `source`
int32 (N, 2) = (index into the manifest's source files, record number), plus the class table,
task and preprocessing as JSON attributes. The same arrays give the same bytes (h5py writes no
timestamps).
"""

import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from . import split as split_module
from .errors import EtlError

CHUNK = 256  # images per HDF5 chunk: 1 MiB, the unit of block reads
FIELDS = ("images", "labels", "sjis", "codes", "sheets", "source")


def write_shard(path: Path, arrays: dict[str, np.ndarray], attrs: dict,
                compression: str | None) -> str:
    """Write one shard under a temporary name, rename it into place; return its SHA-256."""
    tmp = path.with_name(f".{path.name}.tmp")
    n = len(arrays["labels"])
    with h5py.File(tmp, "w", libver=("v110", "v110")) as f:
        for name in FIELDS:
            data = arrays[name]
            chunks = (min(CHUNK, n), *data.shape[1:]) if n else None
            f.create_dataset(name, data=data, chunks=chunks,
                             compression=compression if name == "images" and n else None)
        for key, value in attrs.items():
            f.attrs[key] = json.dumps(value, ensure_ascii=False, sort_keys=True)
    digest = sha256(tmp)
    os.replace(tmp, path)
    return digest


class SplitWriter:
    """Copies each chunk's records straight into per-split shard buffers (one copy, no
    concatenation) and writes a shard each time a buffer is full.

    `totals` are the records each split (train, val, test) will get; `image_shape` the shape of
    one image. `counts` and `shards` (the manifest's shard list) grow as shards are written.
    """

    def __init__(self, out: Path, attrs: dict, totals: list[int], shard_size: int,
                 compression: str, image_shape: tuple[int, int] = (64, 64)):
        self.out, self.attrs = out, attrs
        self.compression = None if compression == "none" else compression
        self.buffers = [_allocate(min(shard_size, total), image_shape) for total in totals]
        self.pending = [0, 0, 0]
        self.counts = [0, 0, 0]
        self.shards: list[dict] = []
        self.numbers = [0, 0, 0]

    def add(self, arrays: dict, parts: np.ndarray) -> None:
        """Append a chunk's records to their splits' buffers; write every full shard."""
        for part in range(3):
            rows = np.flatnonzero(parts == part)
            while len(rows):
                buffer, at = self.buffers[part], self.pending[part]
                take, rows = rows[: len(buffer["labels"]) - at], rows[len(buffer["labels"]) - at :]
                for name, values in arrays.items():
                    np.take(values, take, axis=0, out=buffer[name][at : at + len(take)])
                self.pending[part] += len(take)
                if self.pending[part] == len(buffer["labels"]):
                    self._flush(part)

    def flush_all(self) -> None:
        for part in range(3):
            if self.pending[part] or not self.numbers[part]:
                self._flush(part)

    def _flush(self, part: int) -> None:
        n, name = self.pending[part], split_module.NAMES[part]
        (self.out / name).mkdir(exist_ok=True)
        path = self.out / name / f"shard-{self.numbers[part]:05d}.h5"
        head = {k: v[:n] for k, v in self.buffers[part].items()}
        digest = write_shard(path, head, {**self.attrs, "split": name}, self.compression)
        self.shards.append({"path": f"{name}/{path.name}", "split": name, "count": n,
                            "sha256": digest})
        self.counts[part] += n
        self.numbers[part] += 1
        self.pending[part] = 0


def _allocate(n: int, image_shape: tuple[int, int]) -> dict:
    """One shard's arrays (a split with no records still gets one empty shard)."""
    return {"images": np.empty((n, *image_shape), np.uint8), "labels": np.empty(n, np.int32),
            "sjis": np.empty(n, np.int32), "codes": np.empty(n, np.uint16),
            "sheets": np.empty(n, np.int32), "source": np.empty((n, 2), np.int32)}


def clear_previous(out: Path) -> None:
    """Remove an earlier run's manifest, shards and temporary files (ours only, by name)."""
    names = split_module.NAMES
    for path in [out / "manifest.json", *out.glob(".*.tmp"),
                 *(p for name in names for p in (out / name).glob("shard-*.h5")),
                 *(p for name in names for p in (out / name).glob(".shard-*.tmp"))]:
        path.unlink(missing_ok=True)


def write_manifest(out: Path, doc: dict) -> None:
    """Write out/manifest.json under a temporary name and rename it: the dataset's last step.
    It is written with its `checksum` (see `manifest_digest`)."""
    tmp = out / ".manifest.json.tmp"
    doc = {**doc, "checksum": manifest_digest(doc)}
    tmp.write_text(json.dumps(doc, ensure_ascii=False, indent=1), "utf-8")
    os.replace(tmp, out / "manifest.json")


def manifest_digest(doc: dict) -> str:
    """SHA-256 of the manifest's canonical JSON (sorted keys, no spaces) without its own
    `checksum` key: `etlkit verify` recomputes it, so a manifest edited by hand is caught."""
    body = {k: v for k, v in doc.items() if k != "checksum"}
    text = json.dumps(body, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


@dataclass
class ShardSet:
    """The shards of one split, read with plain h5py in chunk-aligned blocks."""

    root: Path
    split: str
    manifest: dict

    @property
    def paths(self) -> list[Path]:
        return [self.root / s["path"] for s in self.manifest["shards"] if s["split"] == self.split]

    @property
    def classes(self) -> list[tuple[str, int]]:
        """[(class, Shift-JIS code)]: label i is classes[i]."""
        return [tuple(c) for c in self.manifest["classes"]]

    def __len__(self) -> int:
        return self.manifest["splits"][self.split]

    def blocks(self, block: int = CHUNK, seed: int | None = None,
               fields: tuple[str, ...] = ("images", "labels")) -> Iterator[dict[str, np.ndarray]]:
        """Blocks of up to `block` records, aligned to the HDF5 chunks.

        With a seed: shards and blocks come in a random order and each block is permuted (the
        two-level shuffle a trainer wants); without one, file order.
        """
        rng = np.random.default_rng(seed) if seed is not None else None
        paths = self.paths
        for i in rng.permutation(len(paths)) if rng is not None else range(len(paths)):
            with h5py.File(paths[i], "r") as f:
                n = len(f["labels"])
                starts = np.arange(0, n, block)
                if rng is not None:
                    starts = rng.permutation(starts)
                for s in starts:
                    out = {k: f[k][s : s + block] for k in fields}
                    if rng is not None:
                        p = rng.permutation(len(out["labels"] if "labels" in out else
                                                out[fields[0]]))
                        out = {k: v[p] for k, v in out.items()}
                    yield out

    def read(self, fields: tuple[str, ...] = ("images", "labels")) -> dict[str, np.ndarray]:
        """The whole split in memory, file order."""
        parts = list(self.blocks(block=1 << 16, fields=fields))
        if not parts:
            return {k: np.empty((0,)) for k in fields}
        return {k: np.concatenate([p[k] for p in parts]) for k in fields}


def open_shards(root: str | Path, split: str) -> ShardSet:
    """The shards of `split` ("train", "val" or "test") of a dataset folder."""
    root = Path(root)
    path = root / "manifest.json"
    try:
        manifest = json.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        raise EtlError(f"{path}: no manifest.json: not an etlkit dataset, or an extraction "
                       "that did not finish") from None
    except (OSError, ValueError) as err:
        raise EtlError(f"{path}: unreadable manifest ({err})") from None
    if not (isinstance(manifest, dict) and isinstance(manifest.get("splits"), dict)
            and isinstance(manifest.get("shards"), list)):
        raise EtlError(f"{path}: not an etlkit manifest (no splits and shards)")
    if split not in manifest["splits"]:
        raise EtlError(f"{root}: no split {split!r}; it has {', '.join(manifest['splits'])}")
    return ShardSet(root, split, manifest)

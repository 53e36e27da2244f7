"""HDF5 shards: one split per folder, every shard self-describing, written atomically.

A dataset folder holds `{train,val,test}/shard-NNNNN.h5` and `manifest.json`. Each shard has
`images` uint8 (N, 64, 64) chunked along N, `labels` int32, `sjis` int32, `codes` uint16,
`sheets` int32 and `source` int32 (N, 2) = (index into the manifest's source files, record
number), plus the class table, task and preprocessing as JSON attributes. The same arrays give
the same bytes (h5py writes no timestamps).
"""

import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

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
    if split not in manifest["splits"]:
        raise EtlError(f"{root}: no split {split!r}; it has {', '.join(manifest['splits'])}")
    return ShardSet(root, split, manifest)

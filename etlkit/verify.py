"""Check a user's raw ETL download against the manifest: missing files, wrong or partial sizes;
and an extracted dataset against its manifest.json."""

from dataclasses import dataclass
from pathlib import Path

import h5py

from . import formats, manifest
from .shards import open_shards, sha256


@dataclass(frozen=True)
class FileCheck:
    name: str
    dataset: str
    status: str  # ok, missing, partial, wrong-count, unverified-count, corrupt
    expected: int
    found: int | None  # whole records found (None when missing)
    detail: str = ""

    @property
    def failed(self) -> bool:
        return self.status in ("missing", "partial", "wrong-count", "corrupt")


def find_raw_files(root: Path) -> dict[str, Path]:
    """Known ETL file names under `root` (any depth: AIST ships ETL1/ETL1C_01 and so on)."""
    known = manifest.files()
    found = {}
    for path in sorted(root.rglob("*")):
        entry = manifest.lookup(path) if path.is_file() else None
        if entry and entry.name.upper() in known:
            found.setdefault(entry.name.upper(), path)
    return found


def verify_raw(root: str | Path) -> list[FileCheck]:
    """One check per manifest file of every dataset that has at least one file under `root`."""
    root = Path(root)
    found = find_raw_files(root)
    present = {manifest.files()[name].dataset for name in found}
    checks = []
    for key, entry in manifest.files().items():
        if entry.dataset not in present:
            continue
        path = found.get(key)
        record_size = formats.FORMATS[entry.dataset].record_size
        if path is None:
            checks.append(FileCheck(entry.name, entry.dataset, "missing", entry.records, None))
            continue
        size = path.stat().st_size
        n, rest = divmod(size, record_size)
        if rest:
            status, detail = "partial", (f"{size} bytes: record {n} at offset {n * record_size} "
                                         f"has {rest} of {record_size} bytes")
        elif n != entry.records:
            status = "wrong-count" if entry.verified else "unverified-count"
            detail = f"{n} records, expected {entry.records}"
            if not entry.verified:
                detail += " (the expected count is not confirmed by AIST)"
        else:
            status, detail = "ok", ""
        checks.append(FileCheck(entry.name, entry.dataset, status, entry.records, n, detail))
    return checks


def verify_dataset(root: str | Path) -> list[FileCheck]:
    """Check an extracted dataset: every shard present, its SHA-256, counts and labels."""
    root = Path(root)
    doc = open_shards(root, "train").manifest
    checks = []
    for shard in doc["shards"]:
        path = root / shard["path"]
        name, expected = shard["path"], shard["count"]
        if not path.is_file():
            checks.append(FileCheck(name, "shard", "missing", expected, None))
            continue
        if sha256(path) != shard["sha256"]:
            checks.append(FileCheck(name, "shard", "corrupt", expected, None,
                                    "SHA-256 differs from manifest.json"))
            continue
        try:
            with h5py.File(path, "r") as f:
                labels = f["labels"][:]
                found = len(labels)
                sizes = {len(f[k]) for k in ("images", "sjis", "codes", "sheets", "source")}
                image_shape = f["images"].shape[1:]
        except (OSError, KeyError) as err:
            checks.append(FileCheck(name, "shard", "corrupt", expected, None, str(err)))
            continue
        side = doc.get("image_size", 64)
        if image_shape != (side, side):
            checks.append(FileCheck(name, "shard", "corrupt", expected, found,
                                    f"images are {'×'.join(map(str, image_shape))}, "
                                    f"manifest.json says {side}×{side}"))
            continue
        bad_labels = len(labels) and (labels.min() < 0 or labels.max() >= doc["num_classes"])
        if found != expected or sizes != {found} or bad_labels:
            checks.append(FileCheck(name, "shard", "wrong-count", expected, found,
                                    "labels out of range" if bad_labels else
                                    "dataset lengths disagree"))
        else:
            checks.append(FileCheck(name, "shard", "ok", expected, found))
    return checks

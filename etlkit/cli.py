"""The `etlkit` command line: thin wrappers over the library, one clear line per error.

Data commands here: info, preview, verify, synth, extract, card. The trainer's (train,
evaluate, predict, export, serve, recognize, table, seeds, figures, demo) are in train/cli.py
and registered at the end.
"""

import dataclasses
import json
import os
import shlex
import signal
import sys
import threading
import warnings
from collections import Counter
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
import yaml

from . import (
    __version__,
    digits,
    entry,
    extract,
    formats,
    idx,
    labels,
    plausibility,
    preview,
    provenance,
    reader,
    remote,
    repeats,
    synth,
    verify,
)
from .card import write_card
from .errors import (
    EtlError,
    EtlWarning,
    check_integer,
    check_items,
    is_finite_number,
    is_integer,
    one_line,
)
from .options import format_name, local_path, location, out_option
from .records import RecordBatch
from .shards import no_manifest, open_shards, unfinished

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, no_args_is_help=True,
                  help="Decode the ETL Character Database into correctly labelled arrays.")

FormatOpt = Annotated[str | None, typer.Option("--format", "-f", parser=format_name,
                                               help="Dataset (ETL1 ... ETL9G) when the file "
                                               "name does not say it.")]
PartialOpt = Annotated[bool, typer.Option("--allow-partial", help="Read the whole records of a "
                                          "file whose size is not a whole number of records.")]


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"etlkit {__version__}")
        raise typer.Exit()


@app.callback()
def _options(version: Annotated[bool, typer.Option("--version", callback=_print_version,
                                                   is_eager=True, help="Print etlkit's version "
                                                   "and exit.")] = False) -> None:
    """Decode the ETL Character Database into correctly labelled arrays."""


Co59Opt = Annotated[Path | None, typer.Option("--co59", parser=local_path,
                                              help="AIST's euc_co59.dat, for ETL-2 labels.")]


INTERRUPTED = entry.INTERRUPTED  # the exit status of a command stopped by Ctrl-C


@contextmanager
def _reported(interrupted: str | Callable[[], str] = "interrupted"):
    """Print EtlWarnings as `warning:` lines and turn an EtlError into one line and exit 1;
    Ctrl-C into the line `error: {interrupted}` (a callable: the line as things stand when the
    signal comes) and exit 130, within a second whatever the command is doing."""
    said = interrupted if callable(interrupted) else lambda: interrupted
    with warnings.catch_warnings(record=True) as caught, _stopped_by_ctrl_c(said):
        warnings.simplefilter("always", EtlWarning)
        try:
            yield caught
        except EtlError as err:
            _print_warnings(caught)
            typer.echo(f"error: {one_line(str(err))}", err=True)
            raise typer.Exit(1) from None
        except OSError as err:  # a file the command could not read or write: --out in a
            # folder that is not there or not writable, a disk that filled up
            _print_warnings(caught)
            where = f"{err.filename}: " if err.filename else ""
            typer.echo(f"error: {one_line(where + (err.strerror or str(err)))}", err=True)
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            sys.stderr.write(f"error: {said()}\n")
            sys.stderr.flush()
            sys.stdout.flush()
            os._exit(INTERRUPTED)  # not SystemExit: the interpreter's teardown (JAX's exit
            # hooks, threads) can deadlock after an interrupt; nothing is left to clean up
    _print_warnings(caught)


@contextmanager
def _stopped_by_ctrl_c(message: Callable[[], str]):
    """A KeyboardInterrupt can be swallowed where it lands (a finalizer, a worker thread's
    callback: "Exception ignored in ...") or wait for a thread pool's chunks, so Ctrl-C also
    arms a half-second watchdog that ends the process with the same line and status if the
    interrupt did not; a second Ctrl-C ends it at once, and so does the command's end: a
    swallowed interrupt must not let the command finish as if nobody had pressed Ctrl-C."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def leave() -> None:
        sys.stderr.write(f"error: {message()}\n")
        sys.stderr.flush()
        os._exit(INTERRUPTED)

    def on_ctrl_c(_signum, _frame) -> None:
        if pressed.is_set():
            leave()
        pressed.set()
        watchdog.start()
        raise KeyboardInterrupt

    def unraisable(report) -> None:  # the interrupt swallowed by a finalizer: said above
        if not issubclass(report.exc_type, KeyboardInterrupt):
            hook(report)

    pressed = threading.Event()
    watchdog = threading.Timer(0.5, leave)
    watchdog.daemon = True
    previous, hook = signal.signal(signal.SIGINT, on_ctrl_c), sys.unraisablehook
    sys.unraisablehook = unraisable
    try:
        yield
    finally:
        watchdog.cancel()
        signal.signal(signal.SIGINT, previous)
        sys.unraisablehook = hook
        if pressed.is_set():
            leave()


def _print_warnings(caught) -> None:
    for w in caught:
        if issubclass(w.category, EtlWarning):
            typer.echo(f"warning: {one_line(str(w.message))}", err=True)
    caught.clear()


def _raw_paths(paths: list[Path]) -> list[Path]:
    """Files as given; folders expand to the known ETL files inside them."""
    out = []
    for p in paths:
        if p.is_dir():
            found = verify.find_raw_files(p)
            if not found:
                raise EtlError(f"{p}: no ETL files (names such as ETL1C_07, ETL8G_01) in it")
            out.extend(found.values())
        else:
            out.append(p)
    return out


def _summary(path: Path, fmt_name: str | None, allow_partial: bool,
             co59: Path | None) -> tuple[dict, repeats.HashedFile]:
    """Streamed statistics of one file (memory bounded by the chunk size), and its records'
    hashes."""
    fmt = reader.resolve_format(path, fmt_name)
    records = extra = unlabelled = 0
    classes: dict[int, str] = {}
    sheets: set[int] = set()
    hashes, numbers = [], []
    fit = plausibility.RecordFit(path, fmt)
    for batch in reader.iter_read(path, fmt.name, allow_partial=allow_partial, co59_table=co59):
        fit.add(batch)
        records += len(batch)
        hashes.append(batch.hashes)
        numbers.append(batch.index)
        extra += int(batch.extra.sum())
        unlabelled += int((~batch.labelled).sum())
        codes, first = np.unique(batch.codes, return_index=True)
        classes.update(zip(codes.tolist(), batch.chars[first].tolist(), strict=True))
        sheets.update(np.unique(batch.sheets).tolist())
    fit.warn()
    scripts = Counter(labels.script_of(c) for c in set(classes.values()) if c)
    hashed = repeats.HashedFile(path, fmt.record_size, np.concatenate(hashes),
                                np.concatenate(numbers))
    return {
        "file": str(path), "format": fmt.name, "family": fmt.family,
        "record_size": fmt.record_size, "records": records,
        "image": list(fmt.layout.shape), "bits": fmt.layout.bits,
        "classes": len({c for c in classes.values() if c}), "codes": len(classes),
        "scripts": dict(sorted(scripts.items())), "sheets": len(sheets),
        "extra_records": extra, "unlabelled": unlabelled,
    }, hashed


@app.command()
def info(
    paths: Annotated[list[Path], typer.Argument(parser=local_path,
                                                help="Raw ETL files or folders.")],
    format: FormatOpt = None,
    allow_partial: PartialOpt = False,
    co59: Co59Opt = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON array on stdout.")] = False,
):
    """Format, records, classes, writers and label warnings of raw ETL files, and the first
    record that repeats an earlier one (in its file or one listed before it), which extract
    refuses."""
    rows, hashed = [], []
    with _reported() as caught:
        for path in _raw_paths(paths):
            row, hashes = _summary(path, format, allow_partial, co59)
            row["warnings"] = [str(w.message) for w in caught if issubclass(w.category,
                                                                            EtlWarning)]
            rows.append(row)
            hashed.append(hashes)
            _print_warnings(caught)
        repeat = repeats.first_repeat(hashed)
        if repeat:
            warnings.warn(EtlWarning(str(repeat)), stacklevel=1)
            rows[[h.path for h in hashed].index(repeat.path)]["warnings"].append(str(repeat))
    if as_json:
        typer.echo(json.dumps(rows, ensure_ascii=False, indent=1))
        return
    head = f"{'file':<12} {'format':<7} {'records':>8} {'classes':>7} {'sheets':>6} "
    typer.echo(head + f"{'image':>11} {'extra':>6} {'no char':>7}  scripts")
    for r in rows:
        image = f"{r['image'][0]}x{r['image'][1]}/{r['bits']}b"
        scripts = ", ".join(f"{k} {v}" for k, v in r["scripts"].items())
        typer.echo(f"{Path(r['file']).name:<12} {r['format']:<7} {r['records']:>8} "
                   f"{r['classes']:>7} {r['sheets']:>6} {image:>11} {r['extra_records']:>6} "
                   f"{r['unlabelled']:>7}  {scripts}")


@app.command(name="preview")
def preview_cmd(
    path: Annotated[str, typer.Argument(parser=location,
                                        help="A raw ETL file, or a dataset written by extract "
                                        "(a folder or an https://, s3:// or gs:// URL).")],
    out: Annotated[Path, out_option("PNG to write (a raw file), or folder "
                                      "(a dataset).")] = Path("preview.png"),
    count: Annotated[int, typer.Option(help="Records to show (raw file), up to "
                                       f"{preview.MAX_COUNT}.")] = 60,
    columns: Annotated[int, typer.Option(help="Tiles per row (raw file), up to "
                                         f"{preview.MAX_COLUMNS}.")] = 12,
    split_name: Annotated[str, typer.Option("--split", help="Split to show (dataset).")] = "train",
    seed: Annotated[int, typer.Option(help="Which records to sample.")] = 0,
    format: FormatOpt = None,
    allow_partial: PartialOpt = False,
    co59: Co59Opt = None,
):
    """A labelled grid of a raw file's records; for a dataset, a grid per class and the
    gray-vs-Otsu comparison (paper Fig. 2b)."""
    with _reported():
        check_integer("count", count, 1, preview.MAX_COUNT)
        check_integer("columns", columns, 1, preview.MAX_COLUMNS)
        check_integer("seed", seed)
        location = remote.as_location(remote.check_location(path))
        if remote.is_url(location) or (location / "manifest.json").is_file():
            verify.check_dataset(location)  # shows nothing a checked dataset would not give
            shard_set = open_shards(location, split_name)
            out.mkdir(parents=True, exist_ok=True)
            _save(preview.class_grid(shard_set, seed=seed), out / "classes.png")
            _save(preview.gray_vs_otsu(shard_set, seed=seed), out / "gray-vs-otsu.png")
            typer.echo(f"wrote {out / 'classes.png'} and {out / 'gray-vs-otsu.png'}")
            return
        batch = reader.read(location, format, allow_partial=allow_partial, co59_table=co59)
        shown: RecordBatch = preview.sample(batch, count, seed)
        _save(preview.grid(shown, formats.get(batch.dataset).levels, columns), out)
    typer.echo(f"wrote {out} ({len(shown)} of {len(batch)} records)")


def _save(image, out: Path) -> None:
    """Write a PNG atomically."""
    tmp = out.with_name(f".{out.name}.tmp")
    image.save(tmp, format="PNG")
    tmp.replace(out)


@app.command(name="verify")
def verify_cmd(root: Annotated[str, typer.Argument(
        parser=location,
        help="Folder of raw ETL files, or a dataset written by extract (a folder or an "
             "https://, s3:// or gs:// URL).")],
        against: Annotated[Path | None, typer.Option(
            "--against", parser=local_path,
            help="Folder of the raw ETL files the dataset was made from: extract "
            "them again with its options and compare every record (catches a dataset "
            "relabelled with its checksums recomputed).")] = None):
    """Check raw ETL files against data_manifest.yaml, or a dataset's shards against its
    manifest.json (SHA-256, counts, labels); a URL's shards are hashed as they stream in."""
    with _reported():
        location = remote.as_location(remote.check_location(root))
        if against is not None and remote.is_url(location):
            raise EtlError(f"--against: {root} is a URL; the records are compared in a local "
                           "dataset folder (download it, or verify the URL without --against)")
        if remote.is_url(location):
            checks = verify.verify_dataset(location)
        elif not location.is_dir():
            raise EtlError(f"{root}: not a folder")
        elif unfinished(location):
            raise EtlError(no_manifest(location))
        elif (location / "manifest.json").is_file():
            checks = verify.verify_dataset(location)
        else:
            checks = verify.verify_raw(location)
        if not checks:
            if any(any((location / name).glob("shard-*.h5")) for name in ("train", "val",
                                                                            "test")):
                raise EtlError(no_manifest(location))  # a dataset that lost its manifest
            raise EtlError(f"{root}: no ETL files (names such as ETL1C_07, ETL8G_01) in it")
        if against is not None:
            if not (location / "manifest.json").is_file():
                raise EtlError(f"--against: {root} is not a dataset folder written by extract")
            if not any(c.failed for c in checks):  # records are compared in sound shards only
                checks += provenance.verify_against_raw(location, against)
    width = max(12, *(len(c.name) for c in checks))
    typer.echo(f"{'file':<{width}} {'dataset':<7} {'status':<16} {'records':>8} "
               f"{'expected':>8}  detail")
    for c in checks:
        found = "-" if c.found is None else str(c.found)
        typer.echo(f"{c.name:<{width}} {c.dataset:<7} {c.status:<16} {found:>8} "
                   f"{c.expected:>8}  {c.detail}")
    failed = [c for c in checks if c.failed]
    typer.echo(f"{len(checks) - len(failed)} of {len(checks)} files ok" +
               (f", {len(failed)} failed" if failed else ""))
    if failed:
        raise typer.Exit(1)


@app.command(name="card")
def card_cmd(
    root: Annotated[Path, typer.Argument(parser=local_path, help="A dataset folder written by "
                                         "extract (the card is written into it).")],
    synthetic: Annotated[bool, typer.Option(
        "--synthetic", help="The raw ETL files came from `etlkit synth`: the licence is "
        "KanjiVG's CC BY-SA 3.0, not the ETL database's terms.")] = False,
):
    """Write or refresh a dataset's card (README.md for people and Hugging Face `datasets`),
    croissant.json (MLCommons Croissant 1.1) and preview.png."""
    with _reported():
        if not (root / "manifest.json").is_file():
            raise EtlError(no_manifest(root))
        verify.check_dataset(root)  # a card describes only a dataset that verifies
        paths = write_card(root, synthetic=synthetic)
    typer.echo(f"wrote {', '.join(str(p) for p in paths)}")


@app.command(name="synth")
def synth_cmd(
    dataset: Annotated[str, typer.Option(help=f"One of {', '.join(synth.DATASETS)}.")],
    out: Annotated[Path, out_option("Folder to write the raw files in.")],
    writers: Annotated[int, typer.Option(help="Writers per file (category-major datasets) or "
                                         "in all (writer-major ones).")] = 5,
    seed: Annotated[int, typer.Option(help="Same seed, same bytes.")] = 0,
    files: Annotated[list[str] | None, typer.Option("--files", help="Only files matching these "
                                                    "names or glob patterns (the option once "
                                                    "per pattern).")] = None,
):
    """Write synthetic raw ETL files (real names, layouts, order and classes; KanjiVG strokes)."""
    with _reported():
        check_items("files", files)
        written = synth.synth(dataset, out, writers=writers, seed=seed, files=files,
                              progress=lambda name, n: typer.echo(f"wrote {out / name} ({n} "
                                                                  "records)"))
    typer.echo(f"{len(written)} files in {out}")


#: Options whose CLI flag (and pipeline key) is not the option's own name.
FLAG_NAMES = {"split_method": "split"}


def _flag(option: str) -> str:
    """The CLI flag of an extract option: split_method -> --split, test_frac -> --test-frac."""
    return "--" + FLAG_NAMES.get(option, option).replace("_", "-")


PIPELINE_BYTES = 1 << 16  # a pipeline is a few lines; a bigger file is something else


def _pipeline(path: Path | None) -> dict:
    """A pipeline recipe's options (pipelines/*.yaml, keyed like the flags: `split`, `test_frac`
    or `test-frac`), checked against extract's options (names and types) and keyed by option
    name; list values become tuples."""
    if path is None:
        return {}
    if path.exists() and not (path.is_file() and path.stat().st_size <= PIPELINE_BYTES):
        raise EtlError(f"{path}: not a pipeline (a YAML file of at most "
                       f"{PIPELINE_BYTES >> 10} KB)")
    try:
        doc = yaml.safe_load(path.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        detail = " ".join(str(err).split())
        raise EtlError(f"{path}: unreadable pipeline ({detail})") from None
    doc = {} if doc is None else doc
    if not isinstance(doc, dict):
        raise EtlError(f"{path}: a pipeline is a mapping of option: value, not "
                       f"{type(doc).__name__} {doc!r:.40}")
    fields = extract.Options.__dataclass_fields__
    option_of = {FLAG_NAMES.get(name, name): name for name in fields}
    keys = {str(k).replace("-", "_"): k for k in doc if k != "description"}
    unknown = sorted(set(keys) - set(option_of))
    if unknown:
        raise EtlError(f"{path}: unknown pipeline keys {', '.join(unknown)}; known: "
                       f"{', '.join(sorted(option_of))}")
    settings = {}
    for key, written in keys.items():
        name, value = option_of[key], doc[written]
        wanted = _PIPELINE_TYPES[fields[name].type]
        if not wanted.fits(value):
            raise EtlError(f"{path}: {written} must be {wanted.words}, not {value!r:.40}")
        settings[name] = tuple(value) if isinstance(value, list) else value
    return settings


@dataclasses.dataclass(frozen=True)
class _ValueType:
    """What a pipeline value of one extract option type must be (YAML gives no type of its own:
    `merge_small_kana: "no"` is a truthy string)."""

    words: str
    fits: Callable[[object], bool]


_PIPELINE_TYPES = {
    bool: _ValueType("true or false", lambda v: isinstance(v, bool)),
    int: _ValueType("an integer", is_integer),
    float: _ValueType("a finite number", is_finite_number),
    str: _ValueType("a string", lambda v: isinstance(v, str)),
    tuple[str, ...]: _ValueType("a list of strings", lambda v: isinstance(v, list)
                                and all(isinstance(x, str) for x in v)),
}


@app.command(name="extract")
def extract_cmd(
    out: Annotated[Path, out_option("Dataset folder to write.")],
    raw: Annotated[list[Path] | None, typer.Argument(
        parser=local_path,
        help="Raw ETL files or folders, or IDX files (MNIST/EMNIST images and labels, train and "
             "t10k/test).", show_default=False)] = None,
    dataset: Annotated[str | None, typer.Option(
        help=f"A digits dataset installed with a package: {', '.join(digits.DATASETS)} "
             "(no RAW).")] = None,
    mapping: Annotated[Path | None, typer.Option(
        parser=local_path,
        help="EMNIST's *-mapping.txt (label -> character) for EMNIST IDX files.")] = None,
    pipeline: Annotated[Path | None, typer.Option(parser=local_path,
                                                  help="A recipe (pipelines/*.yaml); options "
                                                  "given here override it.")] = None,
    task: Annotated[str | None, typer.Option(help="script, hiragana, katakana, kanji or "
                                             "all.")] = None,
    chars: Annotated[str | None, typer.Option(help="A custom class set: these characters.")] = None,
    scripts: Annotated[list[str] | None, typer.Option(help="A custom class set: characters of "
                                                      "these scripts (the option once per "
                                                      "script: --scripts hiragana --scripts "
                                                      "katakana).")] = None,
    binarize: Annotated[str | None, typer.Option(help="otsu or none (default: otsu for ETL, "
                                                 "none for IDX files and --dataset).")] = None,
    merge_small_kana: Annotated[bool | None, typer.Option(
        "--merge-small-kana/--keep-small-kana", help="っゃゅょ → つやゆよ (and katakana).")] = None,
    split_by: Annotated[str | None, typer.Option("--split", help="random (stratified by class) "
                                                 "or writer (writer-disjoint).")] = None,
    test_frac: Annotated[float | None, typer.Option(help="Share for test. [0.2]")] = None,
    val_frac: Annotated[float | None, typer.Option(help="Share of the rest for validation. "
                                                   "[0.2]")] = None,
    seed: Annotated[int | None, typer.Option(help="Split seed. [0]")] = None,
    shard_size: Annotated[int | None, typer.Option(help="Records per shard. [16384]")] = None,
    compression: Annotated[str | None, typer.Option(help="lzf, gzip or none. [lzf]")] = None,
    allow_missing: Annotated[bool | None, typer.Option(
        "--allow-missing", help="Extract without absent raw files (listed in the manifest).")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace a dataset already in --out.")
                     ] = False,
):
    """The paper's datasets: 64×64 images, Otsu, 80/20 splits, as HDF5 shards + manifest.json.
    Also digits and letters at 28×28: IDX files (MNIST, EMNIST with --mapping) or --dataset."""
    raw = raw or []
    given = {"task": task, "chars": chars, "scripts": tuple(scripts) if scripts else None,
             "binarize": binarize, "merge_small_kana": merge_small_kana, "split_method": split_by,
             "test_frac": test_frac, "val_frac": val_frac, "seed": seed,
             "shard_size": shard_size, "compression": compression,
             "allow_missing": allow_missing}
    manifest = _ManifestWatch(out / "manifest.json")
    with _reported(manifest.stopped_line):
        check_items("scripts", scripts)
        if dataset is not None or mapping is not None or any(map(idx.is_idx_name, raw)):
            doc = _extract_digits(raw, out, dataset, mapping, pipeline, given, force)
        else:
            if not raw:
                raise EtlError("nothing to extract: give raw ETL files or folders, IDX files, "
                               f"or --dataset {' or '.join(digits.DATASETS)}")
            settings = _pipeline(pipeline)
            settings.update({k: v for k, v in given.items() if v is not None})
            options = extract.Options(**settings)
            doc = extract.extract(raw, out, options, command=_command_line(raw, out, options),
                                  progress=lambda msg: typer.echo(msg, err=True), force=force)
    splits = ", ".join(f"{k} {v}" for k, v in doc["splits"].items())
    done = f"wrote {out}" if manifest.written() else f"kept {out} (already there)"
    typer.echo(f"{done}: task {doc['task']}, {doc['num_classes']} classes, {splits}")


class _ManifestWatch:
    """Whether this extract has written its dataset: the manifest is moved into place last,
    under a new inode. A Ctrl-C after that, before the `wrote` line, says the dataset is
    complete, where a plain "interrupted" would make a user think it was not; a rerun that
    found its dataset already there (`shards.already_there`) says it kept it."""

    def __init__(self, path: Path):
        self.path = path
        self.before = self._identity()

    def _identity(self) -> tuple[int, int] | None:
        try:
            found = self.path.stat()
        except OSError:
            return None
        return found.st_ino, found.st_mtime_ns

    def written(self) -> bool:
        now = self._identity()
        return now is not None and now != self.before

    def stopped_line(self) -> str:
        """The line a Ctrl-C during extract ends with."""
        if self.written():
            out = self.path.parent
            return f"interrupted after {out} was written in full (etlkit verify {out} checks it)"
        return "interrupted"


def _extract_digits(raw: list[Path], out: Path, dataset: str | None, mapping: Path | None,
                    pipeline: Path | None, given: dict, force: bool) -> dict:
    """extract for IDX files or --dataset: the ETL-only options are refused, not ignored."""
    etl_only = {"task", "chars", "scripts", "merge_small_kana", "split_method", "test_frac",
                "allow_missing"}
    refused = ["--pipeline"] * (pipeline is not None) + sorted(
        _flag(k) for k in etl_only if given[k] is not None)
    if refused:
        what = f"--dataset {dataset}" if dataset else "IDX files"
        raise EtlError(f"{', '.join(refused)}: only for ETL files, not {what} (IDX files keep "
                       "their own test split, --dataset has a fixed one)")
    settings = {k: v for k, v in given.items() if v is not None and k not in etl_only}
    options = digits.Options(dataset=dataset or "idx", mapping=str(mapping or ""), **settings)
    words = ["etlkit", "extract", *map(str, raw)]
    for name, value in dataclasses.asdict(options).items():
        if value != "" and not (name == "dataset" and value == "idx"):
            words += [_flag(name), str(value)]
    return digits.extract(raw, out, options, command=shlex.join([*words, "--out", str(out)]),
                          progress=lambda msg: typer.echo(msg, err=True), force=force)


def _command_line(raw: list[Path], out: Path, options: "extract.Options") -> str:
    """The extract command with every option spelled out, so it reruns without the recipe."""
    words = ["etlkit", "extract", *map(str, raw), "--out", str(out)]
    for name, value in dataclasses.asdict(options).items():
        flag = _flag(name)
        if isinstance(value, bool):
            words += [flag] if value else []
        elif isinstance(value, tuple):
            words += [w for v in value for w in (flag, v)]
        elif value != "":
            words += [flag, str(value)]
    if not options.merge_small_kana:
        words.append("--keep-small-kana")
    return shlex.join(words)


def _register_trainer() -> None:
    from train.cli import register
    register(app, _reported)


_register_trainer()


#: click's UsageError, whichever click typer runs on (recent typers vendor their own).
_UsageError = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError")


def main() -> None:
    """The commands, as `etlkit.entry` runs them: a command line that does not parse (an
    unknown option, a missing one, an extra argument) is one `error:` line and exit 2, like
    every other error, rather than click's usage box. Until a command's own Ctrl-C handling
    starts (while it parses options, imports JAX), entry's handler answers a Ctrl-C."""
    try:
        code = app(standalone_mode=False, prog_name="etlkit")
    except _UsageError as err:
        where = err.ctx.command_path if err.ctx is not None else "etlkit"
        typer.echo(f"error: {err.format_message().rstrip('.')} (see {where} --help)", err=True)
        sys.exit(err.exit_code)
    except typer.Abort:
        sys.exit(1)
    finally:
        # The command is done; a Ctrl-C from here on would land in the interpreter's teardown
        # (JAX's exit hooks), be "ignored" there and leave exit status 0: let it end the
        # process at once instead, by the signal (status 130 in the shell).
        signal.signal(signal.SIGINT, signal.SIG_DFL)
    sys.exit(code if isinstance(code, int) else 0)

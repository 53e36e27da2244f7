"""etlkit.read / etlkit.iter_read: raw ETL files -> RecordBatch, whole or in bounded chunks.

A file is a flat array of fixed-size records, so each chunk is one read of whole records and
one vectorized decode; memory is bounded by `chunk_records` (ETL-9G is 5 GB).
"""

import os
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from . import formats, labels, manifest, plausibility, repeats, synth
from .errors import EtlError, EtlWarning
from .formats import Format
from .records import RecordBatch

#: Below this share of records whose code is a character, a file is not what its name says;
#: judged on the first PLAUSIBILITY_SAMPLE records, so the verdict never depends on chunking.
MIN_LABELLED_SHARE = 0.5
PLAUSIBILITY_SAMPLE = 1024
#: B-family model records (one clean image per class) carry sheet number 0, which no writer's
#: sheet has; they are recognised by it wherever they sit, so a cut file keeps their flags.
MODEL_SHEET = 0


def resolve_format(path: str | Path, format: str | None = None) -> Format:
    """The format given, else the one the file's name says, else the only one its size fits."""
    path = Path(path)
    if format:
        try:
            return formats.get(format)
        except EtlError as err:
            raise EtlError(f"{path}: {err}") from None
    entry = manifest.lookup(path) or manifest.lookup(path.stem)
    if entry:
        return formats.FORMATS[entry.dataset]
    size = _size(path)
    fits = [f.name for f in formats.FORMATS.values() if size % f.record_size == 0]
    if len(fits) == 1:
        return formats.FORMATS[fits[0]]
    if not fits:
        raise EtlError(f"{path}: not an ETL file name, and its {size} bytes are not a whole "
                       "number of records of any ETL format; pass --format")
    raise EtlError(f"{path}: not an ETL file name, and its size fits {', '.join(fits)}; "
                   "pass --format")


def read(path: str | Path, format: str | None = None, *, allow_partial: bool = False,
         co59_table: dict[int, str] | str | Path | None = None) -> RecordBatch:
    """The whole file as one RecordBatch (see `iter_read` for the arguments)."""
    chunks = list(iter_read(path, format, chunk_records=None, allow_partial=allow_partial,
                            co59_table=co59_table))
    return chunks[0] if len(chunks) == 1 else RecordBatch.concatenate(chunks)


def read_records(path: str | Path, indices, format: str | None = None, *,
                 co59_table: dict[int, str] | None = None) -> RecordBatch:
    """Only the records numbered `indices` (record numbers in the file), for random access."""
    path = Path(path)
    fmt = resolve_format(path, format)
    n_records = _whole_records(path, fmt, _size(path), allow_partial=True)
    indices = np.asarray(indices, np.int64).reshape(-1)
    if len(indices) and (indices.min() < fmt.dummy_records or indices.max() >= n_records):
        raise EtlError(f"{path}: record numbers must be in {fmt.dummy_records}..{n_records - 1}")
    entry = manifest.lookup(path) or manifest.lookup(path.stem)
    return _decode(fmt, raw_records(path, fmt, indices), indices, fmt.char_of(co59_table), entry,
                   True)


def raw_records(path: Path, fmt: Format, indices: np.ndarray) -> np.ndarray:
    """The undecoded bytes of records numbered `indices`, (n, record_size) uint8; only those
    records are read, one read per run of consecutive numbers.

    Plain reads, not a memory map: a file cut short while it is read is an EtlError here, where
    a map would fault (SIGBUS) on the missing pages.
    """
    indices = np.asarray(indices, np.int64).reshape(-1)
    out = np.empty((len(indices), fmt.record_size), np.uint8)
    if not len(indices):
        return out
    if indices.min() < 0:
        raise EtlError(f"{path}: record numbers must not be negative")
    breaks = np.flatnonzero(np.diff(indices) != 1) + 1
    starts, ends = np.r_[0, breaks].tolist(), np.r_[breaks, len(indices)].tolist()
    try:
        with open(path, "rb") as f:
            for lo, hi in zip(starts, ends, strict=True):
                f.seek(int(indices[lo]) * fmt.record_size)
                run = out[lo:hi].reshape(-1)
                got = f.readinto(run) or 0
                if got < run.nbytes:
                    end = os.fstat(f.fileno()).st_size // fmt.record_size
                    raise EtlError(f"{path}: ends at record {end}, before record "
                                   f"{int(indices[hi - 1])} it was to read: the file was cut "
                                   "short or changed while being read")
    except OSError as err:
        raise EtlError(f"{path}: unreadable ({err.strerror or err})") from None
    return out


def iter_read(path: str | Path, format: str | None = None, *, chunk_records: int | None = 8192,
              allow_partial: bool = False, co59_table: dict[int, str] | str | Path | None = None,
              images: bool = True) -> Iterator[RecordBatch]:
    """Decode a raw ETL file in chunks of at most `chunk_records` records (None: one chunk).

    `format` is a dataset name (ETL1 ... ETL9G), inferred when omitted. A file whose size is not
    a whole number of records is an error unless `allow_partial`, which reads the whole records
    and warns. `co59_table` is AIST's euc_co59.dat (a path or a loaded dict), needed for ETL-2
    labels. Records whose code stands for no character are kept, counted and warned about;
    records `etlkit synth` wrote (`RecordBatch.synthetic`) are warned about when no synth marker
    beside the file lists it.
    `images=False` skips unpacking the images (they come back as (N, 0, 0)): labels only.
    """
    path = Path(path)
    if chunk_records is not None and chunk_records < 1:
        raise ValueError(f"chunk_records must be positive or None, not {chunk_records}")
    fmt = resolve_format(path, format)
    size = _size(path)
    n_records = _whole_records(path, fmt, size, allow_partial)
    table = labels.load_co59(co59_table) if isinstance(co59_table, str | Path) else co59_table
    no_table = fmt.code == "co59" and table is None
    if no_table:
        warnings.warn(EtlWarning(f"{path}: ETL-2 labels need AIST's euc_co59.dat (co59_table= "
                                 "or --co59); records are kept with empty chars"), stacklevel=2)
    char_of = fmt.char_of(table)
    entry = manifest.lookup(path) or manifest.lookup(path.stem)
    start = fmt.dummy_records
    if start:
        _check_dummy(path, fmt)
    step = chunk_records or max(n_records - start, 1)
    _check_plausible(path, fmt, char_of, entry, start, n_records, step, judge_labels=not no_table)
    unlabelled, first_unlabelled, models, signed = 0, None, 0, 0
    for lo in range(start, n_records, step):
        hi = min(lo + step, n_records)
        batch = _decode(fmt, _raw(path, fmt, lo, hi), np.arange(lo, hi), char_of, entry,
                        images)
        models += int(batch.extra.sum())
        signed += int(batch.synthetic.sum())
        missing = ~batch.labelled
        if missing.any():
            unlabelled += int(missing.sum())
            if first_unlabelled is None:
                i = int(np.argmax(missing))
                first_unlabelled = (int(batch.index[i]), int(batch.codes[i]))
        yield batch
    if unlabelled and not no_table:
        rec, code = first_unlabelled
        warnings.warn(EtlWarning(f"{path}: {unlabelled} records have codes that stand for no "
                                 f"character (first: record {rec}, code {code:#x}); kept with "
                                 "empty chars"), stacklevel=2)
    if signed:
        synth.warn_if_unmarked(path)
    if entry is not None and entry.extra_records and n_records == entry.records \
            and models != entry.extra_records:
        warnings.warn(EtlWarning(f"{path}: {models} records carry the model records' sheet "
                                 f"number {MODEL_SHEET}, the manifest expects "
                                 f"{entry.extra_records} model records: the others are read as "
                                 "writer data"), stacklevel=2)


def _raw(path: Path, fmt: Format, lo: int, hi: int) -> np.ndarray:
    """Records lo..hi-1 as (n, record_size) uint8."""
    return raw_records(path, fmt, np.arange(lo, hi))


def _check_plausible(path: Path, fmt: Format, char_of, entry: manifest.FileEntry | None,
                     start: int, n_records: int, step: int, judge_labels: bool) -> None:
    """Reject a file whose first records are mostly codes that stand for no character; warn
    when its size, count, codes or bytes do not fit its name (see `plausibility`).

    Read in chunk-sized pieces, so memory stays bounded by the chunk.
    """
    hi = min(n_records, start + PLAUSIBILITY_SAMPLE)
    codes = np.concatenate([
        fmt.codes(fmt.layout.decode(_raw(path, fmt, lo, min(lo + step, hi)), False)[0])
        for lo in range(start, hi, step)
    ])
    if judge_labels:
        chars, _, _ = labels.label_arrays(codes, char_of)
        missing = int((chars == "").sum())
        if len(codes) >= 8 and missing > (1 - MIN_LABELLED_SHARE) * len(codes):
            raise EtlError(f"{path}: does not look like {fmt.name} data: {missing} of the "
                           f"first {len(codes)} records have codes that stand for no character")
    misfit = plausibility.misfit(path, fmt, entry, n_records, codes)
    if misfit:
        warnings.warn(EtlWarning(f"{path}: {misfit}"), stacklevel=3)


def _decode(fmt: Format, raw: np.ndarray, index: np.ndarray, char_of,
            entry: manifest.FileEntry | None, with_images: bool) -> RecordBatch:
    fields, images = fmt.layout.decode(raw, with_images)
    codes = fmt.codes(fields)
    sheets = (np.zeros(len(raw), np.int64) if fmt.family == "K"
              else fields["sheet"].astype(np.int64))
    chars, sjis, scripts = labels.label_arrays(codes, char_of)
    extra = np.full(len(raw), entry is not None and entry.extra)
    if fmt.dummy_records:  # the B family, the only one with model records
        extra |= sheets == MODEL_SHEET
    return RecordBatch(dataset=fmt.name, images=images, codes=codes, chars=chars, sjis=sjis,
                       scripts=scripts, sheets=sheets, index=index.astype(np.int64), extra=extra,
                       synthetic=fmt.synth_signed(raw), fields=fields,
                       hashes=repeats.record_hashes(raw))


def _size(path: Path) -> int:
    if path.is_dir():
        raise EtlError(f"{path}: is a directory, not an ETL file")
    try:
        size = os.path.getsize(path)
    except OSError:
        raise EtlError(f"{path}: no such file") from None
    if size == 0:
        raise EtlError(f"{path}: empty file")
    return size


def _whole_records(path: Path, fmt: Format, size: int, allow_partial: bool) -> int:
    n, rest = divmod(size, fmt.record_size)
    if rest:
        where = (f"{size} bytes is not a whole number of {fmt.record_size}-byte {fmt.name} "
                 f"records: record {n} at offset {n * fmt.record_size} is incomplete "
                 f"({rest} of {fmt.record_size} bytes)")
        if not allow_partial or n <= fmt.dummy_records:
            hint = "" if n <= fmt.dummy_records else f"; --allow-partial reads the {n} whole ones"
            better = plausibility.better_format(path, exclude=fmt)
            raise EtlError(f"{path}: {where}{hint}" + (f"; {better}" if better else ""))
        warnings.warn(EtlWarning(f"{path}: {where}; reading the {n} whole records"), stacklevel=3)
    if n <= fmt.dummy_records:
        raise EtlError(f"{path}: holds only the dummy record of a {fmt.name} file")
    return n


def _check_dummy(path: Path, fmt: Format) -> None:
    first = np.fromfile(path, np.uint8, count=fmt.record_size)
    if first.any():
        raise EtlError(f"{path}: record 0 is not the all-zero dummy record {fmt.name} files "
                       "start with (was it stripped, or is this another format?)")

"""Synthetic raw ETL files: the real names, record layouts, record order and class sets.

The ETL database cannot be downloaded here, so tests, demos and benchmarks run on files this
module writes. Images are pseudo-handwriting (`render`) with one style per writer, quantized to
the family's bit depth with scanner-like noise; labels and header fields follow the manifest,
including ETL-1's two missing records, the B family's dummy record and model records, and
ETL8G_33's extra set. Everything derives from the seed: same arguments, same bytes.

The files have AIST's names and layouts, so they say what they are twice: every record carries
`formats.SYNTH_SIGNATURE` (it travels with the bytes, through `cp` and `cat`), and the folder's
MARKER lists each file with its writers and seed (what `verify` counts its records by).
"""

import fnmatch
import json
import os
import unicodedata
import warnings
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np

from . import formats, manifest, render
from .errors import EtlError, EtlWarning, check_integer, is_integer, one_line

#: Datasets whose class lists are known well enough to synthesize.
DATASETS = ("ETL1", "ETL4", "ETL5", "ETL7", "ETL8B2", "ETL8G", "ETL9B", "ETL9G")
#: Sheet numbers the ETL-1 writers start at (katakana files 07-13 hold sheets 1550-2960).
_ETL1_FIRST_SHEET = {"alnum": 1001, "katakana": 1550}
_KUNREI = ("a", "i", "u", "e", "o", "ka", "ki", "ku", "ke", "ko", "sa", "si", "su", "se", "so",
           "ta", "ti", "tu", "te", "to", "na", "ni", "nu", "ne", "no", "ha", "hi", "hu", "he",
           "ho", "ma", "mi", "mu", "me", "mo", "ya", "yu", "yo", "ra", "ri", "ru", "re", "ro",
           "wa", "wi", "we", "wo", "n")
_GOJUON = ("アイウエオカキクケコサシスセソタチツテトナニヌネノハヒフヘホ"
           "マミムメモヤユヨラリルレロワヰヱヲン")
_VOICED = {"k": "g", "s": "z", "t": "d", "h": "b"}


def synth(dataset: str, out: str | Path, *, writers: int, seed: int = 0,
          files: list[str] | None = None,
          progress: Callable[[str, int], None] | None = None) -> list[Path]:
    """Write `writers` writers of a dataset's raw files into `out`; return the paths written.

    Category-major files (ETL1, ETL4, ETL5, ETL7, ETL8B2) each get `writers` writers (at most
    the real number); writer-major files (ETL8G, ETL9B, ETL9G) are filled in order, as many
    files as the writers need, with the extra sets only when every writer is written. `files`
    (names or glob patterns) restricts the output to matching files; a matching writer-major
    file past the writers asked for is an EtlWarning naming it (an EtlError when no matching
    file is reached). Fewer writers than asked for (the files hold no more) is an EtlWarning
    naming the files and the writers written.
    """
    try:
        fmt = formats.get(dataset)
    except EtlError as err:
        raise EtlError(f"synth: {err}") from None
    if fmt.name not in DATASETS:
        raise EtlError(f"synth: {dataset} is not synthesizable (class lists unknown); "
                       f"choose one of {', '.join(DATASETS)}")
    if writers < 1:
        raise EtlError(f"synth: --writers must be at least 1, got {writers}")
    check_integer("seed", seed)
    info = manifest.dataset_info(fmt.name)
    entries = [e for e in manifest.files().values() if e.dataset == fmt.name]
    plans = _plan(fmt.name, info, entries, writers, files)
    short = _fewer_writers(info, entries, plans, writers)
    if short:
        warnings.warn(EtlWarning(f"synth: {short}"), stacklevel=2)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for entry, sheets in plans:
        raw = _file_records(fmt, info, entry, sheets, seed)
        path = out / entry.name
        tmp = path.with_name(f".{entry.name}.tmp")
        raw.tofile(tmp)
        os.replace(tmp, path)
        mark_synthetic(path, fmt.name, len(sheets), seed)
        written.append(path)
        if progress:
            progress(entry.name, len(raw))
    return written


#: Beside files that `synth` wrote: which ones, with their writers and seed, so that verify
#: judges their counts by what synth wrote (their records' signature says only "synthetic").
MARKER = "ETLKIT-SYNTH.json"


def mark_synthetic(path: Path, dataset: str, writers: int, seed: int) -> None:
    """Record in the folder's MARKER that `path` is synthetic."""
    marker = path.parent / MARKER
    doc = synthetic_files(path.parent)
    doc[path.name.upper()] = {"dataset": dataset, "writers": writers, "seed": seed}
    tmp = marker.with_name(f".{MARKER}.tmp")
    tmp.write_text(json.dumps(dict(sorted(doc.items())), indent=1) + "\n", "utf-8")
    os.replace(tmp, marker)


def synthetic_files(folder: Path) -> dict[str, dict]:
    """Upper-case file name -> {dataset, writers, seed} of the files `synth` wrote in `folder`;
    a marker that is not such a record is one EtlError, never read as "nothing synthetic"
    (that would pass synthetic files off as AIST's)."""
    marker = folder / MARKER
    if marker.exists() and not marker.is_file():
        raise EtlError(f"{marker}: not a regular file, so not an etlkit synth record")
    try:
        doc = json.loads(marker.read_bytes())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as err:  # a folder, a FIFO's refusal, bad JSON or UTF-8
        raise EtlError(f"{marker}: unreadable etlkit synth record ({one_line(str(err))})"
                       ) from None
    if not (isinstance(doc, dict) and all(
            isinstance(v, dict) and is_integer(v.get("writers")) and v["writers"] >= 1
            and is_integer(v.get("seed")) for v in doc.values())):
        raise EtlError(f"{marker}: not an etlkit synth record (a JSON object of file entries, "
                       "each with its writers and seed)")
    return doc


def is_synthetic(path: Path) -> bool:
    """Whether the MARKER beside `path` lists it (its records' signature aside)."""
    return path.name.upper() in synthetic_files(path.parent)


#: Records `signed` looks at: synth signs every record, so the first few tell.
SIGNED_SAMPLE = 16


def signed(path: Path, fmt: formats.Format) -> bool:
    """Whether any of a raw file's first SIGNED_SAMPLE records (after the B family's dummy)
    carries synth's signature: for `verify`, which otherwise reads only sizes."""
    count = (fmt.dummy_records + SIGNED_SAMPLE) * fmt.record_size
    try:
        head = np.fromfile(path, np.uint8, count=count)
    except OSError as err:
        raise EtlError(f"{path}: unreadable ({err.strerror or err})") from None
    whole = len(head) // fmt.record_size * fmt.record_size
    records = head[:whole].reshape(-1, fmt.record_size)[fmt.dummy_records :]
    return bool(fmt.synth_signed(records).any())


def warn_if_unmarked(path: Path) -> None:
    """For a file whose records carry synth's signature: a warning when no MARKER beside it
    lists it (copied out of synth's folder), so its records are not taken for AIST's."""
    if not is_synthetic(path):
        warnings.warn(EtlWarning(f"{path}: records written by etlkit synth: synthetic, not "
                                 f"AIST's (they carry its signature; no {MARKER} beside the "
                                 "file lists it)"), stacklevel=3)


def _plan(dataset, info, entries, writers, patterns):
    """[(file entry, the sheet numbers of its writers)], the files to write."""
    chosen = [e for e in entries
              if not patterns or any(fnmatch.fnmatch(e.name.upper(), p.upper()) for p in patterns)]
    if not chosen:
        raise EtlError(f"synth: no {dataset} file matches {', '.join(patterns or [])}")
    if info["order"] != "writer-major":
        return [(e, _sheets(info, entries, e, writers)) for e in chosen]
    plans = []
    total = sum(e.writers for e in entries if not e.extra)
    done = 0
    for e in entries:
        if e.extra:
            if (patterns and e in chosen) or (not patterns and writers >= total):
                plans.append((e, _sheets(info, entries, e, e.writers)))
            continue
        n = min(e.writers, writers - done)
        if n > 0 and e in chosen:
            plans.append((e, _sheets(info, entries, e, n)))
        done += max(n, 0)
    planned = [e for e, _ in plans]
    unreached = [e for e in chosen if patterns and not e.extra and e not in planned]
    if unreached:  # --files names writer-major files past the writers asked for
        first, end = _writer_range(unreached, entries)
        names = _listed([e.name for e in unreached])
        phrase = (f"synth: --writers {writers} does not reach {names} "
                  f"({_writers_of(dataset, first, end, entries)})")
        if not plans:
            raise EtlError(f"{phrase}: nothing to write")
        warnings.warn(EtlWarning(f"{phrase}: not written"), stacklevel=3)
    return plans


def _fewer_writers(info, entries, plans, writers) -> str | None:
    """What falls short of the `writers` asked for, as a phrase, or None: a category-major
    file holds at most its real writers; writer-major files hold the writers of their place in
    the dataset's file order (ETL8G_01 writers 1 to 5), so more than the last file written
    reaches is capped there."""
    regular = [(entry, sheets) for entry, sheets in plans if not entry.extra]
    if info["order"] != "writer-major":
        capped = [(entry, len(sheets)) for entry, sheets in regular if len(sheets) < writers]
        if not capped:
            return None
        if len(capped) == 1:
            ((entry, held),) = capped
            return (f"--writers {writers} is more than {entry.name} holds: wrote its "
                    f"{held} writers")
        return (f"--writers {writers} is more than the files hold: wrote each file's writers "
                f"({_listed([f'{e.name}: {held}' for e, held in capped])})")
    if not regular:
        return None
    first, end = _writer_range([e for e, _ in regular], entries)
    if writers <= end:
        return None
    written = sum(len(sheets) for _, sheets in regular)
    names = [e.name for e, _ in regular]
    return (f"--writers {writers} is more than {_listed(names)} hold{'s' * (len(names) == 1)} "
            f"({_writers_of(regular[0][0].dataset, first, end, entries)}): wrote {written} "
            f"writer{'s' * (written != 1)}")


def _writer_range(chosen, entries) -> tuple[int, int]:
    """The first and last writer (counting from 1) of writer-major files `chosen`, in their
    dataset's file order."""
    order = [e for e in entries if not e.extra]
    ends = np.cumsum([e.writers for e in order])
    at = [order.index(e) for e in chosen]
    return int(ends[min(at)] - order[min(at)].writers + 1), int(ends[max(at)])


def _writers_of(dataset, first, end, entries) -> str:
    """Which of a writer-major dataset's writers some files hold, as a phrase."""
    total = sum(e.writers for e in entries if not e.extra)
    return f"{dataset}'s writers {first} to {end} of {total}, filled in file order"


def _listed(names: list[str]) -> str:
    """Names for one line: the first three, then how many more."""
    return ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")


def _sheets(info, entries, entry, writers) -> list[int]:
    """The sheet numbers of the writers synth writes into `entry`'s file when asked for
    `writers`: writer-major files fill in order, so this one's writers follow all of the files
    before it (an extra set's follow every file's); category-major files spread their writers
    over the file's sheets, keeping the real file's gaps reachable in small sets."""
    spw = info.get("sheets_per_writer", 1)
    if info["order"] == "writer-major":
        regular = [e for e in entries if not e.extra]
        before = sum(e.writers for e in (regular if entry.extra else
                                         regular[: regular.index(entry)]))
        return [1 + (before + i) * spw for i in range(min(writers, entry.writers))]
    first = 1
    if entry.dataset == "ETL1":
        first = _ETL1_FIRST_SHEET["alnum" if entry.writers == 1445 else "katakana"]
    pool = first + np.arange(entry.writers)
    picks = np.unique(np.linspace(0, entry.writers - 1, min(writers, entry.writers)).round())
    sheets = [int(s) for s in pool[picks.astype(int)]]
    for _, sheet in entry.missing:
        if sheet not in sheets and len(sheets) > 2:
            nearest = min(range(1, len(sheets) - 1), key=lambda i: abs(sheets[i] - sheet))
            sheets[nearest] = sheet
    return sorted(sheets)


def records_written(name: str, writers: int) -> int:
    """How many records synth writes into the file `name` (an ETL file name) holding `writers`
    writers, as its marker records them: what `verify` expects of a synthetic file."""
    entry = manifest.files()[name.upper()]
    info = manifest.dataset_info(entry.dataset)
    entries = [e for e in manifest.files().values() if e.dataset == entry.dataset]
    sheets = _sheets(info, entries, entry, writers)
    return (formats.FORMATS[entry.dataset].dummy_records + entry.extra_records
            + len(_order(info, entry, sheets)))


def _file_records(fmt, info, entry, sheets, seed) -> np.ndarray:
    """The whole file as (records, record_size) uint8."""
    classes = list(entry.classes)
    order = _order(info, entry, sheets)
    spw = info.get("sheets_per_writer", 1)
    codes = np.array([classes[c] for c, _, _ in order], np.int64)
    sheet = np.array([sheets[w] + c * spw // len(classes) for c, w, _ in order], np.int64)
    writer = np.array([w for _, w, _ in order])
    chars = [fmt.char_of()(int(c)) for c in codes]
    model_codes = ()
    if entry.extra_records:
        model_codes = manifest.class_set(info["classes"])[: entry.extra_records]
    images = _images(fmt, entry, chars, writer, sheets, seed)
    if model_codes:
        model_chars = [fmt.char_of()(c) for c in model_codes]
        images = np.concatenate([images, _model_images(fmt, model_chars)])
        codes = np.concatenate([codes, model_codes])
        sheet = np.concatenate([sheet, np.zeros(len(model_codes), np.int64)])
        chars = chars + model_chars
    rng = np.random.default_rng([seed, _id(entry.name)])
    fields = _header(fmt, codes, sheet, chars, images, rng)
    raw = fmt.layout.encode(fields, images)
    fmt.synth_sign(raw)
    if fmt.dummy_records:
        raw = np.concatenate([np.zeros((fmt.dummy_records, fmt.record_size), np.uint8), raw])
    return raw


def _order(info, entry, sheets) -> list[tuple[int, int, int]]:
    """The file's writer records in file order, as (class position, writer position, repeat),
    without the records the real file lacks."""
    classes, missing = list(entry.classes), set(entry.missing)
    if info["order"] == "writer-major":
        order = [(c, w, 0) for w in range(len(sheets)) for c in range(len(classes))]
    else:
        order = [(c, w, r) for c in range(len(classes)) for w in range(len(sheets))
                 for r in range(entry.repeats)]
    return [o for o in order if (classes[o[0]], sheets[o[1]]) not in missing]


def _images(fmt, entry, chars, writer, sheets, seed) -> np.ndarray:
    shape = fmt.layout.shape
    ink = np.empty((len(chars), *shape), np.float32)
    styles = [render.WriterStyle.sample(np.random.default_rng([seed, _id(fmt.name), s]))
              for s in sheets]
    rngs = [np.random.default_rng([seed, _id(entry.name), s, 1]) for s in sheets]
    for i, (char, w) in enumerate(zip(chars, writer, strict=True)):
        ink[i] = render.render(char, styles[w], shape, rngs[w])
    noise = np.random.default_rng([seed, _id(entry.name), 2])
    return _quantize(ink, fmt.layout.bits, noise)


def _model_images(fmt, chars) -> np.ndarray:
    """Model records: one clean, upright rendering per class."""
    style = render.WriterStyle(pen_width=4.0, slant=0.0, scale=0.9, aspect=1.0, dx=0.0, dy=0.0,
                               jitter=0.0, wobble=0.0, ink=1.0)
    rng = np.random.default_rng(0)
    ink = np.stack([render.render(c, style, fmt.layout.shape, rng) for c in chars])
    return _quantize(ink, fmt.layout.bits, np.random.default_rng(1))


def _quantize(ink: np.ndarray, bits: int, rng: np.random.Generator,
              chunk: int = 256) -> np.ndarray:
    """Float ink -> raw levels: gray with scanner noise at 4/6 bits, thresholded at 1 bit.
    `chunk` images at a time: a whole file's noise at once is hundreds of MB of temporaries,
    four times slower; the generator draws the same stream either way, so the bytes match."""
    if bits == 1:
        return (ink > 0.4).astype(np.uint8)
    top = (1 << bits) - 1
    out = np.empty(ink.shape, np.uint8)
    for start in range(0, len(ink), chunk):
        part = ink[start:start + chunk]
        levels = part * top + rng.normal(0.0, 0.35, part.shape).astype(np.float32) * (1 + part)
        out[start:start + chunk] = np.clip(np.rint(levels, out=levels), 0, top, out=levels)
    return out


def _header(fmt, codes, sheets, chars, images, rng) -> np.ndarray:
    n = len(codes)
    fields = np.zeros(n, fmt.layout.field_dtype)
    names = fields.dtype.names
    fields["jis"] = codes
    fields["sheet"] = sheets
    serial = np.arange(1, n + 1)
    for name, value in [
        ("data_number", serial), ("serial_data_number", serial),
        ("gender", rng.integers(1, 3, n)), ("age", rng.integers(15, 60, n)),
        ("gathering_date", 7306), ("scan_date", 7405),
        ("pos_y", rng.integers(1, 10, n)), ("pos_x", rng.integers(1, 10, n)),
        ("max_level", images.reshape(n, -1).max(axis=1) * (255 // ((1 << fmt.layout.bits) - 1))),
        ("x_points", 72), ("y_points", 76), ("levels", 16), ("magnification", 133),
    ]:
        if name in names:
            fields[name] = value
    romaji = np.array([_romaji(c) for c in chars])
    if "name" in names:  # M: kana romaji right-justified, alphanumerics left-justified
        fields["name"] = [r.upper().rjust(2)[:2] if r else ((c if c.isascii() else "?") + " ")[:2]
                          for r, c in zip(romaji, chars, strict=True)]
    if "reading" in names and fmt.layout.synth_mark_field != "reading":  # B: the signature
        width = fields.dtype["reading"].itemsize
        fields["reading"] = [(r.upper() + ".HIRA")[:width] if r else "" for r in romaji]
    if "ebcdic" in names:
        fields["ebcdic"] = [c.encode("cp037")[0] if c.isascii() and c else 0 for c in chars]
    if "t56_code" in names:
        kind = "H" if fmt.hiragana else "K"
        fields["t56_code"] = [f"{kind} {r.upper():>2}"[:4] for r in romaji]
    return fields


def _romaji(char: str) -> str:
    """Kunrei romaji of a kana ("" for anything else), as the ETL name fields spell them."""
    if not char or not ("\u3041" <= char <= "\u30fa"):
        return ""
    kata = chr(ord(char) + 0x60) if char <= "\u3096" else char
    base, *marks = unicodedata.normalize("NFD", kata)
    if base not in _GOJUON:
        big = unicodedata.normalize("NFKC", base)  # small kana have no NFKC form: use the next
        base = chr(ord(base) + 1) if big == base and chr(ord(base) + 1) in _GOJUON else base
        prefix = "x"
    else:
        prefix = ""
    if base not in _GOJUON:
        return ""
    r = _KUNREI[_GOJUON.index(base)]
    if marks and marks[0] == "\u3099":
        r = _VOICED.get(r[0], r[0]) + r[1:]
    elif marks:
        r = "p" + r[1:]
    return prefix + r


def _id(name: str) -> int:
    return zlib.crc32(name.encode())

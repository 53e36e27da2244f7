"""Checkpoints: a state pytree's leaves by key path, plus the loop's bookkeeping, in one file.

The file is two msgpack objects and then the arrays' raw bytes: a small header (`{"format":
FORMAT, "meta": ..., "sha256": ...}`), the table of leaves (`[key path, dtype, shape]` each, by
`jax.tree_util.keystr`), and every leaf's C-order bytes in table order. The SHA-256 covers the
meta, the table and the arrays' bytes and is checked on load, so a changed byte anywhere (a bad
disk, a stray write, a hand edit of the epoch or a dtype) is refused rather than loaded as NaN,
noise or a skipped epoch. Format 4 files, whose SHA-256 covers the arrays alone, still load;
their meta is then only as good as `load`'s caller's checks of it, and every leaf's dtype and
shape are checked against the model's in every format. Format 3 files, from before checksums,
load with a warning. A run that stamps its checkpoints with a run_id was saved in format 5
only, so its caller reads them with `older=False`: a format-3 or -4 file there was rewritten
(its checksum removed or narrowed) and is refused. What no `save` writes is refused in every
format, not read leniently: header keys other than its own, a header over HEADER_BYTES, a meta
with a key twice, a table entry twice, a dtype by another spelling or of no bool, integer or
float kind, a shape entry that is not a whole number of 0 or more. In every format a NaN or
infinite value is refused: no training saves one, and a checksum recomputed over one (a
forgery) would otherwise print NaN probabilities. `read` checks a file and `restore` fits it
to a model, so a caller can check its meta in between (whose run, which checkpoint) before a
structure that differs is blamed on another model. The header comes first so that `peek`
reads at most HEADER_BYTES, not the whole model; the key paths make a checkpoint name what it
holds, so restoring it into another model names the parameter that does not fit. The arrays are
written as they lie in memory, with no serialisation copy (a packed format copied each array
twice, most of a checkpoint's cost). A checkpoint is written under a temporary name, flushed to
disk and renamed, so a kill at any moment leaves either the previous checkpoint or the new one,
never half of one.
"""

import hashlib
import json
import math
import os
import reprlib
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import jax
import jax.numpy as jnp
import msgpack
import numpy as np

from etlkit.errors import EtlError, EtlWarning, is_integer
from etlkit.shards import is_digest

# 2: leaves by key path, header first; 3: raw array bytes; 4: their SHA-256 in the header;
# 5: the SHA-256 covers the meta and the table of leaves too
FORMAT = "etlkit-checkpoint-5"
ARRAYS_ONLY = "etlkit-checkpoint-4"  # still read: its SHA-256 covers the arrays' bytes alone
UNHASHED = "etlkit-checkpoint-3"  # still read, with a warning: no SHA-256 at all
READABLE = (FORMAT, ARRAYS_ONLY, UNHASHED)
#: The keys of the header each format's `save` wrote.
HEADER_KEYS = {FORMAT: {"format", "meta", "sha256"}, ARRAYS_ONLY: {"format", "meta", "sha256"},
               UNHASHED: {"format", "meta"}}
HEADER_BYTES = 1 << 16  # the most a header may take: a save writes a few hundred bytes
#: A table's or header's value as an error line shows it: one line, cut to fit, key paths whole.
_REPR = reprlib.Repr()
_REPR.maxstring, _REPR.maxlist = 160, 8
_shown = _REPR.repr


def save(path: Path, state, meta: dict) -> None:
    """Write `state` (any pytree of arrays) and `meta` (JSON-able) atomically to `path`."""
    flat = jax.tree_util.tree_flatten_with_path(jax.device_get(state))[0]
    leaves = [(jax.tree_util.keystr(key), np.require(x, requirements="C")) for key, x in flat]
    table = [[key, x.dtype.name, list(x.shape)] for key, x in leaves]
    body = [x.reshape(-1).view(np.uint8) for _, x in leaves]
    meta_text, table_bytes = json.dumps(meta), msgpack.packb(table)
    digest = _covered(meta_text, table_bytes)
    for data in body:
        digest.update(data)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        f.write(msgpack.packb({"format": FORMAT, "meta": meta_text,
                               "sha256": digest.hexdigest()}))
        f.write(table_bytes)
        for data in body:
            f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _covered(meta_text: str, table_bytes: bytes):
    """A SHA-256 that has taken in what format 5 covers before the arrays: the meta (as
    msgpack, so where it ends is part of what is hashed) and the table's bytes as written."""
    return hashlib.sha256(msgpack.packb(meta_text) + table_bytes)


TABLE_BYTES = 1 << 24  # the most the table of leaves may take


@dataclass(frozen=True)
class _Header:
    format: str
    meta_text: str
    meta: dict
    sha256: str | None  # None: format 3, which has none


def _header(f, path: Path) -> tuple[_Header, int]:
    """The header of an open checkpoint and where it ends, read from its first HEADER_BYTES
    (`peek` and `read` alike, so the two never disagree about a file); an EtlError for any
    header this etlkit does not read, or one of format 4 or 5 without a SHA-256 (which would
    turn the check of the data off). A file whose header names a format this etlkit reads
    but does not read whole (cut off, garbage, a size no save writes) is corrupt, not old."""
    head = f.read(HEADER_BYTES)
    unpacker = msgpack.Unpacker(strict_map_key=False)  # a key no save writes is named below
    unpacker.feed(head)
    header, damage = {}, None
    try:  # pair by pair, so that damage after the format is told from a file of another one
        for _ in range(unpacker.read_map_header()):
            key = unpacker.unpack()
            header[key] = unpacker.unpack()
    except msgpack.OutOfData:
        damage = ("is cut off in its header" if len(head) < HEADER_BYTES else
                  f"has a header longer than {HEADER_BYTES // 1024} KiB, which no save writes")
    except Exception:  # msgpack raises several types on bytes that are not a header
        damage = "has a header that does not read as a save writes one"
    if header.get("format") not in READABLE:
        raise EtlError(f"{path}: not an etlkit checkpoint of this version ({FORMAT}); "
                       "train the run again with this etlkit")
    if damage:
        raise EtlError(f"{path}: corrupt checkpoint: {damage}")
    extra = sorted(header.keys() - HEADER_KEYS[header["format"]], key=str)
    if extra:
        raise EtlError(f"{path}: corrupt checkpoint: its header holds {_shown(extra[0])}, "
                       f"which no {header['format']} checkpoint has")
    try:  # a header of a known format whose meta does not parse was damaged, not old
        meta = (json.loads(header["meta"], object_pairs_hook=unique_keys)
                if isinstance(header.get("meta"), str) else None)
    except (ValueError, RecursionError):  # RecursionError: arrays in arrays 30000 deep
        meta = None
    except RepeatedKey as err:
        raise EtlError(f"{path}: corrupt checkpoint: its header's meta holds the key "
                       f"{_shown(err.key)} twice") from None
    if not isinstance(meta, dict):
        raise EtlError(f"{path}: corrupt checkpoint: its header's meta is not a JSON object")
    digest = header.get("sha256")
    if header["format"] != UNHASHED and not is_digest(digest):
        raise EtlError(f"{path}: corrupt checkpoint: its header has no SHA-256 of its data")
    return _Header(header["format"], header["meta"], meta, digest), unpacker.tell()


class RepeatedKey(Exception):
    """A JSON object with a key twice, which `json.dumps` of a dict never writes."""

    def __init__(self, key: str):
        super().__init__(key)
        self.key = key


def unique_keys(pairs: list[tuple[str, object]]) -> dict:
    """A JSON object's pairs as a dict, refusing a repeated key (json keeps the last one,
    so an edit could hide a value behind the one a reader sees)."""
    doc = dict(pairs)
    if len(doc) != len(pairs):
        counts = Counter(key for key, _ in pairs)
        raise RepeatedKey(next(key for key, n in counts.items() if n > 1))
    return doc


def peek(path: Path) -> dict | None:
    """A checkpoint's meta from its header alone (not yet checked against the SHA-256, which
    needs the whole file), or None when there is no checkpoint."""
    try:
        with open(path, "rb") as f:
            return _header(f, path)[0].meta
    except FileNotFoundError:
        return None


def _read_leaves(f, table_at: int, path: Path,
                 header: _Header) -> dict[str, np.ndarray] | None:
    """{key path: array} from the table at `table_at` and the bytes after it, or None when
    they do not make a checkpoint (a cut-off file, a bad table, bytes left over); an EtlError
    when what the header's SHA-256 covers differs from it."""
    f.seek(table_at)
    unpacker = msgpack.Unpacker(f, read_size=1 << 16, max_buffer_size=TABLE_BYTES)
    try:
        table = unpacker.unpack()
    except Exception:  # msgpack raises several types on garbage
        return None
    entries = _table_entries(path, table)
    sizes = [dtype.itemsize * math.prod(shape) for _, dtype, shape in entries]
    body_at = table_at + unpacker.tell()
    if os.fstat(f.fileno()).st_size - body_at != sum(sizes):
        return None
    f.seek(table_at)
    table_bytes = f.read(body_at - table_at)
    body = bytearray(sum(sizes))
    if len(table_bytes) != body_at - table_at or f.readinto(body) != len(body):
        return None
    if header.sha256 is not None:
        digest = (_covered(header.meta_text, table_bytes) if header.format == FORMAT
                  else hashlib.sha256())
        digest.update(body)
        if digest.hexdigest() != header.sha256:
            raise EtlError(f"{path}: corrupt checkpoint: its data differs from its checksum")
    stored, at = {}, 0
    for (key, dtype, shape), size in zip(entries, sizes, strict=True):
        stored[key] = np.frombuffer(body, dtype, math.prod(shape), at).reshape(shape)
        at += size
    _check_finite(path, stored)
    if header.sha256 is None:
        warnings.warn(EtlWarning(f"{path}: a format-3 checkpoint has no checksum, so a changed "
                                 "byte in it cannot be detected; a run saved by this etlkit has "
                                 "one"), stacklevel=3)
    return stored


def _table_entries(path: Path, table) -> list[tuple[str, np.dtype, tuple[int, ...]]]:
    """(key path, dtype, shape) of each leaf in a checkpoint's table, as `save` writes it:
    `[key path, dtype name, [whole numbers of 0 or more]]` each, no key path twice. Anything
    else, a float shape (128.5 read as 128) or an entry repeated included, is an EtlError
    naming the entry rather than a lenient reading of a table no `save` wrote."""
    if not isinstance(table, list):
        raise EtlError(f"{path}: corrupt checkpoint: its table of leaves is not a list")
    entries, seen = [], set()
    for number, entry in enumerate(table):
        if not (isinstance(entry, list) and len(entry) == 3 and isinstance(entry[0], str)):
            raise EtlError(f"{path}: corrupt checkpoint: table entry {number} is not "
                           "[key path, dtype, shape]")
        key, name, shape = entry
        named = f"{path}: corrupt checkpoint: table entry {_shown(key)}"  # one line
        if key in seen:
            raise EtlError(f"{named} appears twice")
        seen.add(key)
        try:
            dtype = jnp.dtype(name) if isinstance(name, str) else None
        except (TypeError, ValueError):  # not a dtype's name
            dtype = None
        if dtype is None or dtype.name != name or not _saved_kind(dtype):
            raise EtlError(f"{named} has dtype {_shown(name)}, not the name of a bool, "
                           "integer or float dtype")
        if not (isinstance(shape, list) and all(is_integer(n) and n >= 0 for n in shape)):
            raise EtlError(f"{named} has shape {_shown(shape)}, not a list of whole "
                           "numbers of 0 or more")
        entries.append((key, dtype, tuple(shape)))
    return entries


def _saved_kind(dtype: np.dtype) -> bool:
    """Whether `dtype` is of a kind a state's leaves have (bool, integers, floats, bfloat16
    among them): 'void', 'str' or 'bytes' name dtypes of no size, which hold no array."""
    return any(jnp.issubdtype(dtype, kind) for kind in (jnp.bool_, jnp.integer, jnp.floating))


def _check_finite(path: Path, stored: dict[str, np.ndarray]) -> None:
    """Refuse NaN and infinity, which no saved training state holds (a NaN loss stops a run
    before its checkpoint): without a checksum (format 3) they are all that tells a damaged
    file from a good one, and with one recomputed over them they are a forgery."""
    for key, array in stored.items():
        if np.issubdtype(array.dtype, np.inexact) and not np.isfinite(array).all():
            raise EtlError(f"{path}: corrupt checkpoint: parameter {key} holds NaN or infinity, "
                           "which no trained model has")


@dataclass(frozen=True)
class Stored:
    """A checkpoint read and checked (its checksum, finite values), not yet fitted to a model."""

    path: Path
    leaves: dict[str, np.ndarray]  # by key path
    meta: dict


def read(path: Path, older: bool = True) -> Stored:
    """The checkpoint written by `save` at `path`, checked but not yet fitted to a model;
    with `older=False` one of an older format (a weaker checksum, or none) is refused, for a
    run saved only in this one."""
    if Path(path).exists() and not Path(path).is_file():  # a FIFO would block the read
        raise EtlError(f"{path}: not a regular file, so not a checkpoint")
    try:
        with open(path, "rb") as f:
            header, table_at = _header(f, path)
            if not older and header.format != FORMAT:
                raise EtlError(f"{path}: corrupt checkpoint: of the older format "
                               f"{header.format}, but its run was saved in {FORMAT} only: "
                               "rewritten since, its checksum removed or narrowed")
            stored = _read_leaves(f, table_at, path, header)
    except FileNotFoundError:
        raise EtlError(f"{path}: no checkpoint (did the run save one?)") from None
    if stored is None:
        raise EtlError(f"{path}: unreadable checkpoint (cut off or corrupt)")
    return Stored(path, stored, header.meta)


def restore(stored: Stored, like):
    """`stored`'s arrays as a state shaped like the pytree `like`: every parameter there, of
    its shape and dtype, and no other."""
    path = stored.path
    flat, treedef = jax.tree_util.tree_flatten_with_path(like)
    wanted = [jax.tree_util.keystr(key) for key, _ in flat]
    missing = [k for k in wanted if k not in stored.leaves]
    if missing:
        raise EtlError(f"{path}: has no parameter {missing[0]} ({len(missing)} of the model's "
                       f"{len(wanted)} missing): a checkpoint of another model")
    extra = sorted(set(stored.leaves) - set(wanted))
    if extra:
        raise EtlError(f"{path}: holds parameter {extra[0]}, which the model lacks: "
                       "a checkpoint of another model")
    restored = []
    for key, (_, want) in zip(wanted, flat, strict=True):
        got, dtype = stored.leaves[key], jnp.dtype(want.dtype)
        if got.shape != np.shape(want):
            raise EtlError(f"{path}: parameter {key} has shape {got.shape}, the model needs "
                           f"{np.shape(want)}: a checkpoint of another model or class count")
        if got.dtype != dtype:
            raise EtlError(f"{path}: parameter {key} is {got.dtype}, the model needs {dtype}: "
                           "a checkpoint of another model or precision, or a corrupt one")
        restored.append(jnp.asarray(got))  # device arrays: numpy ones would be read-only
    return jax.tree_util.tree_unflatten(treedef, restored)


def load(path: Path, like) -> tuple[object, dict]:
    """(state shaped like the pytree `like`, meta) from a checkpoint written by `save`."""
    stored = read(path)
    return restore(stored, like), stored.meta

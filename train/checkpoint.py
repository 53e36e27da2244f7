"""Checkpoints: a state pytree's leaves by key path, plus the loop's bookkeeping, in one file.

The file is two msgpack objects and then the arrays' raw bytes: a small header
(`{"format": FORMAT, "meta": ..., "sha256": ...}`), the table of leaves (`[key path, dtype,
shape]` each, by `jax.tree_util.keystr`), and every leaf's C-order bytes in table order. The
SHA-256 of those bytes is checked on load, so weights changed in place (a bad disk, a stray
write) are refused rather than loaded as NaN or noise; format 3 files, which have none, still
load. The header comes first
so that `peek` reads a few kilobytes, not the whole model; the key paths make a checkpoint name
what it holds, so restoring it into another model names the parameter that does not fit. The
arrays are written as they lie in memory, with no serialisation copy (a packed format copied
each array twice, most of a checkpoint's cost). A checkpoint is written under a temporary name,
flushed to disk and renamed, so a kill at any moment leaves either the previous checkpoint or
the new one, never half of one.
"""

import hashlib
import json
import math
import os
from pathlib import Path

import jax
import jax.numpy as jnp
import msgpack
import numpy as np

from etlkit.errors import EtlError

# 2: leaves by key path, header first; 3: raw array bytes; 4: their SHA-256 in the header
FORMAT = "etlkit-checkpoint-4"
READABLE = (FORMAT, "etlkit-checkpoint-3")
HEADER_BYTES = 1 << 16  # the most `peek` reads


def save(path: Path, state, meta: dict) -> None:
    """Write `state` (any pytree of arrays) and `meta` (JSON-able) atomically to `path`."""
    flat = jax.tree_util.tree_flatten_with_path(jax.device_get(state))[0]
    leaves = [(jax.tree_util.keystr(key), np.require(x, requirements="C")) for key, x in flat]
    table = [[key, x.dtype.name, list(x.shape)] for key, x in leaves]
    body = [x.reshape(-1).view(np.uint8) for _, x in leaves]
    digest = hashlib.sha256()
    for data in body:
        digest.update(data)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        f.write(msgpack.packb({"format": FORMAT, "meta": json.dumps(meta),
                               "sha256": digest.hexdigest()}))
        f.write(msgpack.packb(table))
        for data in body:
            f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


TABLE_BYTES = 1 << 24  # the most the table of leaves may take


def _unpacker(f, path: Path, limit: int) -> tuple[dict, str | None, msgpack.Unpacker]:
    """(meta, the SHA-256 of the arrays' bytes (None in format 3), the unpacker that read the
    header) from an open checkpoint, buffering at most `limit` bytes."""
    unpacker = msgpack.Unpacker(f, read_size=min(limit, 1 << 16), max_buffer_size=limit)
    meta = digest = None
    try:
        header = unpacker.unpack()
        if header.get("format") in READABLE:
            meta = json.loads(header["meta"])
            digest = header["sha256"] if header["format"] == FORMAT else None
    except Exception:  # msgpack raises several types on bytes that are not a header
        meta = None
    if not isinstance(meta, dict) or not isinstance(digest, str | None):
        raise EtlError(f"{path}: not an etlkit checkpoint of this version ({FORMAT}); "
                       "train the run again with this etlkit")
    return meta, digest, unpacker


def peek(path: Path) -> dict | None:
    """A checkpoint's meta from its header alone, or None when there is no checkpoint."""
    try:
        with open(path, "rb") as f:
            return _unpacker(f, path, HEADER_BYTES)[0]
    except FileNotFoundError:
        return None


def _read_leaves(f, unpacker: msgpack.Unpacker, path: Path,
                 digest: str | None) -> dict[str, np.ndarray] | None:
    """{key path: array} from the table and the bytes after it, or None when they do not
    make a checkpoint (a cut-off file, a bad table, bytes left over); an EtlError when the
    bytes differ from their `digest`."""
    try:
        table = unpacker.unpack()
        entries = [(key, jnp.dtype(dtype), tuple(int(n) for n in shape))
                   for key, dtype, shape in table]
    except Exception:  # msgpack and the dtype lookup raise several types on garbage
        return None
    if any(not isinstance(key, str) or min(shape, default=0) < 0 for key, _, shape in entries):
        return None
    sizes = [dtype.itemsize * math.prod(shape) for _, dtype, shape in entries]
    if os.fstat(f.fileno()).st_size - unpacker.tell() != sum(sizes):
        return None
    body = bytearray(sum(sizes))
    f.seek(unpacker.tell())
    if f.readinto(body) != len(body):
        return None
    if digest is not None and hashlib.sha256(body).hexdigest() != digest:
        raise EtlError(f"{path}: corrupt checkpoint: its data differs from its checksum")
    stored, at = {}, 0
    for (key, dtype, shape), size in zip(entries, sizes, strict=True):
        stored[key] = np.frombuffer(body, dtype, math.prod(shape), at).reshape(shape)
        at += size
    return stored


def load(path: Path, like) -> tuple[object, dict]:
    """(state shaped like the pytree `like`, meta) from a checkpoint written by `save`."""
    if Path(path).exists() and not Path(path).is_file():  # a FIFO would block the read
        raise EtlError(f"{path}: not a regular file, so not a checkpoint")
    try:
        with open(path, "rb") as f:
            meta, digest, unpacker = _unpacker(f, path, TABLE_BYTES)
            stored = _read_leaves(f, unpacker, path, digest)
    except FileNotFoundError:
        raise EtlError(f"{path}: no checkpoint (did the run save one?)") from None
    if stored is None:
        raise EtlError(f"{path}: unreadable checkpoint (cut off or corrupt)")
    flat, treedef = jax.tree_util.tree_flatten_with_path(like)
    wanted = [jax.tree_util.keystr(key) for key, _ in flat]
    missing = [k for k in wanted if k not in stored]
    if missing:
        raise EtlError(f"{path}: has no parameter {missing[0]} ({len(missing)} of the model's "
                       f"{len(wanted)} missing): a checkpoint of another model")
    extra = sorted(set(stored) - set(wanted))
    if extra:
        raise EtlError(f"{path}: holds parameter {extra[0]}, which the model lacks: "
                       "a checkpoint of another model")
    restored = []
    for key, (_, want) in zip(wanted, flat, strict=True):
        got = stored[key]
        if got.shape != np.shape(want):
            raise EtlError(f"{path}: parameter {key} has shape {got.shape}, the model needs "
                           f"{np.shape(want)}: a checkpoint of another model or class count")
        restored.append(jnp.asarray(got))  # device arrays: numpy ones would be read-only
    return jax.tree_util.tree_unflatten(treedef, restored), meta

"""Checkpoints: a state pytree's leaves by key path, plus the loop's bookkeeping, in one file.

The file is two msgpack objects in a row: a small header (`{"format": FORMAT, "meta": ...}`)
and then the leaves as a map from `jax.tree_util.keystr` key path to array. The header comes
first so that `peek` reads a few kilobytes, not the whole model; the key paths make a
checkpoint name what it holds, so restoring it into another model names the parameter that
does not fit. A checkpoint is written under a temporary name, flushed to disk and renamed, so a
kill at any moment leaves either the previous checkpoint or the new one, never half of one.
"""

import json
import os
from pathlib import Path

import jax
import jax.numpy as jnp
import msgpack
import numpy as np
from flax import serialization

from etlkit.errors import EtlError

FORMAT = "etlkit-checkpoint-2"  # 2: leaves by key path, header first
HEADER_BYTES = 1 << 16  # the most `peek` reads


def save(path: Path, state, meta: dict) -> None:
    """Write `state` (any pytree of arrays) and `meta` (JSON-able) atomically to `path`."""
    flat = jax.tree_util.tree_flatten_with_path(jax.device_get(state))[0]
    leaves = {jax.tree_util.keystr(key): np.asarray(x) for key, x in flat}
    header = msgpack.packb({"format": FORMAT, "meta": json.dumps(meta)})
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        f.write(header)
        f.write(serialization.msgpack_serialize(leaves))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _header(f, path: Path) -> tuple[dict, int]:
    """(meta, offset of the leaves) from an open checkpoint, reading at most HEADER_BYTES."""
    unpacker = msgpack.Unpacker(f, read_size=4096, max_buffer_size=HEADER_BYTES)
    try:
        header = unpacker.unpack()
        meta = json.loads(header["meta"]) if header.get("format") == FORMAT else None
    except Exception:  # msgpack raises several types on bytes that are not a header
        meta = None
    if not isinstance(meta, dict):
        raise EtlError(f"{path}: not an etlkit checkpoint of this version ({FORMAT}); "
                       "train the run again with this etlkit")
    return meta, unpacker.tell()


def peek(path: Path) -> dict | None:
    """A checkpoint's meta from its header alone, or None when there is no checkpoint."""
    try:
        with open(path, "rb") as f:
            return _header(f, path)[0]
    except FileNotFoundError:
        return None


def load(path: Path, like) -> tuple[object, dict]:
    """(state shaped like the pytree `like`, meta) from a checkpoint written by `save`."""
    try:
        with open(path, "rb") as f:
            meta, offset = _header(f, path)
            f.seek(offset)
            body = f.read()
    except FileNotFoundError:
        raise EtlError(f"{path}: no checkpoint (did the run save one?)") from None
    try:
        stored = serialization.msgpack_restore(body)
    except Exception as err:  # msgpack raises several types on corrupt bytes
        raise EtlError(f"{path}: unreadable checkpoint ({type(err).__name__})") from None
    if not isinstance(stored, dict):
        raise EtlError(f"{path}: unreadable checkpoint (no map of parameters)")
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

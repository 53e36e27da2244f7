"""Checkpoints: a state pytree's leaves plus the loop's bookkeeping, in one msgpack file.

A checkpoint is written under a temporary name, flushed to disk and renamed, so a kill at any
moment leaves either the previous checkpoint or the new one, never half of one. The leaves are
stored in tree order and restored into the tree structure of a freshly built model and
optimizer, which also catches a checkpoint from another model (count or shape mismatch).
"""

import json
import os
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import serialization

from etlkit.errors import EtlError


def save(path: Path, state, meta: dict) -> None:
    """Write `state` (any pytree of arrays) and `meta` (JSON-able) atomically to `path`."""
    leaves = [np.asarray(x) for x in jax.tree.leaves(jax.device_get(state))]
    blob = serialization.msgpack_serialize({
        "meta": json.dumps(meta), "leaves": {str(i): x for i, x in enumerate(leaves)}})
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        f.write(blob)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load(path: Path, like) -> tuple[object, dict]:
    """(state shaped like the pytree `like`, meta) from a checkpoint written by `save`."""
    try:
        raw = serialization.msgpack_restore(path.read_bytes())
    except FileNotFoundError:
        raise EtlError(f"{path}: no checkpoint (did the run save one?)") from None
    except Exception as err:  # msgpack raises several types on corrupt bytes
        raise EtlError(f"{path}: unreadable checkpoint ({type(err).__name__})") from None
    leaves, treedef = jax.tree.flatten(like)
    stored = raw["leaves"]
    if len(stored) != len(leaves):
        raise EtlError(f"{path}: holds {len(stored)} arrays, the model needs {len(leaves)}: "
                       "a checkpoint of another model or class count")
    restored = []
    for i, want in enumerate(leaves):
        got = stored[str(i)]
        if got.shape != np.shape(want):
            raise EtlError(f"{path}: array {i} has shape {got.shape}, the model needs "
                           f"{np.shape(want)}")
        restored.append(jnp.asarray(got))  # device arrays: numpy ones would be read-only
    return jax.tree.unflatten(treedef, restored), json.loads(raw["meta"])


def peek_step(path: Path) -> int | None:
    """The step a checkpoint was taken at, or None when there is none."""
    try:
        return json.loads(serialization.msgpack_restore(path.read_bytes())["meta"]).get("step")
    except FileNotFoundError:
        return None

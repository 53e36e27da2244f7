"""Checkpoint writes: `train.checkpoint.save` (raw array bytes after a msgpack table) against
the packed format it replaced (flax's `msgpack_serialize` of the same leaves), in the same run;
and `train.checkpoint.load` of what it wrote (the checksum check included).

A training run saves `latest` (model, Adam moments, loop position) every `--checkpoint-minutes`
and `best` on every better epoch, so the cost of a save is paid many times. Both writers fsync
and rename, so the difference is the serialisation copy alone.

    python benchmarks/checkpoint.py --model M6-1 --repeat 5
"""

import argparse
import os
import tempfile
import time
from pathlib import Path

import jax
import numpy as np
import optax
from flax import nnx, serialization

from train import checkpoint, models


def packed_save(path: Path, state) -> None:
    """The previous format: every leaf packed into one msgpack map, then written."""
    flat = jax.tree_util.tree_flatten_with_path(jax.device_get(state))[0]
    leaves = {jax.tree_util.keystr(key): np.asarray(x) for key, x in flat}
    with open(path, "wb") as f:
        f.write(serialization.msgpack_serialize(leaves))
        f.flush()
        os.fsync(f.fileno())


def best_of(repeat: int, save) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        save()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="M6-1")
    parser.add_argument("--classes", type=int, default=75)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    model = models.build(args.model, args.classes, rngs=nnx.Rngs(0))
    optimizer = nnx.Optimizer(model, optax.adam(1e-4), wrt=nnx.Param)
    state = {"model": nnx.state(model), "optimizer": nnx.state(optimizer)}
    with tempfile.TemporaryDirectory() as tmp:
        ours, packed = Path(tmp) / "latest.msgpack", Path(tmp) / "packed.msgpack"
        t_ours = best_of(args.repeat, lambda: checkpoint.save(ours, state, {"step": 1}))
        t_packed = best_of(args.repeat, lambda: packed_save(packed, state))
        mb = ours.stat().st_size / 1e6
        t_load = best_of(args.repeat, lambda: checkpoint.load(ours, state))
        loaded, _ = checkpoint.load(ours, state)
        assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(loaded),
                                                        jax.tree.leaves(state), strict=True))
    print(f"{args.model}, {args.classes} classes, model + Adam state: {mb:.1f} MB, "
          f"best of {args.repeat}")
    print(f"packed (flax msgpack): {t_packed * 1e3:8.1f} ms  ({mb / t_packed:6.0f} MB/s)")
    print(f"raw (checkpoint.save): {t_ours * 1e3:8.1f} ms  ({mb / t_ours:6.0f} MB/s)  "
          f"{t_packed / t_ours:.1f}× faster")
    print(f"load (checkpoint.load): {t_load * 1e3:7.1f} ms  ({mb / t_load:6.0f} MB/s)")


if __name__ == "__main__":
    main()

"""The run folder: the one module that reads and writes what a training run leaves behind.

A run folder holds `config.json` (what was trained on what, written first),
`metrics.jsonl` (one JSON object per logging step, per epoch and for the final test),
`checkpoints/latest.msgpack` (model, optimizer and loop position), `checkpoints/best.msgpack`
(the model at its best validation accuracy) and what `etlkit evaluate` writes.
"""

import json
import os
from dataclasses import fields
from pathlib import Path

from flax import nnx

from etlkit.errors import EtlError

from . import checkpoint
from .config import Config, build, optimizer


class Run:
    """The files of one run folder. Only the primary process (process 0) writes them; with
    several hosts the folder must be on a filesystem they all see (they all read `latest`)."""

    def __init__(self, root: str | Path, primary: bool = True):
        self.root = Path(root)
        self.primary = primary
        self.config = self.root / "config.json"
        self.metrics = self.root / "metrics.jsonl"
        self.latest = self.root / "checkpoints" / "latest.msgpack"
        self.best = self.root / "checkpoints" / "best.msgpack"

    def read_config(self) -> dict:
        try:
            return json.loads(self.config.read_text("utf-8"))
        except FileNotFoundError:
            raise EtlError(f"{self.root}: not a training run (no config.json)") from None
        except ValueError as err:
            raise EtlError(f"{self.config}: unreadable ({err})") from None

    def log(self, record: dict) -> None:
        if self.primary:
            with open(self.metrics, "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")

    def save(self, path: Path, state, meta: dict) -> None:
        if self.primary:
            checkpoint.save(path, state, meta)

    def truncate_metrics(self, step: int) -> None:
        """Drop what a killed run logged after the checkpoint it is resumed from."""
        if not self.primary or not self.metrics.exists():
            return
        lines = self.metrics.read_text("utf-8").splitlines()
        kept = [ln for ln in lines if ln.strip() and json.loads(ln).get("step", 0) <= step
                and json.loads(ln).get("kind") != "test"]
        self.metrics.write_text("".join(ln + "\n" for ln in kept), "utf-8")



def write_json(doc: dict, path: Path) -> None:
    """Write a run folder's JSON file atomically, so a reader never sees half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(doc, ensure_ascii=False, indent=1) + "\n", "utf-8")
    os.replace(tmp, path)



def config_of(doc: dict) -> Config:
    """The `Config` a run's config.json (`doc`) was trained with, recipe defaults filled in."""
    names = {f.name for f in fields(Config)}
    return Config(**{k: v for k, v in doc["config"].items() if k in names}).with_recipe()


def load_model(root: str | Path, which: str = "best"):
    """(model with the `best` or `latest` weights, the run's config.json) for inference."""
    run = Run(root)
    doc = run.read_config()
    config = config_of(doc)
    model = build(config, doc["num_classes"])
    path = run.best if which == "best" else run.latest
    if which == "best":
        state, _ = checkpoint.load(path, nnx.state(model))
    else:
        opt, _ = optimizer(model, config, doc["steps_per_epoch"])
        state, _ = checkpoint.load(path, nnx.state((model, opt)))
        state = state[0]
    nnx.update(model, state)
    return model, doc

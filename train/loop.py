"""`fit`: the paper's training recipe over shards, with checkpoints, metrics and resumption.

A run folder holds `config.json` (what was trained on what, written first),
`checkpoints/latest.msgpack` (model, optimizer and loop position; rewritten every epoch and
every `checkpoint_minutes`), `checkpoints/best.msgpack` (the model at its best validation
accuracy) and `metrics.jsonl` (one JSON object per logging step, per epoch and for the final
test). `fit(..., resume=True)` reloads `latest` and replays the same data order and random keys
from there, so it ends with the same metrics as a run that was never stopped.
"""

import json
import math
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from etlkit import __version__
from etlkit.errors import EtlError
from etlkit.shards import open_shards

from . import checkpoint, models
from .data import Part, Prefetch, eval_batches, train_groups
from .progress import Progress
from .steps import Mesh, Steps


class Diverged(EtlError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


@dataclass(frozen=True)
class Config:
    """Everything that defines a run; the defaults are the paper's recipe (§5.1)."""

    shards: str
    model: str = "M7-2"
    batch_size: int = 16
    lr: float = 1e-4
    epochs: int = 40
    lr_step_epochs: int = 20  # learning rate x lr_decay every this many epochs
    lr_decay: float = 0.1
    patience: int = 5  # epochs without a better validation accuracy before stopping; 0: never
    precision: str = "fp32"  # fp32 | bf16
    augment: bool = False
    seed: int = 0
    conv_dropout: float = 0.5
    fc_dropout: float = 0.5
    steps_per_call: int = 0  # optimizer steps per jitted call; 0: see `group`
    eval_batch_size: int = 256
    log_every: int = 100  # steps between metrics.jsonl lines
    checkpoint_minutes: float = 10.0

    def group(self, backend: str) -> int:
        """Steps per call: 8 for small batches on accelerators, where dispatching each step
        would leave the device idle; 1 on CPU, where a step takes far longer than dispatch."""
        if self.steps_per_call:
            return self.steps_per_call
        return 8 if self.batch_size <= 64 and backend != "cpu" else 1

    def check(self) -> None:
        if self.precision not in ("fp32", "bf16"):
            raise EtlError(f"--precision must be fp32 or bf16, not {self.precision!r}")
        for name in ("batch_size", "epochs", "eval_batch_size", "log_every"):
            if getattr(self, name) < 1:
                raise EtlError(f"--{name.replace('_', '-')} must be at least 1")
        if not self.lr > 0:
            raise EtlError(f"--lr must be positive, not {self.lr}")
        models.spec(self.model)  # unknown names fail here, with the list of names


class Run:
    """The files of one run folder."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.config = self.root / "config.json"
        self.metrics = self.root / "metrics.jsonl"
        self.latest = self.root / "checkpoints" / "latest.msgpack"
        self.best = self.root / "checkpoints" / "best.msgpack"

    def read_config(self) -> dict:
        try:
            return json.loads(self.config.read_text("utf-8"))
        except FileNotFoundError:
            raise EtlError(f"{self.root}: not a training run (no config.json)") from None

    def log(self, record: dict) -> None:
        with open(self.metrics, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")

    def truncate_metrics(self, step: int) -> None:
        """Drop what a killed run logged after the checkpoint it is resumed from."""
        if not self.metrics.exists():
            return
        lines = self.metrics.read_text("utf-8").splitlines()
        kept = [ln for ln in lines if ln.strip() and json.loads(ln).get("step", 0) <= step
                and json.loads(ln).get("kind") != "test"]
        self.metrics.write_text("".join(ln + "\n" for ln in kept), "utf-8")


def build(config: Config, num_classes: int):
    """The model and its Adam optimizer with the step schedule, for `steps_per_epoch` steps."""
    dtype = jnp.bfloat16 if config.precision == "bf16" else jnp.float32
    return models.build(config.model, num_classes, rngs=nnx.Rngs(config.seed), dtype=dtype,
                        conv_dropout=config.conv_dropout, fc_dropout=config.fc_dropout)


def optimizer(model, config: Config, steps_per_epoch: int) -> nnx.Optimizer:
    schedule = optax.exponential_decay(config.lr, config.lr_step_epochs * steps_per_epoch,
                                       config.lr_decay, staircase=True)
    tx = optax.adam(schedule, b1=0.9, b2=0.999, eps=1e-8)
    return nnx.Optimizer(model, tx, wrt=nnx.Param), schedule


def fit(config: Config, out: str | Path, *, resume: bool = False, say=print,
        progress: bool = True) -> dict:
    """Train, keep the best model by validation accuracy, evaluate it on the test split."""
    config.check()
    run = Run(out)
    _prepare_folder(run, config, resume)
    train_set = open_shards(config.shards, "train")
    val_set, test_set = open_shards(config.shards, "val"), open_shards(config.shards, "test")
    _check_input(config, train_set)
    mesh = Mesh.create()
    for name, size in (("--batch-size", config.batch_size),
                       ("--eval-batch-size", config.eval_batch_size)):
        if size % mesh.size:
            raise EtlError(f"{name} {size} must be a multiple of the {mesh.size} devices")
    part = Part(train_set, jax.process_index(), jax.process_count())
    steps_per_epoch = part.steps_per_epoch(config.batch_size)
    if steps_per_epoch == 0:
        raise EtlError(f"{config.shards}: {len(train_set)} training records, fewer than one "
                       f"batch of {config.batch_size}")
    classes = train_set.classes
    model = build(config, len(classes))
    opt, schedule = optimizer(model, config, steps_per_epoch)
    steps = Steps(model, opt, config.seed, config.augment)
    loop = {"epoch": 0, "group": 0, "step": 0, "best_accuracy": None, "best_epoch": None,
            "bad_epochs": 0, "totals": None}
    state = steps.state
    if resume:
        state, loop = checkpoint.load(run.latest, state)
        run.truncate_metrics(loop["step"])
        say(f"resuming {run.root} at epoch {loop['epoch'] + 1}, step {loop['step']}")
    else:
        _write_config(run, config, train_set, classes, mesh, steps_per_epoch)
    state = mesh.replicate(state)
    group = config.group(jax.default_backend())
    val_part = Part(val_set, jax.process_index(), jax.process_count())
    bar = Progress(enabled=progress and jax.process_index() == 0)
    say(f"training {config.model} on {len(train_set)} images, {len(classes)} classes, "
        f"{steps_per_epoch} steps/epoch, {mesh.size} device(s)")
    last_save = time.monotonic()
    stop = False
    for epoch in range(loop["epoch"], config.epochs):
        if stop:
            break
        started = time.monotonic()
        calls = -(-steps_per_epoch // group)
        groups = Prefetch(train_groups(part, config.batch_size, group, config.seed, epoch,
                                       start_group=loop["group"]),
                          put=lambda b: mesh.batch(b, axis=1))
        totals = loop["totals"] or {"loss_sum": 0.0, "correct": 0, "seen": 0, "steps": 0}
        window = {"loss_sum": 0.0, "correct": 0, "seen": 0, "steps": 0, "t": time.monotonic()}
        pending = []
        bar.start_epoch(epoch, config.epochs, (calls - loop["group"]) * group)
        try:
            for call, batch in enumerate(groups, start=loop["group"]):
                state, metrics = steps.train_call(state, batch["images"], batch["labels"],
                                                  jnp.int32(loop["step"]))
                done = min(group, steps_per_epoch - call * group)
                loop["step"] += done
                loop["group"] = call + 1
                pending.append(metrics)
                if (loop["step"] // config.log_every != (loop["step"] - done) // config.log_every
                        or call == calls - 1):
                    _drain(pending, totals, window, run, bar, loop, epoch, schedule)
                if time.monotonic() - last_save > 60 * config.checkpoint_minutes:
                    _save_latest(run, state, loop, epoch, pending, totals, window, bar,
                                 schedule)
                    last_save = time.monotonic()
        finally:
            groups.close()
        _drain(pending, totals, window, run, bar, loop, epoch, schedule)
        val = _evaluate(steps, state[0], val_part, config.eval_batch_size, mesh)
        improved = loop["best_accuracy"] is None or val["accuracy"] > loop["best_accuracy"]
        if improved:
            loop.update(best_accuracy=val["accuracy"], best_epoch=epoch + 1, bad_epochs=0)
            checkpoint.save(run.best, state[0], {"epoch": epoch + 1, "step": loop["step"],
                                                 "val_accuracy": val["accuracy"]})
        else:
            loop["bad_epochs"] += 1
        record = {"kind": "epoch", "epoch": epoch + 1, "step": loop["step"],
                  "train_loss": totals["loss_sum"] / max(totals["steps"], 1),
                  "train_accuracy": totals["correct"] / max(totals["seen"], 1),
                  "val_loss": val["loss"], "val_accuracy": val["accuracy"],
                  "val_top5": val["top5"], "lr": float(schedule(loop["step"] - 1)),
                  "seconds": round(time.monotonic() - started, 2), "best": improved}
        run.log(record)
        bar.end_epoch()
        say(f"epoch {epoch + 1}/{config.epochs}: train loss {record['train_loss']:.4f} "
            f"acc {record['train_accuracy']:.2%}, val loss {val['loss']:.4f} "
            f"acc {val['accuracy']:.2%}{' (best)' if improved else ''}")
        loop.update(epoch=epoch + 1, group=0, totals=None)
        stop = bool(config.patience) and loop["bad_epochs"] >= config.patience
        if stop:
            say(f"early stop: validation accuracy has not improved for {config.patience} "
                f"epochs (best {loop['best_accuracy']:.2%} at epoch {loop['best_epoch']})")
            loop["epoch"] = config.epochs  # a resumed run is finished too
        checkpoint.save(run.latest, state, loop)
        last_save = time.monotonic()
    best_state, _ = checkpoint.load(run.best, steps.model_state())
    test = _evaluate(steps, mesh.replicate(best_state), Part(test_set, jax.process_index(),
                                                             jax.process_count()),
                     config.eval_batch_size, mesh)
    result = {"kind": "test", "step": loop["step"], "best_epoch": loop["best_epoch"],
              "test_loss": test["loss"], "test_accuracy": test["accuracy"],
              "test_top5": test["top5"], "compiles": dict(steps.traces)}
    run.log(result)
    say(f"test accuracy {test['accuracy']:.2%} (top-5 {test['top5']:.2%}) with the best "
        f"model (epoch {loop['best_epoch']})")
    return result


def _prepare_folder(run: Run, config: Config, resume: bool) -> None:
    if resume:
        saved = run.read_config()["config"]
        differ = [k for k, v in asdict(config).items() if saved.get(k) != v]
        if differ:
            raise EtlError(f"{run.root}: --resume must repeat the run's options; these differ: "
                           + ", ".join(f"{k} (run: {saved.get(k)!r}, now: "
                                       f"{getattr(config, k)!r})" for k in differ))
        if not run.latest.exists():
            raise EtlError(f"{run.latest}: no checkpoint to resume from")
        return
    if run.root.exists() and any(run.root.iterdir()):
        raise EtlError(f"{run.root}: already holds files; pass --resume to continue a run, "
                       "or choose an empty --out")
    (run.root / "checkpoints").mkdir(parents=True, exist_ok=True)


def _check_input(config: Config, train_set) -> None:
    size = models.spec(config.model).input_size
    with_size = train_set.manifest.get("image_size", 64)
    if size != with_size:
        raise EtlError(f"{config.model} takes {size}×{size} images; {config.shards} holds "
                       f"{with_size}×{with_size}")


def _write_config(run: Run, config: Config, train_set, classes, mesh: Mesh,
                  steps_per_epoch: int) -> None:
    manifest = train_set.manifest
    doc = {"config": asdict(config), "num_classes": len(classes),
           "classes": [list(c) for c in classes], "task": manifest.get("task"),
           "preprocessing": manifest.get("options", {}),
           "splits": manifest["splits"], "steps_per_epoch": steps_per_epoch,
           "parameters": models.count_params(config.model, len(classes)),
           "devices": mesh.size, "processes": jax.process_count(),
           "backend": jax.default_backend(), "etlkit_version": __version__,
           "jax_version": jax.__version__}
    tmp = run.config.with_name(".config.json.tmp")
    tmp.write_text(json.dumps(doc, ensure_ascii=False, indent=1), "utf-8")
    tmp.replace(run.config)


def _drain(pending, totals, window, run: Run, bar, loop, epoch, schedule) -> None:
    """Fetch the finished calls' metrics (one host sync), stop on NaN, log and show them."""
    if not pending:
        return
    fetched = jax.device_get(pending)
    pending.clear()
    for m in fetched:
        for k in ("loss_sum", "correct", "seen", "steps"):
            totals[k] += m[k].item()
            window[k] += m[k].item()
    loss = window["loss_sum"] / max(window["steps"], 1)
    if not math.isfinite(loss):
        good = checkpoint.peek_step(run.latest)
        raise Diverged(f"loss became {loss} at step {loop['step']} (epoch {epoch + 1}); "
                       f"stopped. The last good checkpoint is {run.latest}"
                       + (f" (step {good})" if good is not None else " (none was saved yet)")
                       + "; try a lower --lr")
    now = time.monotonic()
    record = {"kind": "train", "epoch": epoch + 1, "step": loop["step"], "loss": loss,
              "accuracy": window["correct"] / max(window["seen"], 1),
              "lr": float(schedule(loop["step"] - 1)),
              "images_per_s": round(window["seen"] / max(now - window["t"], 1e-9), 1)}
    run.log(record)
    bar.update(window["steps"], record)
    window.update(loss_sum=0.0, correct=0, seen=0, steps=0, t=now)


def _save_latest(run, state, loop, epoch, pending, totals, window, bar, schedule) -> None:
    """A mid-epoch checkpoint, taken only after the metrics so far are known to be finite."""
    _drain(pending, totals, window, run, bar, loop, epoch, schedule)
    checkpoint.save(run.latest, state, {**loop, "epoch": epoch, "totals": dict(totals)})


def _evaluate(steps: Steps, model_state, part: Part, batch_size: int, mesh: Mesh) -> dict:
    sums = {"loss_sum": 0.0, "correct": 0, "top5": 0, "count": 0}
    for batch in eval_batches(part, batch_size):
        b = mesh.batch(batch, axis=0)
        out = steps.eval_call(model_state, b["images"], b["labels"], b["mask"])
        for k in sums:
            sums[k] += out[k].item()
    n = max(sums["count"], 1)
    return {"loss": sums["loss_sum"] / n, "accuracy": sums["correct"] / n,
            "top5": sums["top5"] / n, "count": sums["count"]}


def load_model(root: str | Path, which: str = "best"):
    """(model with the `best` or `latest` weights, the run's config.json) for inference."""
    run = Run(root)
    doc = run.read_config()
    names = {f.name for f in fields(Config)}
    config = Config(**{k: v for k, v in doc["config"].items() if k in names})
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

"""`fit`: the paper's training recipe over shards, with checkpoints, metrics and resumption.

What it writes into the run folder, and in what shape, is `rundir`'s. `latest` is rewritten
every epoch and every `checkpoint_minutes`; `fit(..., resume=True)` reloads it and replays the
same data order and random keys from there, so it ends with the same metrics as a run that was
never stopped.
"""

import math
import time
import warnings
from dataclasses import asdict
from pathlib import Path

import jax
import jax.numpy as jnp
from jax.experimental import multihost_utils

from etlkit import __version__, remote
from etlkit.errors import EtlError, EtlWarning, is_finite_number, is_integer
from etlkit.shards import dataset_checksum, open_shards
from etlkit.verify import check_dataset

from . import models
from .config import Config, build, optimizer
from .data import Part, Prefetch, eval_batches, train_groups
from .inference.images import measure_framing
from .inference.model_facts import classes_checksum, shown
from .progress import Progress
from .rundir import RUN_ID, Run, check_trained_on, run_identity
from .steps import Mesh, StepOptions, Steps


class Diverged(EtlError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


def fit(config: Config, out: str | Path, *, resume: bool = False, say=print,
        progress: bool = True, verify: bool = True) -> dict:
    """Train, keep the best model by validation accuracy, evaluate it on the test split (a
    dataset without one gets a test record of nulls: nothing was measured).

    `verify` first checks the SHA-256 of every shard this process reads and the manifest
    (`etlkit.verify`), so a corrupt dataset is refused before the run folder is touched."""
    config = config.with_recipe()
    config.check()
    if config.schedule == "step" and config.lr_step_epochs and config.lr_decay > 1:
        warnings.warn(EtlWarning(f"--lr-decay {config.lr_decay:g} is above 1: it multiplies the "
                                 f"learning rate up every {config.lr_step_epochs} epoch(s)"),
                      stacklevel=2)
    if verify:
        check_dataset(config.shards, (jax.process_index(), jax.process_count()))
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
    run = Run(out, primary=jax.process_index() == 0)  # after every check of the input
    resume = _prepare_folder(run, config, train_set, resume, say)
    classes = train_set.classes
    model = build(config, len(classes))
    opt, schedule = optimizer(model, config, steps_per_epoch)
    steps = Steps(model, opt, config.seed, config.augment, StepOptions.of(config))
    loop = {"epoch": 0, "group": 0, "step": 0, "best_accuracy": None, "best_epoch": None,
            "bad_epochs": 0, "totals": None}
    state = steps.state
    group = config.group(jax.default_backend())
    calls = -(-steps_per_epoch // group)
    if resume:
        state, meta = run.load("latest", state)
        loop = _checked_position(meta, run.checkpoint("latest"), config, steps_per_epoch, calls)
        logged = run.logged_before(loop["epoch"], loop["step"])
        say(f"resuming {run.root} at epoch {loop['epoch'] + 1}, step {loop['step']}")
    else:
        _write_config(run, config, train_set, classes, mesh, steps_per_epoch)
    state = mesh.replicate(state)
    val_part = Part(val_set, jax.process_index(), jax.process_count())
    calibration = _calibration_batches(part, config, steps_per_epoch, mesh)
    if resume:
        run.open_log(loop["step"], logged)
    else:
        run.open_log()
    try:
        meter = _Meter(run, Progress(enabled=progress and run.primary), schedule)
        say(f"training {config.model} on {len(train_set)} images, {len(classes)} classes, "
            f"{steps_per_epoch} steps/epoch, {mesh.size} device(s)")
        last_save = time.monotonic()
        while loop["epoch"] < config.epochs:
            epoch, started = loop["epoch"], time.monotonic()
            meter.start_epoch(epoch, config.epochs, loop, (calls - loop["group"]) * group)
            groups = Prefetch(train_groups(part, config.batch_size, group, config.seed, epoch,
                                           start_group=loop["group"]),
                              put=lambda b: mesh.batch(b, axis=1))
            try:
                for call, batch in enumerate(groups, start=loop["group"]):
                    state, metrics = steps.train_call(state, batch["images"], batch["labels"],
                                                      jnp.int32(loop["step"]))
                    done = min(group, steps_per_epoch - call * group)
                    loop.update(step=loop["step"] + done, group=call + 1)
                    meter.add(metrics)
                    every = config.log_every
                    if loop["step"] // every != (loop["step"] - done) // every:
                        meter.log(loop)
                    if time.monotonic() - last_save > 60 * config.checkpoint_minutes:
                        meter.fetch(loop)  # only a state whose losses are finite is saved
                        run.save("latest", state, {**loop, "totals": dict(meter.totals)})
                        last_save = time.monotonic()
            finally:
                groups.close()
            meter.log(loop)
            state = steps.recalibrate(state, calibration)
            if len(val_set):
                val = _evaluate(steps, steps.eval_state(state), val_part, config.eval_batch_size,
                                mesh)
                improved = loop["best_accuracy"] is None or val["accuracy"] > loop["best_accuracy"]
            else:  # no validation split: the latest model is the one kept and tested
                val, improved = {"loss": None, "accuracy": None, "top5": None}, True
            if improved:
                loop.update(best_accuracy=val["accuracy"], best_epoch=epoch + 1, bad_epochs=0)
                run.save("best", steps.eval_state(state), {
                    "epoch": epoch + 1, "step": loop["step"], "val_accuracy": val["accuracy"]})
            else:
                loop["bad_epochs"] += 1
            record = {"epoch": epoch + 1, "step": loop["step"], **meter.epoch_means(),
                      "val/loss": val["loss"], "val/accuracy": val["accuracy"],
                      "val/top5": val["top5"], "epoch/lr": float(schedule(loop["step"] - 1)),
                      "epoch/seconds": round(time.monotonic() - started, 2), "epoch/best": improved}
            run.log(record)
            val_text = (f", val loss {val['loss']:.4f} acc {val['accuracy']:.2%}"
                        f"{' (best)' if improved else ''}" if len(val_set) else "")
            say(f"epoch {epoch + 1}/{config.epochs}: train loss {record['train/epoch_loss']:.4f} "
                f"acc {record['train/epoch_accuracy']:.2%}{val_text}")
            loop.update(epoch=epoch + 1, group=0, totals=None)
            if config.patience and loop["bad_epochs"] >= config.patience:
                say(f"early stop: validation accuracy has not improved for {config.patience} "
                    f"epochs (best {loop['best_accuracy']:.2%} at epoch {loop['best_epoch']})")
                loop["epoch"] = config.epochs  # a resumed run is finished too
            run.save("latest", state, loop)
            last_save = time.monotonic()
        if jax.process_count() > 1:  # every process reads what process 0 has written
            multihost_utils.sync_global_devices("best checkpoint written")
        if len(test_set):
            best_state, _ = run.load("best", steps.model_shapes)
            test = _evaluate(steps, mesh.replicate(best_state),
                             Part(test_set, jax.process_index(), jax.process_count()),
                             config.eval_batch_size, mesh)
        else:  # no test split (extract --test-frac 0, too few writers): nothing to measure
            test = {"loss": None, "accuracy": None, "top5": None}
        result = {"step": loop["step"], "test/loss": test["loss"],
                  "test/accuracy": test["accuracy"], "test/top5": test["top5"],
                  "test/best_epoch": loop["best_epoch"],
                  **{f"compiles/{name}": count for name, count in steps.traces.items()}}
        run.log(result)
    finally:
        run.close_log()
    if len(test_set):
        say(f"test accuracy {test['accuracy']:.2%} (top-5 {test['top5']:.2%}) with the best "
            f"model (epoch {loop['best_epoch']})")
    else:
        say(f"no test split: the best model (epoch {loop['best_epoch']}) was not tested")
    return result


def _checked_position(meta: dict, path: Path, config: Config, steps_per_epoch: int,
                      calls: int) -> dict:
    """The loop position a `latest` checkpoint's `meta` holds, every value checked against
    what this run can reach: a format-4 checkpoint's meta is outside its SHA-256, and an edited
    epoch, step or best accuracy would skip epochs, keep the wrong model or give a traceback."""
    total_steps = config.epochs * steps_per_epoch

    def whole(high: int, low: int = 0):
        return (lambda v: is_integer(v) and low <= v <= high,
                f"a whole number from {low} to {high}")

    def share(v) -> bool:
        return is_finite_number(v) and 0 <= v <= 1

    def totals(v) -> bool:
        return v is None or (isinstance(v, dict) and v.keys() == set(_Meter.KEYS) and all(
            is_finite_number(n) and n >= 0 for n in v.values()))

    checks = {
        "epoch": whole(config.epochs), "group": whole(calls), "step": whole(total_steps),
        "best_accuracy": (lambda v: v is None or share(v), "null or a number in [0, 1]"),
        "best_epoch": (lambda v: v is None or whole(config.epochs, 1)[0](v),
                       f"null or a whole number from 1 to {config.epochs}"),
        "bad_epochs": whole(config.epochs),
        "totals": (totals, f"null or non-negative numbers for {', '.join(_Meter.KEYS)}"),
    }
    if meta.keys() != checks.keys():
        raise EtlError(f"{path}: not the latest checkpoint of a run: its meta holds "
                       f"{', '.join(sorted(meta))}, not {', '.join(checks)}")
    for key, (valid, want) in checks.items():
        if not valid(meta[key]):
            raise EtlError(f"{path}: meta {key} must be {want}, not {shown(meta[key])}")
    return meta


class _Meter:
    """Training metrics: summed on the device per call, fetched (one host sync) only to log
    or checkpoint, checked for NaN when fetched, shown on the progress bar."""

    KEYS = ("loss_sum", "correct", "seen", "steps")

    def __init__(self, run: Run, bar: Progress, schedule):
        self.run, self.bar, self.schedule = run, bar, schedule
        self.pending: list = []

    def start_epoch(self, epoch: int, epochs: int, loop: dict, steps: int) -> None:
        self.epoch = epoch
        self.totals = dict(loop["totals"] or dict.fromkeys(self.KEYS, 0))
        self.window = dict.fromkeys(self.KEYS, 0)
        self.window_start = time.monotonic()
        self.bar.start_epoch(epoch, epochs, steps)

    def add(self, metrics: dict) -> None:
        self.pending.append(metrics)

    def fetch(self, loop: dict) -> None:
        for m in jax.device_get(self.pending):
            for k in self.KEYS:
                self.totals[k] += m[k].item()
                self.window[k] += m[k].item()
        self.pending.clear()
        loss = self.window["loss_sum"] / max(self.window["steps"], 1)
        if not math.isfinite(loss):
            self.bar.end_epoch()
            good = self.run.checkpoint_step("latest")
            kept = (f"The last good checkpoint is {self.run.checkpoint('latest')} (step {good})"
                    if good is not None else "No checkpoint was saved before it")
            raise Diverged(f"loss became {loss} at step {loop['step']} (epoch {self.epoch + 1}); "
                           f"stopped. {kept}" + self._advice(loop["step"]))

    def _advice(self, step: int) -> str:
        """What to lower: --lr, or --lr-decay where it made the learning rate grow."""
        lr = float(self.schedule(max(step - 1, 0)))
        if lr > float(self.schedule(0)) > 0:
            return f"; --lr-decay made the learning rate grow to {lr:.3g}: keep it at most 1"
        return "; try a lower --lr"

    def log(self, loop: dict) -> None:
        """One metrics.jsonl line for the steps since the last one."""
        self.fetch(loop)
        if not self.window["steps"]:
            return
        now = time.monotonic()
        record = {"epoch": self.epoch + 1, "step": loop["step"],
                  "train/loss": self.window["loss_sum"] / self.window["steps"],
                  "train/accuracy": self.window["correct"] / max(self.window["seen"], 1),
                  "train/lr": float(self.schedule(loop["step"] - 1)),
                  "train/images_per_s": round(self.window["seen"] / max(now - self.window_start,
                                                                   1e-9), 1)}
        self.run.log(record)
        self.bar.update(self.window["steps"], record)
        self.window = dict.fromkeys(self.KEYS, 0)
        self.window_start = now

    def epoch_means(self) -> dict:
        self.bar.end_epoch()
        return {"train/epoch_loss": self.totals["loss_sum"] / max(self.totals["steps"], 1),
                "train/epoch_accuracy": self.totals["correct"] / max(self.totals["seen"], 1)}


def _prepare_folder(run: Run, config: Config, train_set, resume: bool, say) -> bool:
    """Make `run` ready; return whether training resumes from its latest checkpoint. A run that
    stopped before its first checkpoint starts over, with or without --resume, so rerunning a
    command always works; a run with a checkpoint continues only with --resume, with the same
    options on the same dataset (`train_set`'s manifest, not only its path: one extracted again
    there would mix two datasets in one run)."""
    if run.root.exists() and not run.root.is_dir():
        raise EtlError(f"{run.root}: a file, not a folder; choose a new or empty --out")
    if run.started():
        if not resume:
            raise EtlError(f"{run.root}: holds a run (latest checkpoint at step "
                           f"{run.checkpoint_step('latest')}); pass --resume to continue it, "
                           "or choose another --out")
        doc = run.read_config()
        saved = doc["config"]
        differ = [k for k, v in asdict(config).items() if saved.get(k) != v]
        if differ:
            raise EtlError(f"{run.root}: --resume must repeat the run's options; these differ: "
                           + ", ".join(f"{k} (run: {saved.get(k)!r}, now: "
                                       f"{getattr(config, k)!r})" for k in differ))
        check_trained_on(train_set, doc, run.root)
        return True
    if not run.primary:
        return False
    if run.root.exists() and any(run.root.iterdir()):
        if not run.stopped_before_checkpoint():
            raise EtlError(f"{run.root}: holds files that are not a run of etlkit train; "
                           "choose a new or empty --out")
        say(f"{run.root}: its run stopped before its first checkpoint; starting it over")
        run.clear()
    run.checkpoints.mkdir(parents=True, exist_ok=True)
    return False


def _check_input(config: Config, train_set) -> None:
    size = models.spec(config.model).input_size
    with_size = train_set.manifest.get("image_size", 64)
    if size != with_size:
        raise EtlError(f"{config.model} takes {size}×{size} images; {config.shards} holds "
                       f"{with_size}×{with_size}")


def _write_config(run: Run, config: Config, train_set, classes, mesh: Mesh,
                  steps_per_epoch: int) -> None:
    manifest = train_set.manifest
    options = asdict(config)
    doc = {"config": options, RUN_ID: run_identity(options, dataset_checksum(manifest)),
           "num_classes": len(classes),
           "classes": [list(c) for c in classes],
           "classes_checksum": classes_checksum([list(c) for c in classes]),
           "task": manifest.get("task"),
           "image_size": train_set.info.image_size, "split_method": train_set.info.split_method,
           "preprocessing": train_set.info.preprocessing,
           "framing": measure_framing(train_set).to_json(), "dataset": _location(config.shards),
           "dataset_checksum": dataset_checksum(manifest),
           "splits": manifest["splits"], "steps_per_epoch": steps_per_epoch,
           "parameters": models.count_params(config.model, len(classes)),
           "devices": mesh.size, "processes": jax.process_count(),
           "backend": jax.default_backend(), "etlkit_version": __version__,
           "jax_version": jax.__version__}
    run.write_config(doc)


def _location(shards: str) -> str:
    """Where the dataset is, as config.json records it: absolute, so the run folder finds it
    from any directory (a URL as given)."""
    return shards if remote.is_url(shards) else str(Path(shards).resolve())


def _calibration_batches(part: Part, config: Config, steps_per_epoch: int, mesh: Mesh) -> list:
    """The first training images, in file order, as full global batches on the devices:
    the same on every epoch and every process count, so resumed runs see the same."""
    # whole training batches (so a multiple of the devices and processes): as many as fit an
    # evaluation batch and the epoch, and at least one, however large the training batch
    size = config.batch_size * min(steps_per_epoch,
                                   max(1, config.eval_batch_size // config.batch_size))
    local = part.local_batch(size)
    full = min(sum(part.counts(p)) // local for p in range(part.process_count))
    wanted = max(1, min(full, config.bn_calibration_images // size))
    batches = []
    for batch in eval_batches(part, size):
        if len(batches) == wanted:
            break
        batches.append(mesh.batch({"images": batch["images"]}, axis=0)["images"])
    return batches


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



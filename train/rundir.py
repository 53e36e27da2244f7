"""The run folder: the one module that reads and writes what a training run leaves behind.

A run folder holds:

- `config.json`: what was trained on what (options, classes, dataset, devices), written first;
  its `classes_checksum` key pins the class table, which is also compared with its dataset's
  manifest when that is reachable (a swapped table with its checksum recomputed passes its
  own), and `load_model` refuses one whose values inference cannot use
  (`check_for_inference`). Its `run_id` (`run_identity`) is stamped into every checkpoint's
  meta, and a checkpoint whose stamp differs is refused: one copied from another run of the
  same model would load, with this run's class table and numbers beside it, as is one of a
  checkpoint format older than the current (`run_id` came after it). Runs trained before
  `run_id` was written have it neither there nor in their checkpoints, and load.
- `metrics.jsonl`: one JSON object per line with flat keys namespaced by what they measure (the
  shape big_vision and TensorBoard use). Every record has `step` (optimizer steps done); there
  are three kinds, told apart by their keys (`kind_of`):
  - train, every `--log-every` steps and at each epoch's end: `step`, `epoch`, `train/loss`,
    `train/accuracy` (means over the steps since the previous train record), `train/lr`,
    `train/images_per_s`;
  - epoch, after each epoch: `step`, `epoch`, `train/epoch_loss`, `train/epoch_accuracy`
    (means over the epoch), `val/loss`, `val/accuracy`, `val/top5` (null without a validation
    split), `epoch/lr`, `epoch/seconds`, `epoch/best` (true when this epoch's model became
    `best`);
  - test, last: `step`, `test/loss`, `test/accuracy`, `test/top5` (the best model on the test
    split; null without a test split, as nothing was tested), `test/best_epoch`,
    `compiles/train`, `compiles/eval`, `compiles/calibrate` (how often each step function was
    compiled).
  A killed run may leave a cut-off last line; `records` drops it. A null is never a TensorBoard
  scalar.
- `events.out.tfevents.*`: the same numbers as TensorBoard scalars (tag = key, at `step`), so
  `tensorboard --logdir RUN` shows the run; a resumed run adds a file that tells TensorBoard
  to drop what the killed one logged after its checkpoint.
- `checkpoints/latest.msgpack` (model, optimizer and loop position) and
  `checkpoints/best.msgpack` (the model at its best validation accuracy), each meta with the
  run's `run_id`; see `checkpoint`.
- What `etlkit evaluate` writes (`evaluation_files`): `eval.json`, `confusion.png` and
  `misclassified.png` for the test split with the best model, `eval-SPLIT-WHICH.json`,
  `confusion-SPLIT-WHICH.png` and `misclassified-SPLIT-WHICH.png` for any other split or
  model, with `-ttaN` added for a test-time-augmented one (`--tta N`); `curves.png` from
  metrics.jsonl. `etlkit figures` writes into `figures/`.
"""

import hashlib
import json
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path

from flax import nnx
from tensorboardX import SummaryWriter

from etlkit import remote
from etlkit.errors import EtlError, EtlWarning, is_finite_number, is_integer, one_line
from etlkit.shards import ShardSet, dataset_checksum, read_manifest

from . import checkpoint, ema, models
from .config import Config, build, optimizer
from .inference.model_facts import check_classes, check_framing, check_pinned, refuse, shown

CHECKPOINTS = ("best", "latest")
RUN_ID = "run_id"  # the key of a run's identity in config.json and in its checkpoints' meta
#: What every config.json holds (`fit` writes more: devices, versions, parameter count).
CONFIG_KEYS = ("config", "dataset", "dataset_checksum", "task", "classes", "num_classes",
               "image_size", "split_method", "preprocessing", "framing", "steps_per_epoch")


#: The keys each kind of record must hold: those its readers (curves, figures, table, demo)
#: use. Of these, only the NULLABLE ones may be null (no validation or no test split).
RECORD_KEYS = {
    "train": ("epoch", "train/loss", "train/accuracy"),
    "epoch": ("epoch", "train/epoch_loss", "train/epoch_accuracy", "val/loss", "val/accuracy"),
    "test": ("test/loss", "test/accuracy", "test/top5", "test/best_epoch"),
}
TEST_NUMBERS = ("test/loss", "test/accuracy", "test/top5")
NULLABLE = ("val/loss", "val/accuracy", *TEST_NUMBERS)


def kind_of(record: dict) -> str:
    """Which of metrics.jsonl's three records this is: "train", "epoch" or "test"."""
    if "test/accuracy" in record:
        return "test"
    return "epoch" if "epoch/seconds" in record else "train"


@dataclass
class History:
    """metrics.jsonl by kind, in the order logged."""

    train: list[dict]
    epochs: list[dict]
    test: dict | None  # None until the run has finished


@dataclass(frozen=True)
class EvaluationFiles:
    """Where the evaluation of one split with one checkpoint is written."""

    report: Path
    confusion: Path
    misclassified: Path


class Run:
    """The files of one run folder. Only the primary process (process 0) writes them; with
    several hosts the folder must be on a filesystem they all see (they all read `latest`)."""

    def __init__(self, root: str | Path, primary: bool = True):
        self.root = Path(root)
        self.primary = primary
        self.config = self.root / "config.json"
        self.metrics = self.root / "metrics.jsonl"
        self.checkpoints = self.root / "checkpoints"
        self.curves = self.root / "curves.png"
        self.figures = self.root / "figures"
        self._events = None
        self._run_id = _UNREAD

    # --- config.json ------------------------------------------------------------------------

    def read_config(self) -> dict:
        """config.json, with every key inference needs (a run folder travels: its dataset's
        absolute location, class table, image facts and framing are all in it), its options
        an object and its steps per epoch a count every reader can divide by."""
        if self.root.exists() and not self.root.is_dir():  # `predict IMAGE IMAGE`: run forgotten
            raise EtlError(f"{self.root}: not a training run (a file, not a run folder)")
        try:
            doc = json.loads(remote.read_text(self.config))  # refuses a FIFO, a device
        except FileNotFoundError:
            raise EtlError(f"{self.root}: not a training run (no config.json)") from None
        except EtlError:
            raise  # names the file already
        except (ValueError, RecursionError) as err:  # RecursionError: JSON nested deep
            raise EtlError(f"{self.config}: unreadable ({err})") from None
        if not isinstance(doc, dict):
            raise EtlError(f"{self.config}: not a JSON object ({json.dumps(doc)[:20]})")
        missing = [k for k in CONFIG_KEYS if k not in doc]
        if missing:
            raise EtlError(f"{self.config}: no {', '.join(missing)}: written by an older "
                           "etlkit; train the run again")
        if not isinstance(doc["config"], dict):
            raise EtlError(f"{self.config}: config must be an object of the run's options, "
                           f"not {shown(doc['config'])}")
        steps = doc["steps_per_epoch"]
        if not (is_integer(steps) and steps >= 1):
            raise EtlError(f"{self.config}: steps_per_epoch must be a positive whole number, "
                           f"not {shown(steps)}")
        return doc

    def write_config(self, doc: dict) -> None:
        if self.primary:
            write_json(doc, self.config)
        self._run_id = doc.get(RUN_ID)

    def run_id(self) -> str | None:
        """config.json's run_id (read once), or None for a run trained before it was written."""
        if self._run_id is _UNREAD:
            self._run_id = self.read_config().get(RUN_ID)
        return self._run_id

    # --- metrics.jsonl and TensorBoard events -----------------------------------------------

    def records(self) -> list[dict]:
        """metrics.jsonl's records (none when it is missing); a cut-off last line, as a kill
        while writing leaves, is dropped, any other unreadable line is an error."""
        if self.metrics.exists() and not self.metrics.is_file():  # a FIFO would block
            raise EtlError(f"{self.metrics}: not a regular file")
        try:
            lines = self.metrics.read_bytes().splitlines()
        except FileNotFoundError:
            return []
        records = []
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line.decode("utf-8"), object_pairs_hook=checkpoint.unique_keys)
            except checkpoint.RepeatedKey as err:  # an edit hiding a value behind another
                raise EtlError(f"{self.metrics}: line {number} is not a metrics record (the key "
                               f"{err.key!r} appears twice)") from None
            except RecursionError:  # nested deeper than any write cut off could leave
                raise EtlError(f"{self.metrics}: line {number} is not a metrics record (JSON "
                               "nested too deep)") from None
            except ValueError:  # UnicodeDecodeError included
                if number == len(lines):
                    break
                raise EtlError(f"{self.metrics}: line {number} is not JSON") from None
            if not isinstance(record, dict):
                raise EtlError(f"{self.metrics}: line {number} is not a JSON object")
            problem = _record_problem(record)
            if problem:
                raise EtlError(f"{self.metrics}: line {number} is not a metrics record "
                               f"({problem})")
            records.append(record)
        return records

    def history(self) -> History:
        records = self.records()
        tests = [r for r in records if kind_of(r) == "test"]
        return History([r for r in records if kind_of(r) == "train"],
                       [r for r in records if kind_of(r) == "epoch"],
                       tests[-1] if tests else None)

    def logged_before(self, epoch: int, step: int) -> list[dict]:
        """metrics.jsonl's records up to a `latest` checkpoint taken after `epoch` whole
        epochs, at `step`: what a killed run logged after it, and a finished run's test record,
        are left out. A history that stops short of the checkpoint (the file cut or deleted) is
        refused, as is one without an epoch in its middle or with one twice (lines cut out or
        pasted): resuming would append to it and keep a hole or a repeat in the run's record."""
        kept = [r for r in self.records() if kind_of(r) != "test" and r["step"] <= step
                and r["epoch"] <= (epoch if kind_of(r) == "epoch" else epoch + 1)]
        epochs = [r["epoch"] for r in kept if kind_of(r) == "epoch"]
        last = max(epochs, default=0)
        if last != epoch:
            ends = f"ends at epoch {last}" if self.metrics.exists() else "is missing"
            raise EtlError(f"{self.metrics} {ends}; its checkpoint is at epoch {epoch}: "
                           "resuming would leave a hole in the run's history")
        if epochs != list(range(1, epoch + 1)):
            lacking = sorted(set(range(1, epoch + 1)) - set(epochs))
            wrong = (f"lacks epoch {lacking[0]}" if lacking else
                     f"holds epoch {next(e for e in epochs if epochs.count(e) > 1)} twice"
                     if len(set(epochs)) < len(epochs) else "holds its epochs out of order")
            raise EtlError(f"{self.metrics} {wrong} before its checkpoint at epoch {epoch}: "
                           "resuming would keep that in the run's history")
        return kept

    def open_log(self, resumed_at: int | None = None, kept: Sequence[dict] = ()) -> None:
        """Start logging; resuming from the checkpoint at step `resumed_at`, metrics.jsonl is
        first cut back to `kept` (`logged_before`) and TensorBoard told to drop what a killed
        run logged after it (purge_step)."""
        if not self.primary:
            return
        if resumed_at is not None:
            tmp = self.metrics.with_name(f".{self.metrics.name}.tmp")
            tmp.write_text("".join(json.dumps(r) + "\n" for r in kept), "utf-8")
            os.replace(tmp, self.metrics)
        self._events = SummaryWriter(str(self.root), purge_step=(
            None if resumed_at is None else resumed_at + 1))

    def log(self, record: dict) -> None:
        """Append one record to metrics.jsonl and its numbers to the TensorBoard events."""
        if not self.primary:
            return
        with open(self.metrics, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        for key, value in record.items():
            if key not in ("step", "epoch") and isinstance(value, int | float):
                self._events.add_scalar(key, value, record["step"])
        self._events.flush()

    def close_log(self) -> None:
        if self._events is not None:
            self._events.close()
            self._events = None

    # --- checkpoints ------------------------------------------------------------------------

    def checkpoint(self, which: str) -> Path:
        """checkpoints/best.msgpack or checkpoints/latest.msgpack."""
        if which not in CHECKPOINTS:
            raise EtlError(f"--which must be one of {', '.join(CHECKPOINTS)}, not {which!r}")
        return self.checkpoints / f"{which}.msgpack"

    def save(self, which: str, state, meta: dict) -> None:
        """Write the `which` checkpoint, its meta stamped with the run's run_id."""
        if self.primary:
            stamp = {} if self.run_id() is None else {RUN_ID: self.run_id()}
            checkpoint.save(self.checkpoint(which), state, {**meta, **stamp})

    def load(self, which: str, like) -> tuple[object, dict]:
        """(state shaped like `like`, meta without its stamp) of the `which` checkpoint,
        refused when its run_id is not config.json's (a checkpoint of another run) or when it
        is the other kind of checkpoint (one copied over the other); both are told before its
        structure, which differs in either case, is blamed on another model. A run with a
        run_id was saved in the current checkpoint format only, so an older one (format 3 has
        no checksum) is refused there: what rewrote it could have changed any weight."""
        path = self.checkpoint(which)
        stored = checkpoint.read(path, older=self.run_id() is None)
        meta = dict(stored.meta)
        if meta.pop(RUN_ID, None) != self.run_id():
            raise EtlError(f"{path}: belongs to another run (its run_id is not that of "
                           f"{self.config}): copy a run folder whole, not a checkpoint alone")
        held = checkpoint_kind(meta)
        if held not in (None, which):
            raise EtlError(f"{path}: holds {_HOLDS[held]}, not {_HOLDS[which]}")
        return checkpoint.restore(stored, like), meta

    def started(self) -> bool:
        """Whether the run has a checkpoint to continue from."""
        return self.checkpoint_step("latest") is not None

    def stopped_before_checkpoint(self) -> bool:
        """A run that stopped (failed, killed) before its first checkpoint: its folder holds
        only what `fit` writes before one (the first thing is an empty checkpoints/), so
        starting it over loses nothing."""
        if self.started():
            return False
        return all(p.name in self._EARLY or p.name.startswith("events.out.tfevents.")
                   for p in self.root.iterdir())

    def clear(self) -> None:
        """Remove what a run wrote before its first checkpoint (`stopped_before_checkpoint`)."""
        for path in self.root.iterdir():
            if path.is_dir():
                for inner in path.iterdir():
                    inner.unlink()
                path.rmdir()
            else:
                path.unlink()

    _EARLY = ("config.json", "metrics.jsonl", "checkpoints")

    def checkpoint_step(self, which: str) -> int | None:
        """The step the `which` checkpoint was taken at (read from its header alone), or None
        when there is none."""
        meta = checkpoint.peek(self.checkpoint(which))
        return None if meta is None else meta.get("step")

    # --- evaluations ------------------------------------------------------------------------

    def evaluation_files(self, split: str, which: str, views: int = 1) -> EvaluationFiles:
        """The test split with the best model keeps the plain names (eval.json, ...); every
        other evaluation is named by split and model, and by its test-time augmentation
        views, so none overwrites another."""
        tag = "" if (split, which) == ("test", "best") else f"-{split}-{which}"
        tag += f"-tta{views}" if views > 1 else ""
        return EvaluationFiles(self.root / f"eval{tag}.json", self.root / f"confusion{tag}.png",
                               self.root / f"misclassified{tag}.png")


_UNREAD = object()  # Run._run_id before config.json was read
_HOLDS = {"latest": "a training state (a latest checkpoint)", "best": "a best model"}
#: Meta keys only a `latest` checkpoint holds (the loop's position), and only a `best` one.
LATEST_ONLY, BEST_ONLY = ("group", "bad_epochs", "totals"), ("val_accuracy",)


def checkpoint_kind(meta: dict) -> str | None:
    """Which of a run's checkpoints a checkpoint's `meta` is of ("latest" or "best"), told by
    the keys only one of them writes; None for a meta with neither."""
    if any(key in meta for key in LATEST_ONLY):
        return "latest"
    return "best" if any(key in meta for key in BEST_ONLY) else None


def run_identity(options: dict, dataset_sum: str) -> str:
    """A run's run_id: the SHA-256 of its options (config.json's `config`) and its dataset's
    checksum, so runs that differ in any of them (another seed) have different ones. Derived,
    not random, so the same training writes the same bytes (and a resumed run keeps it, since
    --resume must repeat the options)."""
    text = json.dumps({"config": options, "dataset_checksum": dataset_sum}, sort_keys=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _record_problem(record: dict) -> str | None:
    """What makes a metrics.jsonl object unusable as a record (None when nothing does): the
    readers divide its step, read its kind's keys, format its numbers and show the test
    accuracy as a percentage."""
    if not (is_integer(record.get("step")) and is_integer(record.get("epoch", 0))):
        return "its step and epoch must be whole numbers"
    if record["step"] < 0 or record.get("epoch", 0) < 0:
        return "its step and epoch must not be negative"
    kind = kind_of(record)
    missing = [key for key in RECORD_KEYS[kind] if key not in record]
    if missing:
        return f"no {', '.join(missing)}"
    for key, value in record.items():
        if "/" in key and not (value is None or isinstance(value, bool | int | float)):
            return f"{key} must be a number, not {shown(value)}"
    for key in RECORD_KEYS[kind]:
        if record[key] is None and key not in NULLABLE:
            return f"{key} must be a number, not null"
    if kind == "test":
        tested = [record[key] is not None for key in TEST_NUMBERS]
        if any(tested) and not all(tested):
            return (f"{', '.join(TEST_NUMBERS)} must be all numbers, or all null (no test "
                    "split)")
    for key, value in record.items():  # shares: NaN or 99 would be plotted and compared
        if key.endswith(("accuracy", "/top5")) and value is not None and not (
                is_finite_number(value) and 0 <= value <= 1):
            return f"{key} must be a number in [0, 1], not {shown(value)}"
    return None


def write_json(doc: dict, path: Path) -> None:
    """Write a JSON file atomically, so a reader never sees half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(doc, ensure_ascii=False, indent=1) + "\n", "utf-8")
    os.replace(tmp, path)



def config_of(doc: dict, path: Path | None = None) -> Config:
    """The `Config` a run's config.json (`doc`) was trained with, recipe defaults filled in.
    With `path` (where `doc` was read), its values are checked as `train` checks its options:
    a hand edit (a key removed, a value of the wrong type or out of range) is one EtlError
    naming the file rather than a traceback later."""
    names = {f.name for f in fields(Config)}
    try:
        config = Config(**{k: v for k, v in doc["config"].items() if k in names}).with_recipe()
        if path is not None:
            config.check()
    except (TypeError, AttributeError, EtlError) as err:
        if path is None:
            raise
        raise EtlError(f"{path}: config: {one_line(str(err))}") from None
    return config


def check_for_inference(doc: dict, path: Path) -> None:
    """Refuse a config.json (`doc`, read from `path`) whose values inference could not use, as
    a hand edit leaves them: the model's name, the class table and the framing, each against
    what the network is (an EtlError naming the key, rather than a traceback or a silently
    wrong framing later). The class table and framing get the checks an export's metadata gets
    (`model_facts`); the class table is also compared with the trained-on dataset's, when that
    is reachable, since a swapped table with its checksum recomputed passes its own."""
    model = doc["config"].get("model") if isinstance(doc["config"], dict) else None
    if not isinstance(model, str):
        refuse(path, "config.model", "a model name", model)
    try:
        spec = models.spec(model)
    except ValueError as err:  # names the valid models
        raise EtlError(f"{path}: config.model: {err}") from None
    count = doc["num_classes"]
    if not is_integer(count) or count < 1:
        refuse(path, "num_classes", "a positive whole number", count)
    dataset = doc["dataset"]
    if not (isinstance(dataset, str) and dataset.strip() and dataset.isprintable()):
        refuse(path, "dataset", "the dataset's location", dataset)
    check_classes(doc["classes"], count, "num_classes", path)
    pinned = doc.get("classes_checksum")
    if pinned is not None:  # runs trained before it was written have none
        check_pinned(doc["classes"], pinned, path)
    check_classes_against_dataset(doc, path, warn_unreachable=pinned is None)
    check_framing(doc["framing"], spec.input_size, f"{model}'s input side", path)


def check_classes_against_dataset(doc: dict, path: Path, warn_unreachable: bool) -> None:
    """A config.json's class table (`doc`, read from `path`) against the manifest of the
    dataset it was trained on, when that is reachable and still the one trained on (its checksum
    is the run's `dataset_checksum`): the manifest alone is read, so this costs a small file.
    Else, with `warn_unreachable` (a config.json without `classes_checksum`), a warning that a
    swapped table, whose every entry stays valid, cannot be detected."""
    try:
        manifest = read_manifest(doc["dataset"])
    except (OSError, EtlError):
        manifest = None
    if manifest is not None and dataset_checksum(manifest) == doc["dataset_checksum"]:
        if manifest["classes"] != doc["classes"]:
            raise EtlError(f"{path}: classes differ from those of the dataset it was trained on "
                           f"({remote.join(doc['dataset'], 'manifest.json')}): the class table "
                           "was edited (entries swapped or changed) after training")
        return
    if warn_unreachable:
        warnings.warn(EtlWarning(f"{path}: no classes_checksum (an older etlkit wrote it), so a "
                                 "swapped class table cannot be detected"), stacklevel=3)


def check_trained_on(shards: ShardSet, doc: dict, root: str | Path) -> None:
    """Refuse `shards` unless they are of the dataset the run at `root` (its config.json
    `doc`) was trained on, as their manifest's checksum says: another extraction, or a
    config.json pointed at another dataset, would give numbers and pictures of something else.
    (Its class table was compared with that dataset's when the run was loaded:
    `check_for_inference`.)"""
    if dataset_checksum(shards.manifest) != doc["dataset_checksum"]:
        raise EtlError(f"{shards.root}: not the dataset {root} was trained on (its manifest "
                       "changed since: extracted again?); its numbers and figures would mean "
                       "nothing")


def load_model(root: str | Path, which: str = "best"):
    """(model with the `best` or `latest` weights, the run's config.json) for inference. A run
    whose training did not finish (killed, stopped by a NaN loss) is used with a warning that
    says so, rather than passed off as a finished model."""
    run = Run(root)
    doc = run.read_config()
    check_for_inference(doc, run.config)
    config = config_of(doc, run.config)
    history = run.history()
    if history.test is None:
        done = history.epochs[-1]["epoch"] if history.epochs else 0
        warnings.warn(EtlWarning(f"{run.root}: its training stopped after epoch {done} of "
                                 f"{config.epochs}, with no test result: an unfinished model "
                                 "(`etlkit train` with --resume continues it)"), stacklevel=2)
    # built abstractly: every weight comes from the checkpoint, so initialising them (dozens
    # of small programs compiled, seconds per process) would be thrown away
    if which == "best":
        model = nnx.eval_shape(lambda: build(config, doc["num_classes"]))
        state, _ = run.load("best", nnx.state(model))
        nnx.update(model, state)
        return model, doc

    def train_state():  # the train state; with an average of the weights (--ema) that is used
        model = build(config, doc["num_classes"])
        opt, _ = optimizer(model, config, doc["steps_per_epoch"])
        return model, opt, ema.initial(model) if config.ema else None

    model, opt, average = nnx.eval_shape(train_state)
    like = nnx.state((model, opt))
    state, _ = run.load(which, (like, average) if config.ema else like)
    nnx.update(model, state[0][0] if config.ema else state[0])
    if config.ema:
        nnx.update(model, state[1])
    return model, doc

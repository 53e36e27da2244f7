"""Run folders never end in a dead end: a train that fails on its input leaves no folder, one
killed before its first checkpoint is started over by the same command (with or without
--resume), and a folder of anything else, or a file, is refused before any work. A run folder
edited by hand (config.json values, checkpoint bytes) or put together from parts of other
runs (another run's checkpoint) is refused with one line naming what is wrong, never used to
print tracebacks, NaN probabilities or wrong labels."""

import hashlib
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import warnings
from pathlib import Path

import msgpack
import numpy as np
import pytest
from assertions import one_error_line
from PIL import Image
from typer.testing import CliRunner

from etlkit.cli import app
from etlkit.errors import EtlError
from etlkit.remote import TEXT_LIMIT
from etlkit.shards import load_manifest, open_shards
from train.inference.model_facts import classes_checksum
from train.rundir import Run, check_for_inference, kind_of, run_identity

runner = CliRunner()


def _args(shards, out, *extra):
    """One epoch of CNN-93k on `digits_shards`: about a second of training, so a kill right
    after the run starts lands well before its first checkpoint."""
    return ["train", str(shards), "--out", str(out), "--model", "CNN-93k", "--epochs", "1",
            "--no-progress", *extra]


def test_a_failed_start_leaves_no_folder(tmp_path):
    out = tmp_path / "run"
    one_error_line(runner.invoke(app, _args(tmp_path / "no-such-dataset", out)),
                   "no-such-dataset")
    assert not out.exists()


def test_a_run_killed_before_its_first_checkpoint_starts_over(digits_shards, tmp_path):
    out = tmp_path / "run"
    with subprocess.Popen([sys.executable, "-m", "etlkit", *_args(digits_shards, out)],
                          stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True) as process:
        for line in process.stderr:  # config.json is written; the first checkpoint is an epoch
            if line.startswith("training CNN-93k"):  # away
                break
        process.send_signal(signal.SIGKILL)  # leaving the block waits and closes the pipe
    run = Run(out)
    assert run.config.is_file() and not run.started() and run.stopped_before_checkpoint()
    for extra in ((), ("--resume",)):
        result = runner.invoke(app, _args(digits_shards, out, *extra))
        assert result.exit_code == 0, result.output
        if not extra:
            assert "stopped before its first checkpoint; starting it over" in result.stderr
    assert run.history().test is not None  # --resume found a finished run and tested it again
    one_error_line(runner.invoke(app, _args(digits_shards, out)), "holds a run",
                   "pass --resume")


def test_an_out_that_is_not_a_run_is_refused(digits_shards, tmp_path):
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "todo.txt").write_text("mine\n")
    one_error_line(runner.invoke(app, _args(digits_shards, notes)),
                   "holds files that are not a run")
    assert sorted(p.name for p in notes.iterdir()) == ["todo.txt"]
    one_error_line(runner.invoke(app, _args(digits_shards, notes / "todo.txt")),
                   "a file, not a folder")


def test_a_run_killed_before_writing_its_config_starts_over(digits_shards, tmp_path):
    out = tmp_path / "run"
    (out / "checkpoints").mkdir(parents=True)  # the first thing train writes
    result = runner.invoke(app, _args(digits_shards, out))
    assert result.exit_code == 0, result.output
    assert "starting it over" in result.stderr and Run(out).history().test is not None


def _copy(digits_run, tmp_path) -> Path:
    """A copy of the shared digits run to edit, and one of its test digits as a PNG beside it."""
    run = tmp_path / "run"
    shutil.copytree(digits_run, run)
    digit = open_shards(digits_run.parent / "mnist", "test").read(("images",))["images"][0]
    Image.fromarray(255 - digit).save(tmp_path / "digit.png")
    return run


def _set(doc: dict, key: str, value) -> None:
    """Set `key` (dotted: "framing.fill") in config.json's `doc`."""
    *parents, last = key.split(".")
    for parent in parents:
        doc = doc[parent]
    doc[last] = value


@pytest.mark.parametrize(("key", "value", "needle"), [
    ("framing.fill", 0, "framing.fill must be a number in (0, 1], not 0"),
    ("framing.fill", -1, "framing.fill must be a number in (0, 1], not -1"),
    ("framing.fill", math.nan, "framing.fill must be a number in (0, 1], not NaN"),
    ("framing.fill", "x", 'framing.fill must be a number in (0, 1], not "x"'),
    ("framing.size", 0, "framing.size must be 28 (CNN-93k's input side), not 0"),
    ("framing.size", 64, "framing.size must be 28 (CNN-93k's input side), not 64"),
    ("framing.mass_at", [1], "framing.mass_at must be null or [row, column]"),
    ("framing.otsu", "no", 'framing.otsu must be true or false, not "no"'),
    ("framing", {}, "framing.fill is missing"),
    ("classes", [["0", 48], ["1", 49], ["2", 50]],
     "classes must hold num_classes (10) [character, code] pairs, not 3 entries"),
    ("classes", [[str(d), 48 + d] for d in range(9)] + [7],
     "classes[9] must be a [character, Shift-JIS code] pair, not 7"),
    ("classes", {"0": 48}, 'classes must hold num_classes (10) [character, code] pairs, not {"0"'),
    ("num_classes", "ten", 'num_classes must be a positive whole number, not "ten"'),
    ("config.model", "NOPE", "config.model: unknown model 'NOPE'; valid names:"),
    ("config.seed", "x", "config: --seed must be a non-negative integer"),
    ("config.eval_batch_size", 0, "config: --eval-batch-size must be a positive integer"),
    ("config.precision", "fp8", "config: --precision must be fp32 or bf16, not 'fp8'"),
    ("config.shards", None, "config: "),
    ("dataset", "", 'dataset must be the dataset\'s location, not ""'),
    ("steps_per_epoch", 0, "steps_per_epoch must be a positive whole number, not 0"),
    ("steps_per_epoch", "x", 'steps_per_epoch must be a positive whole number, not "x"'),
    ("steps_per_epoch", None, "steps_per_epoch must be a positive whole number, not null"),
    ("config.eval_batch_size", 10**12,
     "config: --eval-batch-size must be a positive integer up to 16384, not 1000000000000"),
    ("config", [], "config must be an object of the run's options, not []"),
    ("classes_checksum", "0" * 64, "classes differ from classes_checksum"),
], ids=["fill-0", "fill-negative", "fill-nan", "fill-text", "size-0", "size-64", "mass_at-one",
        "otsu-text", "framing-empty", "classes-cut", "classes-not-pairs", "classes-not-list",
        "num_classes-text", "model-unknown", "seed-text", "eval-batch-0", "precision-unknown",
        "shards-null", "dataset-empty", "steps-0", "steps-text", "steps-null", "eval-batch-huge",
        "config-list", "classes-checksum"])
def test_a_hand_edited_config_is_refused_naming_the_key(digits_run, tmp_path, key, value,
                                                        needle):
    run = _copy(digits_run, tmp_path)
    doc = json.loads((run / "config.json").read_text("utf-8"))
    _set(doc, key, value)
    (run / "config.json").write_text(json.dumps(doc), "utf-8")
    one_error_line(runner.invoke(app, ["predict", str(run), str(tmp_path / "digit.png")]),
                   f"{run / 'config.json'}: {needle}")


@pytest.mark.parametrize("dataset", ["reachable", "gone"])
@pytest.mark.parametrize("checksum", ["removed", "recomputed"])
def test_a_swapped_class_table_is_checked_against_its_dataset(digits_run, tmp_path, dataset,
                                                              checksum):
    """Two whole entries of config.json's class table swapped, which keeps each valid, in a run
    trained before config.json pinned its table (no classes_checksum) or with the checksum
    recomputed to match: refused by every command that loads the run when the dataset it was
    trained on is there to compare with. When it is not, a run without a checksum is used with
    a warning that says so, one with a checksum as it is (it passes its own)."""
    run = _copy(digits_run, tmp_path)
    config = run / "config.json"
    doc = json.loads(config.read_text("utf-8"))
    classes = doc["classes"]
    classes[1], classes[8] = classes[8], classes[1]
    if checksum == "removed":
        del doc["classes_checksum"]
    else:
        doc["classes_checksum"] = classes_checksum(classes)
    if dataset == "gone":
        doc["dataset"] = str(tmp_path / "moved")
    config.write_text(json.dumps(doc), "utf-8")
    digit = str(tmp_path / "digit.png")
    if dataset == "gone":
        result = runner.invoke(app, ["predict", str(run), digit, "--top", "1"])
        assert result.exit_code == 0 and result.stdout.startswith(f"{digit}\n  1. ")
        assert result.stderr == ("" if checksum == "recomputed" else
                                 f"warning: {config}: no classes_checksum (an older etlkit "
                                 "wrote it), so a swapped class table cannot be detected\n")
        return
    manifest = digits_run.parent / "mnist" / "manifest.json"
    for args in (["predict", str(run), digit], ["export", str(run), "--out", str(tmp_path / "x")],
                 ["serve", str(run), "--port", "0"], ["evaluate", str(run)],
                 ["figures", str(run)]):
        one_error_line(runner.invoke(app, args), f"{config}: classes differ from those of the "
                       f"dataset it was trained on ({manifest}): the class table was edited")
    assert not (tmp_path / "x").exists()
    assert sorted(p.name for p in run.iterdir()) == sorted(p.name for p in digits_run.iterdir())
    classes[1], classes[8] = classes[8], classes[1]  # the table as trained: no word about it
    if checksum == "recomputed":
        doc["classes_checksum"] = classes_checksum(classes)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_for_inference(doc, config)


def test_a_checkpoint_whose_bytes_changed_is_refused(digits_run, tmp_path):
    """Weights overwritten in place (the file's length unchanged) fail the checkpoint's
    checksum, in every command that loads it, rather than giving NaN probabilities."""
    run = _copy(digits_run, tmp_path)
    best = run / "checkpoints" / "best.msgpack"
    whole = best.read_bytes()
    flipped, nans = bytearray(whole), bytearray(whole)
    flipped[len(whole) // 2] ^= 1
    nans[-4000:-40] = np.full(990, np.nan, np.float32).tobytes()
    needle = f"{best}: corrupt checkpoint: its data differs from its checksum"
    for changed in (flipped, nans):
        best.write_bytes(bytes(changed))
        one_error_line(runner.invoke(app, ["predict", str(run), str(tmp_path / "digit.png")]),
                       needle)
    one_error_line(runner.invoke(app, ["evaluate", str(run)]), needle)
    result = runner.invoke(app, ["predict", str(run), str(tmp_path / "digit.png"),
                                 "--which", "latest"])
    assert result.exit_code == 0, result.output  # the other checkpoint is whole


def test_a_checkpoint_of_another_run_is_refused(digits_run, tmp_path):
    """Checkpoints copied from another run of the same model (another --seed: the same shapes)
    loaded, and evaluate's accuracy then disagreed with metrics.jsonl's: refused by every
    command that loads one, train --resume included. Here the checkpoints are digits_run's
    and config.json is that of the same training with --seed 1."""
    run = _copy(digits_run, tmp_path)
    _as_seed_1(run)
    best, latest = run / "checkpoints" / "best.msgpack", run / "checkpoints" / "latest.msgpack"
    digit = str(tmp_path / "digit.png")
    for args, path in ((["predict", str(run), digit], best), (["evaluate", str(run)], best),
                       (["export", str(run), "--out", str(tmp_path / "x")], best),
                       (["figures", str(run)], best),
                       (["predict", str(run), digit, "--which", "latest"], latest),
                       ([*_resume(digits_run, run), "--seed", "1"], latest)):
        one_error_line(runner.invoke(app, args), f"{path}: belongs to another run (its run_id "
                       f"is not that of {run / 'config.json'})")
    assert not (tmp_path / "x").exists()
    assert sorted(p.name for p in run.iterdir()) == sorted(p.name for p in digits_run.iterdir())


def _as_seed_1(run: Path) -> None:
    """Make `run`'s config.json that of the same training with --seed 1, its run_id too, so
    that its checkpoints are another run's."""
    doc = json.loads((run / "config.json").read_text("utf-8"))
    doc["config"]["seed"] = 1
    doc["run_id"] = run_identity(doc["config"], doc["dataset_checksum"])
    (run / "config.json").write_text(json.dumps(doc), "utf-8")


@pytest.mark.parametrize(("copied", "over", "other_run", "needle"), [
    ("latest", "best", False, "holds a training state (a latest checkpoint), not a best model"),
    ("best", "latest", False, "holds a best model, not a training state (a latest checkpoint)"),
    ("latest", "best", True, "belongs to another run"),
], ids=["latest-as-best", "best-as-latest", "another-runs-latest-as-best"])
def test_a_checkpoint_copied_over_the_other_is_named_for_what_it_holds(
        digits_run, tmp_path, copied, over, other_run, needle):
    """A run's own latest.msgpack copied over its best.msgpack was "a checkpoint of another
    model" (a training state holds the optimizer's arrays too): its meta tells which kind of
    checkpoint it is, and the run_id, compared first, tells another run's."""
    run = _copy(digits_run, tmp_path)
    if other_run:
        _as_seed_1(run)
    target = run / "checkpoints" / f"{over}.msgpack"
    shutil.copyfile(run / "checkpoints" / f"{copied}.msgpack", target)
    one_error_line(runner.invoke(app, ["predict", str(run), str(tmp_path / "digit.png"),
                                       "--which", over]), f"{target}: {needle}")


def _non_finite(value: float):
    """An `edit_body` that overwrites weights near the end of the arrays with `value`."""
    def edit(body: bytearray) -> bytes:
        body[-4000:-40] = np.full(990, value, np.float32).tobytes()
        return bytes(body)
    return edit


@pytest.mark.parametrize("value", [math.nan, math.inf], ids=["nan", "inf"])
def test_a_checkpoint_re_signed_over_non_finite_weights_is_refused(digits_run, tmp_path,
                                                                   value):
    """Weights set to NaN or infinity with the checkpoint's SHA-256 recomputed over them (a
    consistent forgery) loaded: predict printed `nan` probabilities with exit 0, and evaluate
    and export went on. Every load checks that the weights are finite."""
    run = _copy(digits_run, tmp_path)
    best = run / "checkpoints" / "best.msgpack"
    _rewrite_checkpoint(best, edit_body=_non_finite(value))
    for args in (["predict", str(run), str(tmp_path / "digit.png")], ["evaluate", str(run)],
                 ["export", str(run), "--out", str(tmp_path / "x")]):
        one_error_line(runner.invoke(app, args), f"{best}: corrupt checkpoint: parameter ",
                       "holds NaN or infinity, which no trained model has")
    assert not (tmp_path / "x").exists()


def test_resume_refuses_a_dataset_extracted_again(digits_run, tmp_path):
    """A dataset extracted again at the run's path (another seed: another split) was trained
    on from the checkpoint on, without a word, mixing two datasets in one run that evaluate
    then refused. config.json keeps the checksum of the manifest the run started on; here it
    is another extraction's, as after `extract --force` there."""
    run = _copy(digits_run, tmp_path)
    _edit_config(run, "dataset_checksum", hashlib.sha256(b"another extraction").hexdigest())
    metrics = (run / "metrics.jsonl").read_bytes()
    one_error_line(runner.invoke(app, _resume(digits_run, run)),
                   f"{digits_run.parent / 'mnist'}: not the dataset {run} was trained on (its "
                   "manifest changed since: extracted again?)")
    assert (run / "metrics.jsonl").read_bytes() == metrics


def _through_epoch_1(path: Path) -> None:
    """metrics.jsonl cut after its first epoch record (a bad copy, a full disk)."""
    lines = path.read_text("utf-8").splitlines(keepends=True)
    path.write_text("".join(lines[:next(i for i, line in enumerate(lines)
                                        if "epoch/seconds" in line) + 1]), "utf-8")


def _edit_epoch_lines(edit):
    """metrics.jsonl with its epoch records' lines edited by `edit(lines, at)` (`at`: their
    line numbers), as lines cut out of its middle or pasted twice leave it."""
    def change(path: Path) -> None:
        lines = path.read_text("utf-8").splitlines(keepends=True)
        at = [i for i, line in enumerate(lines) if "epoch/seconds" in line]
        path.write_text("".join(edit(lines, at)), "utf-8")
    return change


@pytest.mark.parametrize(("cut", "needle"), [
    (_through_epoch_1, "metrics.jsonl ends at epoch 1; its checkpoint is at epoch 3"),
    (Path.unlink, "metrics.jsonl is missing; its checkpoint is at epoch 3"),
    (_edit_epoch_lines(lambda lines, at: lines[:at[1]] + lines[at[1] + 1:]),
     "metrics.jsonl lacks epoch 2 before its checkpoint at epoch 3"),
    (_edit_epoch_lines(lambda lines, at: lines[:at[1]] + [lines[at[0]]] + lines[at[1]:]),
     "metrics.jsonl holds epoch 1 twice before its checkpoint at epoch 3"),
    (_edit_epoch_lines(lambda lines, at: lines[::-1]),
     "metrics.jsonl holds its epochs out of order before its checkpoint at epoch 3"),
], ids=["cut", "deleted", "middle epoch cut out", "an epoch pasted twice", "reversed"])
def test_resume_refuses_a_history_that_stops_short_of_its_checkpoint(digits_run, tmp_path,
                                                                      cut, needle):
    """metrics.jsonl cut, deleted, or an epoch cut out of its middle or pasted twice: --resume
    appended to it, and the epochs missing (or twice) stayed so in the run's record (curves,
    Fig. 4, TensorBoard)."""
    run = _copy(digits_run, tmp_path)
    cut(run / "metrics.jsonl")
    kept = sorted(run.rglob("*"))
    one_error_line(runner.invoke(app, _resume(digits_run, run)), f"{run}/{needle}")
    assert sorted(run.rglob("*")) == kept


def test_resume_keeps_the_history_up_to_its_checkpoint(digits_run, tmp_path):
    """What --resume keeps of metrics.jsonl: a cut-off last line (a kill while writing) is
    dropped, not refused, as is the test record of a finished run; a checkpoint taken at an
    epoch's last step, before its epoch record, keeps that epoch's train records, not a record
    of the epoch (which would then be logged twice)."""
    run = Run(_copy(digits_run, tmp_path))
    records = run.records()
    epochs = [r for r in records if kind_of(r) == "epoch"]
    with open(run.metrics, "a", encoding="utf-8") as f:
        f.write('{"step": 30')
    assert run.logged_before(3, epochs[2]["step"]) == records[:-1]
    assert run.logged_before(2, epochs[1]["step"]) == records[:records.index(epochs[1]) + 1]
    assert run.logged_before(2, epochs[2]["step"]) == records[:records.index(epochs[2])]


def _edit_config(run: Path, key: str, value) -> None:
    doc = json.loads((run / "config.json").read_text("utf-8"))
    _set(doc, key, value)
    (run / "config.json").write_text(json.dumps(doc), "utf-8")


def test_every_command_refuses_a_config_its_readers_cannot_divide_by(digits_run, tmp_path):
    """evaluate and figures divided by steps_per_epoch (a ZeroDivisionError, after figures had
    written three figures); train --resume took a list of options for a dict."""
    run = _copy(digits_run, tmp_path)
    _edit_config(run, "steps_per_epoch", 0)
    needle = f"{run / 'config.json'}: steps_per_epoch must be a positive whole number, not 0"
    for command in (["evaluate", str(run)], ["figures", str(run)]):
        one_error_line(runner.invoke(app, command), needle)
    assert not (run / "figures").exists()
    _edit_config(run, "config", [])
    one_error_line(runner.invoke(app, _resume(digits_run, run)),
                   f"{run / 'config.json'}: config must be an object of the run's options")


@pytest.mark.parametrize("special", ["fifo", "zero", "folder"])
def test_a_config_or_manifest_that_is_not_a_regular_file_is_refused(digits_run, tmp_path,
                                                                    special):
    """A FIFO blocked every command for ever and /dev/zero read until memory ran out, for a
    run's config.json and a dataset's manifest.json alike."""
    run = _copy(digits_run, tmp_path)
    dataset = shutil.copytree(digits_run.parent / "mnist", tmp_path / "mnist")
    for path in (run / "config.json", dataset / "manifest.json"):
        path.unlink()
        {"fifo": os.mkfifo, "zero": lambda p: p.symlink_to("/dev/zero"),
         "folder": Path.mkdir}[special](path)
    one_error_line(runner.invoke(app, ["predict", str(run), str(tmp_path / "digit.png")]),
                   f"{run / 'config.json'}: not a regular file")
    # a manifest linked out of the dataset folder is not read, whatever it leads to
    why = ("a link that leads out of the dataset folder; not read" if special == "zero" else
           "not a regular file")
    one_error_line(runner.invoke(app, ["train", str(dataset), "--model", "FF-baseline",
                                       "--out", str(tmp_path / "new")]),
                   f"{dataset / 'manifest.json'}: {why}")
    with pytest.raises(EtlError, match=f"manifest.json: {why}"):
        load_manifest(dataset)  # the library path, which the CLI's check guarded alone


def test_a_config_or_manifest_too_large_to_be_one_is_refused(digits_run, tmp_path):
    run = _copy(digits_run, tmp_path)
    with open(run / "config.json", "r+b") as f:  # sparse: costs no disk
        f.truncate(TEXT_LIMIT + 1)
    one_error_line(runner.invoke(app, ["predict", str(run), str(tmp_path / "digit.png")]),
                   f"{run / 'config.json'}: larger than 64 MiB")


def _resume(digits_run, run: Path) -> list[str]:
    """train --resume with the options `digits_run` was trained with (conftest)."""
    return ["train", str(digits_run.parent / "mnist"), "--out", str(run), "--model", "CNN-93k",
            "--epochs", "3", "--batch-size", "32", "--lr", "1e-3", "--no-progress", "--resume"]


def _rewrite_checkpoint(path: Path, *, format_as: int = 5, edit_meta=None, edit_meta_text=None,
                        edit_table=None, edit_body=None, edit_header=None,
                        sha256=True) -> None:
    """Rewrite the checkpoint at `path` with its meta and table edited, its arrays' bytes
    as they were. With `format_as` 4, as format 4 wrote it (its SHA-256 covering the arrays
    alone, recomputed), with 3 as format 3 did (no SHA-256), else with the format-5 header as
    saved; `sha256=False` nulls it. `edit_meta_text` edits the meta's JSON text.
    `edit_body` changes the arrays' bytes (`bytes`: none) and re-signs them: a format-5
    SHA-256 recomputed over the edited meta, table and bytes, as a forger would.
    `edit_header` edits the header last."""
    data = path.read_bytes()
    unpacker = msgpack.Unpacker()
    unpacker.feed(data)
    header = unpacker.unpack()
    table = unpacker.unpack()
    body = data[unpacker.tell():]
    assert header["format"] == "etlkit-checkpoint-5"
    meta = json.loads(header["meta"])
    if edit_meta:
        edit_meta(meta)
    if edit_table:
        edit_table(table)
    header["meta"] = json.dumps(meta)
    if edit_meta_text:
        header["meta"] = edit_meta_text(header["meta"])
    if edit_body:
        body = edit_body(bytearray(body))
        header["sha256"] = hashlib.sha256(msgpack.packb(header["meta"]) + msgpack.packb(table)
                                          + body).hexdigest()
    if format_as == 4:
        header.update(format="etlkit-checkpoint-4", sha256=hashlib.sha256(body).hexdigest())
    if format_as == 3:
        header["format"] = "etlkit-checkpoint-3"
        del header["sha256"]
    if not sha256:
        header["sha256"] = None
    if edit_header:
        edit_header(header)
    path.write_bytes(msgpack.packb(header) + msgpack.packb(table) + body)


def _as_old_run(run: Path) -> None:
    """Make `run`'s config.json that of a run trained before run_id was written."""
    doc = json.loads((run / "config.json").read_text("utf-8"))
    del doc["run_id"]
    (run / "config.json").write_text(json.dumps(doc), "utf-8")


def _no_run_id(edit=None):
    """An `edit_meta` that removes the run_id, as checkpoints before it were, then `edit`s."""
    def drop(meta: dict) -> None:
        meta.pop("run_id")
        if edit:
            edit(meta)
    return drop


def _float_to_int(table: list) -> None:
    """The first float32 leaf's dtype changed to int32: the same size, so the same bytes."""
    next(entry for entry in table if entry[1] == "float32")[1] = "int32"


def _first_shaped(table: list) -> list:
    """The table's first entry of a leaf with at least one axis."""
    return next(entry for entry in table if entry[2])


def _shape_entries(edit):
    """An `edit_table` that writes the first shaped leaf's shape entries through `edit`."""
    def rewrite(table: list) -> None:
        entry = _first_shaped(table)
        entry[2] = [edit(n) for n in entry[2]]
    return rewrite


def _dtype_named(name: str):
    """An `edit_table` that names the first shaped leaf's dtype `name`."""
    return lambda table: _first_shaped(table).__setitem__(1, name)


def _scalar_as_bool_shape(table: list) -> None:
    """A scalar leaf's shape () written [true]: the same one value, but no shape save writes."""
    next(entry for entry in table if entry[2] == [])[2] = [True]


def _duplicate_last_leaf() -> dict:
    """`_rewrite_checkpoint` edits that append a copy of the last leaf, its table entry and its
    bytes, re-signed: a consistent table with one key path twice."""
    last = {}

    def table_edit(table: list) -> None:
        last["entry"] = table[-1]
        table.append(table[-1])

    def body_edit(body: bytearray) -> bytes:
        _, dtype, shape = last["entry"]
        return bytes(body) + bytes(body[-np.dtype(dtype).itemsize * math.prod(shape):])
    return {"edit_table": table_edit, "edit_body": body_edit}


def _zeroed(body: bytearray) -> bytes:
    return bytes(len(body))


@pytest.mark.parametrize(("edit", "needle"), [
    ({"edit_meta": lambda m: m.update(epoch=1)}, "its data differs from its checksum"),
    ({"edit_table": _float_to_int}, "its data differs from its checksum"),
    ({"format_as": 4, "old_run": True, "edit_meta": _no_run_id(), "edit_table": _float_to_int},
     "is int32, the model needs float32"),
    ({"sha256": False}, "its header has no SHA-256 of its data"),
    ({"format_as": 4, "sha256": False}, "its header has no SHA-256 of its data"),
    # a bit flipped in the meta's JSON was "not an etlkit checkpoint of this version"
    ({"edit_meta_text": lambda _: '{"epoch": 2'},
     "corrupt checkpoint: its header's meta is not a JSON object"),
    # a run with a run_id was saved in format 5: a format-3 file (no checksum) there, its
    # weights zeroed, loaded with a warning only
    ({"format_as": 3, "edit_body": _zeroed}, "corrupt checkpoint: of the older format "
     "etlkit-checkpoint-3, but its run was saved in etlkit-checkpoint-5 only"),
    ({"format_as": 4}, "of the older format etlkit-checkpoint-4"),
    # re-signed tables and headers no save writes loaded (a float shape read as a whole one)
    (_duplicate_last_leaf(), ("corrupt checkpoint: table entry ", " appears twice")),
    ({"edit_table": _shape_entries(lambda n: n + 0.5), "edit_body": bytes},
     ("corrupt checkpoint: table entry ", " has shape [", ".5", "not a list of whole numbers")),
    ({"edit_table": _shape_entries(lambda n: -n), "edit_body": bytes},
     ("corrupt checkpoint: table entry ", " has shape [-", "not a list of whole numbers")),
    ({"edit_table": _scalar_as_bool_shape, "edit_body": bytes},
     ("corrupt checkpoint: table entry ", " has shape [True], not a list of whole numbers")),
    ({"edit_table": _dtype_named("f4"), "edit_body": bytes},
     ("corrupt checkpoint: table entry ", " has dtype 'f4', not the name of a bool, integer")),
    # dtypes of no size: np.frombuffer's traceback
    *(({"edit_table": _dtype_named(name), "edit_body": bytes},
       ("corrupt checkpoint: table entry ", f" has dtype '{name}', not the name of a bool, "
        "integer or float dtype")) for name in ("void", "str", "bytes")),
    ({"edit_header": lambda h: h.update(note="x")},
     "corrupt checkpoint: its header holds 'note', which no etlkit-checkpoint-5 checkpoint has"),
    ({"edit_meta_text": lambda t: t[:-1] + ', "epoch": 0}', "edit_body": bytes},
     "corrupt checkpoint: its header's meta holds the key 'epoch' twice"),
    # a RecursionError traceback
    ({"edit_meta_text": lambda _: "[" * 30000 + "]" * 30000},
     "corrupt checkpoint: its header's meta is not a JSON object"),
    # `predict` read it, `--resume` (its header alone) called it of another version
    ({"edit_meta": lambda m: m.update(pad="x" * 70000), "edit_body": bytes},
     "corrupt checkpoint: has a header longer than 64 KiB, which no save writes"),
    # was "not an etlkit checkpoint of this version"
    ({"edit_header": lambda h: h.update({7: 1})},
     "corrupt checkpoint: its header holds 7, which no etlkit-checkpoint-5 checkpoint has"),
], ids=["meta", "dtype", "dtype-format-4", "no-sha256", "no-sha256-format-4", "meta-not-json",
        "format-3-in-a-run-with-run_id", "format-4-in-a-run-with-run_id", "entry-twice",
        "shape-float", "shape-negative", "shape-bool", "dtype-spelled-otherwise",
        "dtype-void", "dtype-str", "dtype-bytes", "header-key-extra", "meta-key-twice",
        "meta-nested-deep", "header-over-64-KiB", "header-key-int"])
def test_a_checkpoint_whose_header_or_table_changed_is_refused(digits_run, tmp_path, edit,
                                                               needle):
    """Format 4's SHA-256 left the meta and the table out: an epoch edited there skipped
    epochs, an int32 dtype made predict print one class at probability 1, and a header
    without its SHA-256 let NaN weights load. A run with a run_id (`old_run`: one without)
    refuses the older formats, and what no save writes is refused even when re-signed."""
    run = _copy(digits_run, tmp_path)
    if edit.get("old_run"):
        _as_old_run(run)
    latest = run / "checkpoints" / "latest.msgpack"
    _rewrite_checkpoint(latest, **{k: v for k, v in edit.items() if k != "old_run"})
    one_error_line(runner.invoke(app, ["predict", str(run), str(tmp_path / "digit.png"),
                                       "--which", "latest"]), f"{latest}: ",
                   *(needle if isinstance(needle, tuple) else (needle,)))


@pytest.mark.parametrize(("edit", "needle"), [
    (lambda m: m.update(epoch=9), "meta epoch must be a whole number from 0 to 3, not 9"),
    (lambda m: m.update(step="x"), 'meta step must be a whole number from 0 to'),
    (lambda m: m.update(best_accuracy=math.nan),
     "meta best_accuracy must be null or a number in [0, 1], not NaN"),
    (lambda m: m.update(group=10**6), "meta group must be a whole number from 0 to"),
    (lambda m: m.update(totals=[1]), "meta totals must be null or non-negative numbers for"),
    (lambda m: m.pop("epoch"), "not the latest checkpoint of a run"),
], ids=["epoch-past-the-end", "step-text", "best-nan", "group-huge", "totals-list",
        "epoch-missing"])
def test_a_format_4_checkpoint_with_impossible_meta_is_not_resumed(digits_run, tmp_path, edit,
                                                                   needle):
    """A format-4 checkpoint still loads, its meta (outside its SHA-256) checked against
    what the run can reach: an epoch of 9 in a 3-epoch run skipped epochs 2 and 3 and
    exited 0, a NaN best accuracy kept the wrong model, the rest gave tracebacks."""
    run = _copy(digits_run, tmp_path)
    latest = run / "checkpoints" / "latest.msgpack"
    _as_old_run(run)  # format 4 was written before run_id
    _rewrite_checkpoint(latest, format_as=4, edit_meta=_no_run_id(edit))
    one_error_line(runner.invoke(app, _resume(digits_run, run)), f"{latest}: ", needle)


def test_format_4_and_3_checkpoints_still_load_and_format_3_is_checked_for_nan(digits_run,
                                                                                tmp_path):
    """Runs saved before checksums keep working: format 4 loads as it is, format 3 (no SHA-256
    at all) with a warning that says so; NaN weights in a format-3 file, which nothing can
    tell from a relabelled newer file, are refused rather than printed as nan."""
    run = _copy(digits_run, tmp_path)
    _as_old_run(run)  # as old as its checkpoints: neither has a run_id
    latest = run / "checkpoints" / "latest.msgpack"
    _rewrite_checkpoint(latest, format_as=4, edit_meta=_no_run_id())
    predict = ["predict", str(run), str(tmp_path / "digit.png"), "--which", "latest"]
    result = runner.invoke(app, predict)
    assert result.exit_code == 0, result.output
    data = latest.read_bytes()
    unpacker = msgpack.Unpacker()
    unpacker.feed(data)
    header = unpacker.unpack()
    header["format"] = "etlkit-checkpoint-3"
    del header["sha256"]
    latest.write_bytes(msgpack.packb(header) + data[unpacker.tell():])
    old = runner.invoke(app, predict)
    assert old.exit_code == 0, old.output
    assert old.stdout == result.stdout
    assert f"warning: {latest}: a format-3 checkpoint has no checksum" in old.stderr
    nans = bytearray(latest.read_bytes())
    nans[-4000:-40] = np.full(990, np.nan, np.float32).tobytes()
    latest.write_bytes(bytes(nans))
    one_error_line(runner.invoke(app, predict), f"{latest}: corrupt checkpoint: parameter ",
                   "holds NaN or infinity, which no trained model has")


@pytest.mark.parametrize("record, problem", [
    ({"step": 1, "epoch": 1, "train/loss": 1.0}, "no train/accuracy"),
    ({"step": 1, "epoch": 1, "train/loss": None, "train/accuracy": 0.5},
     "train/loss must be a number, not null"),
    ({"step": 1, "epoch": 1, "train/epoch_loss": 1.0, "train/epoch_accuracy": 0.5,
      "epoch/seconds": 1.0}, "no val/loss, val/accuracy"),
    ({"step": 1, "test/loss": 1.0, "test/accuracy": None, "test/top5": None,
      "test/best_epoch": 1}, "must be all numbers, or all null (no test split)"),
    # hostile pass 9, note 2: values no run logs, kept by --resume and plotted
    ({"step": -1, "epoch": 1, "train/loss": 1.0, "train/accuracy": 0.5},
     "its step and epoch must not be negative"),
    ({"step": 1, "epoch": 1, "train/epoch_loss": 1.0, "train/epoch_accuracy": 0.5,
      "val/loss": 1.0, "val/accuracy": 99.0, "epoch/seconds": 1.0},
     "val/accuracy must be a number in [0, 1], not 99.0"),
    ({"step": 1, "epoch": 1, "train/loss": 1.0, "train/accuracy": float("nan")},
     "train/accuracy must be a number in [0, 1], not NaN"),
    # hostile pass 10, a note: json keeps the last of a repeated key, the first hidden
    ('{"step": 1, "epoch": 1, "train/loss": 1.0, "train/accuracy": 0.5, "train/loss": 9.0}',
     "the key 'train/loss' appears twice"),
])
def test_a_metrics_record_missing_what_its_readers_use_is_refused_before_any_write(
        digits_run, tmp_path, record, problem):
    """A record of its kind without a key that curves, figures and the table read, or with a
    key twice (a hand edit; a string is written as it is): one line naming metrics.jsonl and
    the line, from evaluate and figures alike, before either writes a file."""
    run = _copy(digits_run, tmp_path)
    lines = (run / "metrics.jsonl").read_text("utf-8").splitlines(keepends=True)
    text = record if isinstance(record, str) else json.dumps(record)
    (run / "metrics.jsonl").write_text(lines[0] + text + "\n" + "".join(lines[1:]), "utf-8")
    for command in (["evaluate", str(run)], ["figures", str(run)]):
        one_error_line(runner.invoke(app, command), f"{run / 'metrics.jsonl'}: line 2 is not a "
                       f"metrics record (", problem)
    assert sorted(p.name for p in run.iterdir()) == sorted(p.name for p in digits_run.iterdir())

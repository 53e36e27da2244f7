"""Run folders never end in a dead end: a train that fails on its input leaves no folder, one
killed before its first checkpoint is started over by the same command (with or without
--resume), and a folder of anything else, or a file, is refused before any work. A run folder
edited by hand (config.json values, checkpoint bytes) is refused with one line naming what is
wrong, never used to print tracebacks or NaN probabilities."""

import json
import math
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from assertions import one_error_line
from PIL import Image
from typer.testing import CliRunner

from etlkit.cli import app
from etlkit.shards import open_shards
from train.rundir import Run

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
    process = subprocess.Popen([sys.executable, "-m", "etlkit", *_args(digits_shards, out)],
                               stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    for line in process.stderr:  # config.json is written; the first checkpoint is an epoch away
        if line.startswith("training CNN-93k"):
            break
    process.send_signal(signal.SIGKILL)
    process.wait()
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
], ids=["fill-0", "fill-negative", "fill-nan", "fill-text", "size-0", "size-64", "mass_at-one",
        "otsu-text", "framing-empty", "classes-cut", "classes-not-pairs", "classes-not-list",
        "num_classes-text", "model-unknown", "seed-text", "eval-batch-0", "precision-unknown",
        "shards-null", "dataset-empty"])
def test_a_hand_edited_config_is_refused_naming_the_key(digits_run, tmp_path, key, value,
                                                        needle):
    run = _copy(digits_run, tmp_path)
    doc = json.loads((run / "config.json").read_text("utf-8"))
    _set(doc, key, value)
    (run / "config.json").write_text(json.dumps(doc), "utf-8")
    one_error_line(runner.invoke(app, ["predict", str(run), str(tmp_path / "digit.png")]),
                   f"{run / 'config.json'}: {needle}")


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

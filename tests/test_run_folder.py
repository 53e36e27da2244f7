"""Run folders never end in a dead end: a train that fails on its input leaves no folder, one
killed before its first checkpoint is started over by the same command (with or without
--resume), and a folder of anything else, or a file, is refused before any work."""

import signal
import subprocess
import sys

from assertions import one_error_line
from typer.testing import CliRunner

from etlkit.cli import app
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

"""Shared fixtures for the etlkit tests."""

import json
import os
import shutil
import tempfile
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pytest
from filelock import FileLock

from etlkit.formats import FORMATS
from etlkit.formats.sixbit import T56, SixbitLayout

#: One JAX compilation cache for the test run, its pytest-xdist workers and training
#: subprocesses included (they inherit the environment, which the controller sets before it
#: starts the workers): many tests train the same network on the same shapes, and a cached
#: executable is the same code, so only the time changes. Every compilation is cached, not only
#: those over JAX's default second: a training run makes dozens of small ones (initialisers,
#: evaluation, calibration). Set before any test imports JAX (etlkit.formats does not).
if "ETLKIT_TESTS_JAX_CACHE" not in os.environ:
    os.environ["ETLKIT_TESTS_JAX_CACHE"] = tempfile.mkdtemp(prefix="etlkit-tests-jax-cache-")
    os.environ["ETLKIT_TESTS_JAX_CACHE_OWNER"] = str(os.getpid())
os.environ["JAX_COMPILATION_CACHE_DIR"] = os.environ["ETLKIT_TESTS_JAX_CACHE"]
os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"

#: Each pytest-xdist worker on cores of its own (on two cores, one each), with the processes
#: it starts (they inherit them): XLA sizes its thread pool by the cores a process may use,
#: and two workers' pools sharing both cores spent about a third more CPU time than one core
#: each (measured back to back on two cores, with the kill and two-device tests merged the
#: same day: the suite in 3:05 instead of 4:17, 313 user CPU-s instead of 432).
if os.environ.get("PYTEST_XDIST_WORKER", "").startswith("gw") and hasattr(os, "sched_setaffinity"):
    _cores, _workers = sorted(os.sched_getaffinity(0)), int(os.environ["PYTEST_XDIST_WORKER_COUNT"])
    if len(_cores) >= _workers:
        os.sched_setaffinity(0, _cores[int(os.environ["PYTEST_XDIST_WORKER"][2:])::_workers])


#: Test files that keep a worker busy longest, the longest first (wall seconds measured with
#: `--durations`: subprocesses and servers count, not only the tests' own CPU). Files go to
#: the pytest-xdist workers in this order (`--no-loadscope-reorder` in pyproject.toml), then
#: the rest in file-name order, so both workers end together on short files; xdist's own
#: order, by test count, left the three long process tests to run alone at the end.
LONGEST_FIRST = ["test_train_processes.py", "test_modern_recipe.py", "test_train.py",
                 "test_demo.py", "test_export.py", "test_models.py", "test_table.py",
                 "test_interrupt.py", "test_seeds.py", "test_verify.py", "test_serve.py",
                 "test_extract.py", "test_hostile_inputs.py", "test_reference_decoder.py",
                 "test_steps.py", "test_run_folder.py", "test_export_web.py", "test_remote.py"]


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable within a file


def pytest_sessionfinish(session, exitstatus):
    if os.environ.get("ETLKIT_TESTS_JAX_CACHE_OWNER") == str(os.getpid()):
        shutil.rmtree(os.environ["ETLKIT_TESTS_JAX_CACHE"], ignore_errors=True)


@dataclass(frozen=True)
class CliOutput:
    """What a finished CLI command printed, kept where every xdist worker can read it."""
    exit_code: int
    stdout: str
    stderr: str


def shared(tmp_path_factory, name: str, make) -> Path:
    """A session fixture's folder, made once per test run: with pytest-xdist the first worker
    to ask makes it (`make(folder)`) under a file lock and the others reuse it, so no
    worker trains the shared runs again."""
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # the run's temporary root, common to its workers
    folder, done = base / f"shared-{name}", base / f"shared-{name}.done"
    with FileLock(str(base / f"shared-{name}.lock")):
        if not done.exists():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            make(folder)
            done.touch()
    return folder


#: One real AIST file name per dataset (docs/etl-formats.md §5), so name-based inference applies.
_ETL_FILE_NAMES = {
    "ETL1": "ETL1C_01", "ETL2": "ETL2_1", "ETL3": "ETL3C_1", "ETL4": "ETL4C", "ETL5": "ETL5C",
    "ETL6": "ETL6C_01", "ETL7": "ETL7LC_1", "ETL8B2": "ETL8B2C1", "ETL8G": "ETL8G_01",
    "ETL9B": "ETL9B_1", "ETL9G": "ETL9G_01",
}

#: Label codes that stand for a character, per code kind.
_JIS0201_CODES = np.r_[0x30:0x3A, 0x41:0x5B, 0xB1:0xDE]
_JIS0208_CODES = np.r_[0x2422:0x2474, 0x3021:0x307F]
_PRINTABLE = np.frombuffer(bytes(range(0x20, 0x7F)), np.uint8)
_T56_BYTES = np.frombuffer(T56.encode("ascii"), np.uint8)


@pytest.fixture(scope="session")
def etl_file_names() -> dict[str, str]:
    """dataset -> one of its real raw file names (ETL1C_01, ETL2_1, ETL3C_1, ...)."""
    return dict(_ETL_FILE_NAMES)


def _random_fields(fmt, n: int, rng: np.random.Generator, invalid_every: int) -> np.ndarray:
    layout = fmt.layout
    fields = np.zeros(n, layout.field_dtype)
    widths = {}
    if isinstance(layout, SixbitLayout):
        widths = {name: width for name, _, width, _ in layout.header}
    for name in layout.field_dtype.names:
        dt = layout.field_dtype[name]
        if dt.kind == "S":
            alphabet = _T56_BYTES if isinstance(layout, SixbitLayout) else _PRINTABLE
            text = rng.choice(alphabet, (n, dt.itemsize)).astype(np.uint8)
            fields[name] = text.view(f"S{dt.itemsize}")[:, 0]
        elif isinstance(layout, SixbitLayout) and dt == np.uint64:
            top = 1 << (6 * widths[name])
            fields[name] = rng.integers(0, top, n, dtype=np.uint64)
        else:
            fields[name] = rng.integers(0, np.iinfo(dt).max, n, dtype=dt, endpoint=True)
    if fmt.code == "jis0201":
        fields["jis"] = rng.choice(_JIS0201_CODES, n)
    elif fmt.code == "jis0208":
        fields["jis"] = rng.choice(_JIS0208_CODES, n)
    if invalid_every and fmt.code != "co59":
        fields["jis"][::invalid_every] = 0  # a code that stands for no character
    return fields


def _random_etl_bytes(dataset: str, n: int, seed: int = 0, invalid_every: int = 0) -> bytes:
    fmt = FORMATS[dataset]
    rng = np.random.default_rng([seed, n, len(dataset), sum(map(ord, dataset))])
    fields = _random_fields(fmt, n, rng, invalid_every)
    images = rng.integers(0, fmt.levels, (n, *fmt.layout.shape), np.uint8, endpoint=True)
    raw = fmt.layout.encode(fields, images)
    dummy = np.zeros((fmt.dummy_records, fmt.record_size), np.uint8)
    return np.concatenate([dummy, raw]).tobytes()


@pytest.fixture(scope="session")
def random_etl_bytes():
    """make(dataset, n, seed=0, invalid_every=0) -> the bytes of a valid raw file.

    `n` records (plus the B family's zero dummy) built with the dataset's layout `encode` from
    seeded random header fields, label codes that stand for characters (every
    `invalid_every`-th record gets code 0, which stands for none) and random raw-level images.
    """
    return _random_etl_bytes


@pytest.fixture(scope="session")
def digits_run(tmp_path_factory):
    """A real 28×28 run for predict, recognize and serve: CNN-93k trained 3 epochs on
    mnist-5k's 3,200 training digits (~10 s on two CPU cores; ~96 % test accuracy)."""
    from etlkit.digits import Options, extract
    from train.config import Config
    from train.loop import fit

    def make(root):
        extract([], root / "mnist", Options(dataset="mnist-5k"))
        fit(Config(shards=str(root / "mnist"), model="CNN-93k", epochs=3, batch_size=32,
                   lr=1e-3), root / "run", say=lambda m: None, progress=False)

    return shared(tmp_path_factory, "digits", make) / "run"


@pytest.fixture(scope="session")
def etl_raw(tmp_path_factory):
    """One folder of synthetic raw files: ETL-1's katakana files and all of ETL-8G, from 6
    writers each (ETL8G_01 holds writers 1-5, ETL8G_02 the sixth). Read it, never change it."""
    from etlkit.errors import EtlWarning
    from etlkit.synth import synth

    def make(root):
        with warnings.catch_warnings():  # whole files of the writers asked for: not a word
            warnings.simplefilter("error", EtlWarning)
            synth("ETL1", root, writers=6, files=[f"ETL1C_{i:02d}" for i in range(7, 14)])
            synth("ETL8G", root, writers=6)

    return shared(tmp_path_factory, "etl-raw", make)


@pytest.fixture(scope="session")
def digits_shards(tmp_path_factory):
    """scikit-learn's 1,797 digits at 28×28 (1,150 train, 287 val, 360 test): the quickest
    real dataset, for tests of the trainer's behaviour where the network does not matter
    (FF-baseline trains an epoch of it in a fraction of a second). Read it, never change it."""
    from etlkit.digits import Options, extract

    return shared(tmp_path_factory, "sklearn-digits",
                  lambda root: extract([], root / "digits",
                                       Options(dataset="sklearn-digits"))) / "digits"


@pytest.fixture(scope="session")
def hiragana_shards(etl_raw, tmp_path_factory):
    """Synthetic ETL-8G hiragana from 5 writers, `etl_raw`'s ETL8G_01 (a copy with its synth
    record in ../raw): 225 train images in 3 shards, 75 val, 75 test. Shared by every test:
    read it, never change it."""
    from etlkit.extract import Options, extract
    from etlkit.synth import mark_synthetic, synthetic_files

    def make(root):
        raw = root / "raw"
        raw.mkdir()
        shutil.copy(etl_raw / "ETL8G_01", raw)
        origin = synthetic_files(etl_raw)["ETL8G_01"]
        mark_synthetic(raw / "ETL8G_01", origin["dataset"], origin["writers"], origin["seed"])
        extract([raw], root / "hiragana", Options(task="hiragana", shard_size=100))

    return shared(tmp_path_factory, "hiragana", make) / "hiragana"


@pytest.fixture(scope="session")
def hiragana_run(hiragana_shards, tmp_path_factory):
    """One real run that tests only read: `etlkit train` (the CLI) of M6-1 on
    `hiragana_shards`, 2 epochs of 14 steps with the paper's recipe, metrics every 5 steps; its
    dataset's raw files are in ../../hiragana/raw, which paper Fig. 2b reads. (its folder, what
    the command printed)."""
    def make(root):
        _train_recorded(root, [str(hiragana_shards), "--model", "M6-1", "--epochs", "2",
                               "--log-every", "5"])

    return _recorded_run(shared(tmp_path_factory, "hiragana-run", make))


def _train_recorded(root: Path, args: list[str]) -> None:
    """`etlkit train ARGS --out ROOT/run --no-progress` through the CLI, which must succeed;
    what it printed is kept in ROOT/cli.json for every xdist worker."""
    from typer.testing import CliRunner

    from etlkit.cli import app

    result = CliRunner().invoke(app, ["train", *args, "--out", str(root / "run"),
                                      "--no-progress"])
    assert result.exit_code == 0, result.output
    (root / "cli.json").write_text(json.dumps(asdict(CliOutput(
        result.exit_code, result.stdout, result.stderr))))


def _recorded_run(root: Path) -> tuple[Path, CliOutput]:
    """The run `_train_recorded` made in `root`, and what its command printed."""
    return root / "run", CliOutput(**json.loads((root / "cli.json").read_text()))


@pytest.fixture(scope="session")
def untested_run(digits_shards, tmp_path_factory):
    """A run on a dataset without a test split, as `extract --test-frac 0` or too few writers
    leave one: `digits_shards` written again (`DatasetWriter`) with its test records in train,
    since the digits extractor keeps its fixed test split, then `etlkit train` of FF-baseline
    for 1 epoch (a second or two). Tests only read it. (its folder, what the command
    printed)."""
    def make(root):
        _without_test_split(digits_shards, root / "digits")
        _train_recorded(root, [str(root / "digits"), "--model", "FF-baseline", "--epochs", "1"])

    return _recorded_run(shared(tmp_path_factory, "untested-run", make))


@pytest.fixture(scope="session")
def untested_hiragana_shards(hiragana_shards, tmp_path_factory):
    """`hiragana_shards` without a test split, its test records in val: the same 225 train
    images, so a network trains on it with the compiled steps of runs on `hiragana_shards`
    (150 val, 0 test). Read it, never change it."""
    return shared(tmp_path_factory, "untested-hiragana",
                  lambda root: _without_test_split(hiragana_shards, root / "hiragana",
                                                   into="val")) / "hiragana"


def _without_test_split(source: Path, dest: Path, into: str = "train") -> None:
    """`source` written again into `dest` (`DatasetWriter`) with its test records in the
    `into` split, as `extract --test-frac 0` or too few writers leave a dataset."""
    from etlkit.shards import FIELDS, DatasetWriter, open_shards

    train, val, test = (open_shards(source, s) for s in ("train", "val", "test"))
    target = ("train", "val").index(into)
    counts = [len(train), len(val), 0]
    counts[target] += len(test)
    writer = DatasetWriter(dest, train.info, counts, 16384, "lzf")
    for records, split in ((train, 0), (val, 1), (test, target)):
        writer.add(records.read(FIELDS), np.full(len(records), split, np.int8))
    writer.finish("", train.manifest["options"], train.manifest["sources"], [],
                  synthetic=bool(train.manifest.get("synthetic")))


@pytest.fixture(scope="session")
def browser(tmp_path_factory):
    """One headless Chromium for every page test."""
    from browser import chromium

    driver = chromium(tmp_path_factory.mktemp("chromium"))
    yield driver
    driver.quit()

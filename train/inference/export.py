"""`etlkit export`: a trained run's model out of JAX, with everything needed to use it.

- onnx: model.onnx through jax2onnx. The graph takes uint8 images (batch x S x S, ink 255) as
  the shards store them, divides by 255 itself, has a dynamic batch and returns logits; batch
  norm is in inference form (running statistics). Its `metadata_props` carry `metadata.describe`.
  Beside it classes.json and a README with a ten-line ONNX Runtime example.
- stablehlo: `jax.export`'s serialized artefact (model.stablehlo) for CPU, CUDA and TPU, with
  the metadata in metadata.json; `jax.export.deserialize(bytes).call(images)` runs it.
- web: a static folder with a drawing page that runs model.onnx in the browser through
  onnxruntime-web (copied from its npm package, see `web_runtime`), preprocessing drawings and
  uploads as `etlkit predict` does (static/preprocess.js ports images.py) and showing each
  class's glyph from a sprite rendered here with KanjiVG, so no CJK font is needed.

The graph is traced with the weights as abstract inputs, which are then bound as initializers:
tracing costs the same for a 100 M-parameter network as for a small one. Runs trained in bf16
are exported in float32 (their weights are float32; the computation is rebuilt in float32).
Traces take the accelerators' paths (`ops.accelerator_paths`): plain convolution, which any
runtime runs.
"""

import contextlib
import dataclasses
import io
import json
import logging
import math
import shutil
from collections.abc import Callable
from importlib import resources
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from PIL import Image, ImageDraw, ImageFont

from etlkit.errors import EtlError, check_choice
from etlkit.preview import glyph_image

from .. import models, ops
from ..config import build
from ..rundir import CHECKPOINTS, config_of, load_model
from . import metadata, web_runtime
from .images import Framing, framing

FORMATS = ("onnx", "stablehlo", "web")
PLATFORMS = ("cpu", "cuda", "tpu")  # the StableHLO artefact's
GLYPH = 32  # pixels of a class's glyph in the web page's sprite
SPRITE_COLUMNS = 32
README = """# {model} exported by etlkit {version}

`model.onnx` classifies {size}x{size} images of one handwritten character into {count} classes
(`classes.json`: index -> character and Shift-JIS code). Input `images`: uint8 (batch, {size},
{size}), white ink (255) on black (0), the character framed as in training; output `logits`.
The ONNX metadata (`etlkit.*` keys) holds the class table, the framing and the preprocessing.

With numpy, Pillow and onnxruntime only (`char.png`: dark ink on light paper, already cropped
and centred like the training images):

```python
import json
import numpy as np
import onnxruntime as ort
from PIL import Image
classes = json.load(open("classes.json", encoding="utf-8"))
session = ort.InferenceSession("model.onnx")
image = Image.open("char.png").convert("L").resize(({size}, {size}), Image.Resampling.BOX)
logits = session.run(None, {{"images": 255 - np.asarray(image)[None]}})[0][0]
probs = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
for i in np.argsort(-probs)[:5]:
    print(classes[i]["char"], classes[i]["sjis"], round(float(probs[i]), 3))
```

`etlkit predict --model model.onnx PHOTOS...` frames any photo as training did (no JAX needed).
"""


@dataclasses.dataclass
class Exportable:
    """A run's model in float32 inference form, split into its graph and its weights."""

    graphdef: nnx.GraphDef
    state: nnx.State
    meta: dict  # `metadata.describe`

    @property
    def size(self) -> int:
        return self.meta["image_size"]

    def logits(self, images: jax.Array, state: nnx.State | None = None) -> jax.Array:
        """uint8 (N, S, S) images -> float32 logits, as `steps.evaluate_batch` computes them."""
        model = nnx.merge(self.graphdef, self.state if state is None else state)
        return model(images.astype(jnp.float32) / 255.0, train=False)


def exportable(root: str | Path, which: str = "best") -> Exportable:
    """The `which` checkpoint of the run in `root`; bf16 runs rebuilt to compute in float32."""
    model, doc = load_model(root, which)
    config = config_of(doc)
    graphdef, state = nnx.split(model)
    if config.precision != "fp32":
        fp32 = dataclasses.replace(config, precision="fp32")
        graphdef = nnx.graphdef(nnx.eval_shape(lambda: build(fp32, doc["num_classes"])))
    meta = metadata.describe(doc, framing(doc), which, config.precision)
    return Exportable(graphdef, state, meta)


def random_exportable(name: str, num_classes: int) -> Exportable:
    """Network `name` with abstract weights (nothing allocated) and a made-up class table: for
    checking that every network in the table converts."""
    graphdef, state = nnx.split(nnx.eval_shape(
        lambda: models.build(name, num_classes, rngs=nnx.Rngs(0))))
    size = models.spec(name).input_size
    doc = {"config": {"model": name, "shards": ""}, "dataset": None, "preprocessing": {},
           "classes": [[chr(0x41 + i), 0x41 + i] for i in range(num_classes)]}
    frame = Framing(0.7, None, size, False)
    return Exportable(graphdef, state, metadata.describe(doc, frame, "best", "fp32"))


def _weight_names(state: nnx.State) -> list[str]:
    """Dotted paths of the state's leaves ("layers.0.conv.kernel"), in `jax.tree.leaves` order."""
    return [".".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path
                     if getattr(k, "key", None) != "value")
            for path, _ in jax.tree_util.tree_flatten_with_path(state)[0]]


@contextlib.contextmanager
def _quiet_converter():
    """jax2onnx logs a warning per batch-norm layer that it puts in inference form, which it is
    asked to; keep those off the command line."""
    logger = logging.getLogger()
    before = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(before)


def onnx_graph(model: Exportable):
    """The ONNX ModelProto of `model`: weights traced as inputs, then bound as initializers
    (abstract weights, as `random_exportable`'s, stay inputs)."""
    import onnx
    from jax2onnx import to_onnx

    leaves, treedef = jax.tree.flatten(model.state)
    names = _weight_names(model.state)

    def forward(images, *weights):
        return model.logits(images, jax.tree.unflatten(treedef, weights))

    (batch,) = jax.export.symbolic_shape("batch")
    specs = [jax.ShapeDtypeStruct((batch, model.size, model.size), jnp.uint8),
             *[jax.ShapeDtypeStruct(leaf.shape, leaf.dtype) for leaf in leaves]]
    with ops.accelerator_paths(), _quiet_converter():
        proto = to_onnx(forward, specs, model_name=model.meta["model"],
                        input_names=[metadata.INPUT, *names], output_names=[metadata.OUTPUT])
    bound = {name: leaf for name, leaf in zip(names, leaves, strict=True)
             if not isinstance(leaf, jax.ShapeDtypeStruct)}
    kept = [i for i in proto.graph.input if i.name not in bound]
    del proto.graph.input[:]
    proto.graph.input.extend(kept)
    proto.graph.initializer.extend(onnx.numpy_helper.from_array(np.asarray(leaf), name)
                                   for name, leaf in bound.items())
    for key, value in metadata.to_props(model.meta).items():
        proto.metadata_props.add(key=key, value=value)
    proto.doc_string = f"{model.meta['model']} exported by etlkit {model.meta['etlkit_version']}"
    return proto


def stablehlo(model: Exportable) -> jax.export.Exported:
    """`jax.export` of the logits for a symbolic batch of uint8 images, on PLATFORMS."""
    (batch,) = jax.export.symbolic_shape("batch")
    with ops.accelerator_paths():
        return jax.export.export(jax.jit(model.logits), platforms=PLATFORMS)(
            jax.ShapeDtypeStruct((batch, model.size, model.size), jnp.uint8))


def glyph_sprite(classes: list[list]) -> tuple[Image.Image, list[bool]]:
    """Every class's glyph (KanjiVG), GLYPH pixels square, SPRITE_COLUMNS to a row, dark on
    white; and which classes have one (the page shows the others as text)."""
    rows = max(1, math.ceil(len(classes) / SPRITE_COLUMNS))
    sheet = Image.new("L", (SPRITE_COLUMNS * GLYPH, rows * GLYPH), 255)
    drawn = []
    for i, (char, _) in enumerate(classes):
        image = glyph_image(char, GLYPH) if len(char) == 1 else None
        if image is None and char.isascii() and char:  # several letters: the script task's
            image = Image.new("L", (GLYPH, GLYPH), 255)
            ImageDraw.Draw(image).text((GLYPH / 2, GLYPH / 2), char[:4], fill=0,
                                       font=ImageFont.load_default(size=11), anchor="mm")
        if image is not None:
            sheet.paste(image, ((i % SPRITE_COLUMNS) * GLYPH, (i // SPRITE_COLUMNS) * GLYPH))
        drawn.append(image is not None)
    return sheet, drawn


def export(root: str | Path, fmt: str, out: Path, which: str = "best",
           say: Callable[[str], None] = print) -> list[Path]:
    """Write the `fmt` export of the run in `root` into `out`; the files written."""
    check_choice("format", fmt, FORMATS)
    check_choice("which", which, CHECKPOINTS)
    if out.exists() and not out.is_dir():
        raise EtlError(f"{out}: a file, not a folder")
    runtime = web_runtime.runtime_files() if fmt == "web" else []  # before any work
    model = exportable(root, which)
    if model.meta["trained_precision"] != "fp32":
        say(f"warning: {root} was trained in {model.meta['trained_precision']}; exported in "
            "fp32 (its float32 weights, computing in float32)")
    files: dict[str, bytes | Path] = {}
    if fmt == "stablehlo":
        files["model.stablehlo"] = bytes(stablehlo(model).serialize())
        files["metadata.json"] = _json(model.meta)
    else:
        files["model.onnx"] = onnx_graph(model).SerializeToString()
        files["classes.json"] = _json(metadata.class_table(model.meta))
    if fmt == "onnx":
        files["README.md"] = README.format(
            model=model.meta["model"], version=model.meta["etlkit_version"], size=model.size,
            count=len(model.meta["classes"])).encode()
    if fmt == "web":
        sprite, drawn = glyph_sprite(model.meta["classes"])
        files["glyphs.png"] = _png(sprite)
        files["metadata.json"] = _json(model.meta | {"glyphs": {
            "file": "glyphs.png", "size": GLYPH, "columns": SPRITE_COLUMNS, "drawn": drawn}})
        static = resources.files("train.inference") / "static"
        files["index.html"] = (static / "export.html").read_bytes()
        files["preprocess.js"] = (static / "preprocess.js").read_bytes()
        files.update({f"ort/{path.name}": path for path in runtime})
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, content in files.items():
        path = out / name
        path.parent.mkdir(exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        if isinstance(content, Path):
            shutil.copyfile(content, tmp)
        else:
            tmp.write_bytes(content)
        tmp.replace(path)
        written.append(path)
    return written


def _json(doc) -> bytes:
    return (json.dumps(doc, ensure_ascii=False, indent=1) + "\n").encode()


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG", optimize=True)
    return buffer.getvalue()

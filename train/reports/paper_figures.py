"""The paper's figures (Tsai 2016, Figs. 1, 2a, 2b, 4-7) for one run, as PNGs.

Data figures come from the run's own shards, so they show what the network saw; the
evaluation figures reuse `figures`; activation and filter maps are normalised per map, since
their scales differ by orders of magnitude between channels and layers.
"""

import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
from flax import nnx
from PIL import Image, ImageDraw

from etlkit import labels, preview
from etlkit.errors import EtlError, EtlWarning
from etlkit.shards import open_shards

from ..rundir import Run, check_trained_on, load_model
from . import evaluate, figures

PER_ROW = 12  # samples per row of Figs. 1 and 2a
STYLES = 36  # writers shown in Fig. 2a
MAPS = 32  # channels shown per layer in Fig. 6
KERNELS = 64  # kernels shown per layer in Fig. 7


def write(root: str | Path, out: str | Path | None = None, say: Callable[[str], None] = print,
          evaluation: evaluate.Evaluation | None = None) -> list[Path]:
    """Every figure the run allows into `out` (default RUN/figures); returns the paths written.
    Figures that cannot be drawn (raw files gone, no test split, no conv layers) are skipped
    with a warning. `evaluation`: the run's test-split evaluation with its best model, when the
    caller has it already (Fig. 5 draws its mistakes), so it is not computed twice."""
    root = Path(root)
    run = Run(root)
    out = Path(out) if out else run.figures
    # read and checked before anything is written, so a run they refuse is left as it was:
    # the model as evaluate loads it, the dataset as the one it was trained on
    doc, history = run.read_config(), run.history()
    model, _ = load_model(root)
    test = open_shards(doc["dataset"], "test")
    check_trained_on(test, doc, root)
    data = test.read(("images", "labels", "sheets"))
    out.mkdir(parents=True, exist_ok=True)
    has_test = len(test) > 0  # Figs. 1, 2a, 2b, 5 and 6 show test records
    written = []

    def put(name: str, image: Image.Image) -> None:
        figures.save(image, out / name)
        written.append(out / name)
        say(f"wrote {out / name}")

    if has_test:
        put("fig1-samples.png", preview.titled(samples(data, test.classes),
                                               "Fig. 1: test samples per script (or per class)"))
        put("fig2a-styles.png", preview.titled(styles(data, test.classes),
                                               "Fig. 2a: one character by many writers"))
        try:
            put("fig2b-gray-vs-otsu.png", preview.gray_vs_otsu(test))
        except EtlError as err:
            warnings.warn(f"Fig. 2b skipped: {err}", EtlWarning, stacklevel=2)
    else:
        warnings.warn(f"Figs. 1, 2a, 2b, 5 and 6 skipped: they show test records, and "
                      f"{test.root}'s test split is empty", EtlWarning, stacklevel=2)
    if history.train or history.epochs:
        put("fig4-curves.png", figures.curves(history, doc["steps_per_epoch"]))
    else:
        warnings.warn(f"Fig. 4 skipped: {run.metrics} missing", EtlWarning, stacklevel=2)
    if has_test:
        put("fig5-misclassified.png", misclassified(evaluation or evaluate.evaluate(root, "test")))
    if not model.conv_kernels():
        warnings.warn(f"{'Figs. 6-7' if has_test else 'Fig. 7'} skipped: "
                      f"{doc['config']['model']} has no conv layers", EtlWarning, stacklevel=2)
        return written
    if has_test:
        put("fig6-activations.png", activations(model, data["images"][0]))
    put("fig7-filters.png", filters(model))
    return written


def script(name: str) -> str:
    """The script of a class: the class itself for the script task's classes."""
    return name if name in labels.SCRIPTS else labels.script_of(name)


def samples(data: dict, classes: list, seed: int = 0) -> Image.Image:
    """Fig. 1: a row of samples per script present; with one script, a row per class."""
    scripts = np.array([script(name) for name, _ in classes])[data["labels"]]
    present = [s for s in labels.SCRIPTS if s in set(scripts.tolist())]
    if len(present) > 1:
        groups = [(s, np.flatnonzero(scripts == s)) for s in present]
    else:
        rows = np.unique(np.linspace(0, len(classes) - 1, min(16, len(classes))).round())
        groups = [(classes[c][0], np.flatnonzero(data["labels"] == c)) for c in rows.astype(int)]
    rng = np.random.default_rng(seed)
    picked = [(name, np.sort(rng.choice(m, min(PER_ROW, len(m)), replace=False)))
              for name, m in groups if len(m)]
    return _rows(data["images"], picked)


def styles(data: dict, classes: list) -> Image.Image:
    """Fig. 2a: one character as written by many writers (the class with the most writers)."""
    writers = [len(np.unique(data["sheets"][data["labels"] == c])) for c in range(len(classes))]
    c = int(np.argmax(writers))
    members = np.flatnonzero(data["labels"] == c)
    _, first = np.unique(data["sheets"][members], return_index=True)
    chosen = members[np.sort(first)][:STYLES]
    return _rows(data["images"], [(classes[c][0], chosen[i:i + PER_ROW])
                                  for i in range(0, len(chosen), PER_ROW)])


def misclassified(ev: evaluate.Evaluation) -> Image.Image:
    """Fig. 5: the most confident mistakes, as `etlkit evaluate` draws them."""
    wrong = ev.wrong
    prob = ev.top_prob[wrong, 0]
    shown = np.argsort(-prob, kind="stable")[:evaluate.GALLERY]
    captions = [(ev.classes[ev.labels[wrong[i]]][0], ev.classes[ev.predicted[wrong[i]]][0],
                 float(prob[i])) for i in shown]
    return figures.gallery(ev.wrong_images[shown], captions,
                           f"{len(shown)} of {len(wrong)} misclassified test images")


def normalise(maps: np.ndarray) -> np.ndarray:
    """(N, H, W) float -> uint8, each map stretched to 0-255 on its own (flat maps: 0)."""
    maps = np.asarray(maps, np.float64)
    low = maps.min(axis=(1, 2), keepdims=True)
    span = maps.max(axis=(1, 2), keepdims=True) - low
    return np.rint(255 * np.divide(maps - low, span, out=np.zeros_like(maps),
                                   where=span > 0)).astype(np.uint8)


def activation_maps(model, image: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """[(layer, (C, H, W) uint8)] of the first and last conv layers for one uint8 image."""
    names = []  # known once the forward pass is traced

    @nnx.jit  # one compiled program: op by op, the forward pass compiles dozens (seconds)
    def first_and_last(model, images):
        acts = model.activations(images)
        names[:] = [acts[0][0], acts[-1][0]]
        return acts[0][1], acts[-1][1]

    arrays = first_and_last(model, np.asarray(image, np.float32)[None] / 255.0)
    return [(name, normalise(np.moveaxis(np.asarray(a[0], np.float32), -1, 0)[:MAPS]))
            for name, a in zip(names, arrays, strict=True)]


def kernel_tiles(kernel) -> np.ndarray:
    """(k, k, in, out) kernel -> (min(out, KERNELS), k, k) uint8: the mean over the input
    channels (the kernel itself for a one-channel first layer), normalised per kernel."""
    k = np.asarray(kernel, np.float32).mean(axis=2)
    return normalise(np.moveaxis(k, -1, 0)[:KERNELS])


def activations(model, image: np.ndarray) -> Image.Image:
    """Fig. 6: the input, then a grid of the early and the late conv layer's channel maps."""
    layers = activation_maps(model, image)
    sections = [("input", Image.fromarray(255 - np.asarray(image, np.uint8)))]
    sections += [(f"{name}: {len(maps)} channel maps, each normalised",
                  _tiles(maps, 64, 8)) for name, maps in layers]
    return _stack(sections)


def filters(model) -> Image.Image:
    """Fig. 7: the first conv layer's 3×3 kernels and the last one's (mean over inputs)."""
    kernels = model.conv_kernels()
    first, last = kernel_tiles(kernels[0]), kernel_tiles(kernels[-1])
    return _stack([(f"conv1: {len(first)} kernels, normalised per kernel", _tiles(first, 24, 16)),
                   (f"conv{len(kernels)}: first {len(last)} kernels, mean over "
                    f"{kernels[-1].shape[2]} inputs", _tiles(last, 24, 16))])


def _tiles(maps: np.ndarray, size: int, columns: int) -> Image.Image:
    """uint8 maps as a grid of `size`-pixel tiles (nearest neighbour, 2-pixel gaps)."""
    rows = -(-len(maps) // columns)
    sheet = Image.new("L", (columns * (size + 2), rows * (size + 2)), 255)
    for i, m in enumerate(maps):
        tile = Image.fromarray(m).resize((size, size), Image.Resampling.NEAREST)
        sheet.paste(tile, ((i % columns) * (size + 2), (i // columns) * (size + 2)))
    return sheet


def _stack(sections: list[tuple[str, Image.Image]]) -> Image.Image:
    """Captioned images one under another."""
    width = max(max(im.width for _, im in sections), 360) + 8
    sheet = Image.new("L", (width, sum(im.height + 24 for _, im in sections)), 255)
    draw, y = ImageDraw.Draw(sheet), 0
    for caption, im in sections:
        draw.text((4, y + 5), caption, fill=0, font=figures.text_font())
        sheet.paste(im, (4, y + 20))
        y += im.height + 24
    return sheet


def _rows(images: np.ndarray, rows: list[tuple[str, np.ndarray]]) -> Image.Image:
    """A labelled row of images per (name, indices): ink dark on white."""
    side = images.shape[1]
    labelled = [(figures.label_image(name, 24), idx) for name, idx in rows]
    left = max(lab.width for lab, _ in labelled) + 6
    widest = max(len(idx) for _, idx in rows)
    sheet = Image.new("L", (left + widest * (side + 2), len(rows) * (side + 2)), 255)
    for r, (lab, idx) in enumerate(labelled):
        y = r * (side + 2)
        sheet.paste(lab, (2, y + (side - lab.height) // 2))
        for k, i in enumerate(idx):
            sheet.paste(Image.fromarray(255 - images[i]), (left + k * (side + 2), y + 1))
    return sheet

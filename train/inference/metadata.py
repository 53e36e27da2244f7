"""What an exported model carries beside its weights, so it can be used without its run folder.

One dict describes an export: the class table (index -> character and Shift-JIS code) and
its `classes_checksum` (as config.json pins it), the input (uint8 images as the shards store
them, ink 255) and the `Framing` that brings a user's photo to what the network saw, the model
name, the precision it was exported in, the dataset's manifest hash and etlkit's version. ONNX
stores it as `metadata_props` (one `etlkit.KEY` per entry, each value JSON), the StableHLO
export and the web page as a JSON file. No JAX here: `etlkit predict --model` reads it with
ONNX Runtime alone, and `check`s it as a run's config.json is checked: the file travels, and
can be edited on the way.
"""

import hashlib
import json
import warnings
from pathlib import Path

from etlkit import __version__, remote
from etlkit.errors import EtlError, EtlWarning, is_integer
from etlkit.labels import sjis_hex

from .images import Framing
from .model_facts import check_classes, check_framing, check_pinned, classes_checksum, refuse

PREFIX = "etlkit."  # of every ONNX metadata key etlkit writes
INPUT = "images"  # the graph's input and output names
OUTPUT = "logits"
PREPROCESSING = (
    "A photo or scan of one character becomes the network's input as `etlkit predict` does it "
    "(train/inference/images.py): gray; ink high (paper, the majority of pixels, 0 and the "
    "darkest ink 255); cropped to the box of pixels >= 128; centred in a square whose side is "
    "the box's longer side / framing.fill; area-averaged to 64x64; when framing.mass_at is set, "
    "shifted by whole pixels so its centre of mass sits at mass_at x 64; box-resized to "
    "framing.size; Otsu-binarized when framing.otsu.")


def describe(doc: dict, frame: Framing, which: str, trained_precision: str) -> dict:
    """The metadata of a run's model (its config.json `doc`) exported in float32."""
    classes = [[char, int(code)] for char, code in doc["classes"]]
    digest, note = None, "no dataset: random weights"
    if doc["dataset"]:
        manifest = remote.join(doc["dataset"], "manifest.json")
        try:
            digest = hashlib.sha256(remote.read_text(manifest).encode("utf-8")).hexdigest()
            note = None
        except (OSError, EtlError):
            note = f"{manifest} was not found at export time"
    return {
        "model": doc["config"]["model"],
        "task": doc.get("task"),
        "checkpoint": which,
        "classes": classes,
        "classes_checksum": classes_checksum(classes),
        "image_size": frame.size,
        "input": f"{INPUT}: uint8 (batch, {frame.size}, {frame.size}), ink 255 and paper 0, as "
                 "the shards store images; the graph divides by 255",
        "output": f"{OUTPUT}: float32 (batch, classes); softmax gives the probabilities",
        "framing": frame.to_json(),
        "preprocessing": PREPROCESSING,
        "dataset": doc["preprocessing"],
        "dataset_manifest_sha256": digest,
        "dataset_manifest_note": note,
        "precision": "fp32",
        "trained_precision": trained_precision,
        "etlkit_version": __version__,
    }


def class_table(meta: dict) -> list[dict]:
    """classes.json: per class index, its character and Shift-JIS code (null: not a character)."""
    return [{"index": i, "char": char, "sjis": sjis_hex(code)}
            for i, (char, code) in enumerate(meta["classes"])]


def framing(meta: dict) -> Framing:
    return Framing.from_json(meta["framing"])


def to_props(meta: dict) -> dict[str, str]:
    """ONNX `metadata_props`: `etlkit.KEY` -> the JSON of its value."""
    return {PREFIX + key: json.dumps(value, ensure_ascii=False) for key, value in meta.items()}


def from_props(props: dict[str, str], source: str | Path) -> dict:
    """The metadata back from ONNX `metadata_props`; an EtlError naming `source` when they are
    not an etlkit export's."""
    meta = {key[len(PREFIX):]: value for key, value in props.items() if key.startswith(PREFIX)}
    if not {"classes", "framing"} <= meta.keys():
        raise EtlError(f"{source}: not a model exported by `etlkit export` (no etlkit metadata)")
    try:
        return {key: json.loads(value) for key, value in meta.items()}
    except (ValueError, RecursionError) as err:  # RecursionError: JSON nested deep
        raise EtlError(f"{source}: unreadable etlkit metadata ({err})") from None


def check(meta: dict, source: str | Path, side: int, outputs: int) -> None:
    """Refuse an export's metadata (`from_props`, read from `source`) that its graph, taking
    `side` x `side` images to `outputs` logits, could not be used with, as config.json is
    refused (`model_facts`): the class table entry by entry, as many classes as logits and
    pinned by its `classes_checksum`; the framing's values, its size the graph's input side.
    An export made before `classes_checksum` was written is used with a warning."""
    check_framing(meta["framing"], side, "the graph's input side", source, PREFIX + "framing")
    if not is_integer(meta.get("image_size")) or meta["image_size"] != side:
        refuse(source, PREFIX + "image_size", f"{side} (the graph's input side)",
               meta.get("image_size"))
    check_classes(meta["classes"], outputs, "the graph's outputs", source, PREFIX + "classes")
    if "classes_checksum" in meta:
        check_pinned(meta["classes"], meta["classes_checksum"], source, PREFIX + "classes",
                     PREFIX + "classes_checksum")
    else:
        warnings.warn(EtlWarning(f"{source}: no {PREFIX}classes_checksum (an older etlkit "
                                 "exported it), so a swapped class table cannot be detected"),
                      stacklevel=3)

"""What a network needs beside its weights to be used: its class table (output index ->
character and Shift-JIS code) and its framing (how a user's image is brought to what it saw in
training), checked wherever they are read, with the same messages: a run's config.json
(`rundir.check_for_inference`) and an exported model's `etlkit.*` metadata
(`metadata.check`). A hand edit that would give a traceback, an out-of-memory kill or silently
wrong labels is one EtlError naming the file and the key. No JAX here: `etlkit predict --model`
uses it."""

import hashlib
import json
from pathlib import Path

from etlkit.errors import EtlError, is_finite_number, is_integer
from etlkit.labels import class_code

FRAMING_KEYS = ("fill", "mass_at", "size", "otsu")


def shown(value) -> str:
    """A JSON value as the file (config.json, a checkpoint's meta, an export's metadata) spells
    it, cut to fit an error line."""
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 60 else text[:57] + "..."


def refuse(where: str | Path, key: str, want: str, value) -> None:
    raise EtlError(f"{where}: {key} must be {want}, not {shown(value)}")


def classes_checksum(classes: list) -> str:
    """The SHA-256 of a class table as config.json and an export hold it ([[character, code],
    ...]): written with it, so a swap of two whole entries, which keeps every entry valid, is
    refused rather than mislabelling every prediction."""
    text = json.dumps(classes, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def check_classes(classes, count: int, counted: str, where: str | Path,
                  key: str = "classes") -> None:
    """`classes` (under `key` in `where`) must be `count` [character, code] pairs, `counted`
    saying what fixes that count ("num_classes"), each class named once and each code its
    character's own (`class_code`)."""
    if not isinstance(classes, list) or len(classes) != count:
        held = f"{len(classes)} entries" if isinstance(classes, list) else shown(classes)
        raise EtlError(f"{where}: {key} must hold {counted} ({count}) [character, code] "
                       f"pairs, not {held}")
    named = set()
    for i, entry in enumerate(classes):
        if not (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], str)
                and entry[0].isprintable() and is_integer(entry[1]) and 0 <= entry[1] < 1 << 16):
            refuse(where, f"{key}[{i}]", "a [character, Shift-JIS code] pair", entry)
        if not entry[0] or entry[0] in named:
            refuse(where, f"{key}[{i}]", "a class of its own (a name no other class has)", entry)
        if entry[1] != class_code(entry[0]):
            want = class_code(entry[0])
            refuse(where, f"{key}[{i}]", f"a character and its own Shift-JIS code "
                   f"({entry[0]!r} is {want} = 0x{want:04X})", entry)
        named.add(entry[0])


def check_pinned(classes: list, pinned, where: str | Path, key: str = "classes",
                 pin_key: str = "classes_checksum") -> None:
    """`classes` must be the table whose `classes_checksum` is `pinned` (under `pin_key`)."""
    if pinned != classes_checksum(classes):
        raise EtlError(f"{where}: {key} differ from {pin_key}: the class table was edited "
                       "(entries swapped or changed) after training")


def check_framing(framing, size: int, sized: str, where: str | Path,
                  key: str = "framing") -> None:
    """`framing` (under `key` in `where`, `Framing.to_json`'s shape) must hold values the
    framing code can use, its size the network's input side `size` (`sized` says whose)."""
    if not isinstance(framing, dict):
        refuse(where, key, "an object", framing)
    missing = [k for k in FRAMING_KEYS if k not in framing]
    if missing:
        raise EtlError(f"{where}: {key}.{missing[0]} is missing")
    fill, mass_at = framing["fill"], framing["mass_at"]
    if not (is_finite_number(fill) and 0 < fill <= 1):
        refuse(where, f"{key}.fill", "a number in (0, 1]", fill)
    if mass_at is not None and not (isinstance(mass_at, list) and len(mass_at) == 2 and all(
            is_finite_number(v) and 0 <= v <= 1 for v in mass_at)):
        refuse(where, f"{key}.mass_at", "null or [row, column] shares of the side in [0, 1]",
               mass_at)
    if not is_integer(framing["size"]) or framing["size"] != size:
        refuse(where, f"{key}.size", f"{size} ({sized})", framing["size"])
    if not isinstance(framing["otsu"], bool):
        refuse(where, f"{key}.otsu", "true or false", framing["otsu"])

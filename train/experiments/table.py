"""`etlkit table`: a grid of models × tasks, trained and tested, as the paper's Table 3.

Each task's dataset is extracted once (or given as shards), each model is trained with `fit`
into its own run folder, and the finished runs' test accuracies are set beside the paper's.
The grid is resumable: a finished run is read back instead of retrained, an interrupted one is
resumed, so a long grid survives being stopped and restarted with the same command.
"""

import json
from dataclasses import replace
from pathlib import Path

from etlkit import preprocess, remote
from etlkit.errors import EtlError, check_choice
from etlkit.extract import Options, extract
from etlkit.shards import DatasetInfo, open_shards
from etlkit.split import METHODS as SPLIT_METHODS

from ..config import Config
from ..loop import fit
from ..models import spec as network_spec
from ..rundir import Run

#: Tsai 2016, Table 3: test accuracy (%) per model and task (random 80/20 split).
PAPER = {
    "M3": (91.63, 90.17, 83.21, 85.78, 89.91),
    "M6-1": (96.61, 96.13, 96.98, 98.33, 97.47),
    "M6-2": (99.27, 95.88, 97.96, 99.28, 98.95),
    "M7-1": (99.08, 96.25, 96.69, 99.55, 99.53),
    "M7-2": (99.22, 96.50, 96.92, 99.64, 99.20),
    "M8": (99.01, 95.58, 96.02, 99.32, 99.02),
    "M9": (98.60, 94.71, 97.88, 99.03, 99.10),
    "M11": (99.30, 96.33, 97.30, 99.25, 99.31),
    "M12": (99.18, 96.25, 98.19, 99.17, 99.17),
    "M13": (95.76, 95.13, 96.14, 93.24, 96.69),
    "M16": (99.29, 96.17, 97.79, 98.88, 98.39),
}
TASKS = ("script", "hiragana", "katakana", "kanji", "all")


def run_grid(models: list[str], tasks: list[str], out: Path, base: Config, *,
             raw: list[Path] = (), shards: dict[str, remote.Where] | None = None,
             split: str = "random",
             say=print, progress: bool = False) -> dict:
    """Train every model on every task; write out/table.md and out/table.json. `shards`: a
    task's dataset given as a folder or URL, instead of extracting it from `raw`. Every option
    and every given dataset is checked before any extraction or training."""
    unknown = sorted(set(tasks) - set(TASKS))
    if unknown:
        raise EtlError(f"unknown task {unknown[0]!r}; the paper's tasks are {', '.join(TASKS)}")
    check_choice("split", split, SPLIT_METHODS)
    for model in models:  # every name, before hours of training on the first ones
        try:
            network_spec(model)
        except ValueError as err:
            raise EtlError(str(err)) from None
    shards = dict(shards or {})
    missing = [t for t in tasks if t not in shards]
    if missing and not raw:
        raise EtlError(f"no shards for {', '.join(missing)}: give raw ETL files, or "
                       "--shards TASK=DIR for each task")
    given = {t: open_shards(shards[t], "train").info for t in tasks if t in shards}
    for task, info in given.items():
        if (unfit := _unfit(info, task, split)) is not None:
            raise EtlError(f"{shards[task]} {unfit}")
    _check_sizes(models, {t: given[t].image_size if t in given else preprocess.SIZE
                          for t in tasks})
    for task in missing:
        shards[task] = _dataset(raw, task, out / "data" / task, split, say)
    results = {}
    for task in tasks:
        for model in models:
            run = out / "runs" / f"{task}-{model}"
            config = replace(base, shards=str(shards[task]), model=model)
            results[(model, task)] = train_or_resume(config, run, say, progress)
    train_sets = {t: open_shards(shards[t], "train") for t in tasks}
    doc = {"split": split, "epochs": base.epochs, "batch_size": base.batch_size,
           "datasets": {t: {"path": str(shards[t]), "train": len(s), "classes": len(s.classes),
                            "synthetic": bool(s.manifest.get("synthetic"))}
                        for t, s in train_sets.items()},
           "results": [{"model": m, "task": t, "test_accuracy": r["test/accuracy"],
                        "best_epoch": r["test/best_epoch"], "paper": _paper(m, t)}
                       for (m, t), r in results.items()]}
    (out / "table.json").write_text(json.dumps(doc, indent=1), "utf-8")
    (out / "table.md").write_text(markdown(doc, models, tasks), "utf-8")
    return doc


def markdown(doc: dict, models: list[str], tasks: list[str]) -> str:
    """Table 3 as markdown: ours, with the paper's number in brackets; numbers on synthetic
    data are marked and set beside no paper number, since they are not comparable; a dash for
    a run whose dataset has no test split (nothing was tested)."""
    cell = {(r["model"], r["task"]): r for r in doc["results"]}
    synthetic = {t for t, d in doc["datasets"].items() if d.get("synthetic")}
    lines = ["| model | " + " | ".join(f"{t}{' (synthetic)' if t in synthetic else ''}"
                                       for t in tasks) + " |", "|---|" + "---:|" * len(tasks)]
    for m in models:
        row = []
        for t in tasks:
            r = cell[(m, t)]
            ours = "—" if r["test_accuracy"] is None else f"{100 * r['test_accuracy']:.2f}"
            if t in synthetic:
                row.append(ours if r["test_accuracy"] is None else f"{ours}*")
                continue
            paper = f" ({r['paper']:.2f})" if r["paper"] is not None else " (—)"
            row.append(f"{ours}{paper}")
        lines.append(f"| {m} | " + " | ".join(row) + " |")
    sizes = ", ".join(f"{t} {d['classes']} classes / {d['train']} train"
                      for t, d in doc["datasets"].items())
    recipe = ("each model's recipe" if doc["epochs"] is None else f"at most {doc['epochs']} epochs")
    recipe += "" if doc["batch_size"] is None else f", batch {doc['batch_size']}"
    lines += ["", f"Test accuracy %, ours (paper's Table 3 in brackets; — where the paper has "
                  f"no such network). Split: {doc['split']}; {recipe}; {sizes}."]
    if any(r["test_accuracy"] is None for r in doc["results"]):
        lines += ["", "— in place of ours: the task's dataset has no test split, so the run's "
                      "best model was not tested."]
    if synthetic:
        lines += ["", "\\* Synthetic data (`etlkit synth`: KanjiVG renders, not ETL "
                      "handwriting): these numbers show that the pipeline works and are not "
                      "comparable with the paper's, which are left out of those columns."]
    return "\n".join(lines) + "\n"


def _check_sizes(models: list[str], sizes: dict[str, int]) -> None:
    """Every network fits every task's images, before any extraction or training."""
    for model in models:
        side = network_spec(model).input_size
        for task, size in sizes.items():
            if side != size:
                raise EtlError(f"{model} takes {side}×{side} images; the {task} task's are "
                               f"{size}×{size}")


def _paper(model: str, task: str) -> float | None:
    return PAPER[model][TASKS.index(task)] if model in PAPER else None


def _unfit(info: DatasetInfo, task: str, split_method: str) -> str | None:
    """Why a dataset cannot stand in the grid for `task` split by `split_method` (its numbers
    would be printed under that task's name, beside the paper's); None when it can."""
    if info.task != task:
        return f"is a {info.task} dataset, not {task}"
    if info.split_method != split_method:
        return f"has a {info.split_method} split; the grid's --split is {split_method}"
    return None


def _dataset(raw: list[Path], task: str, out: Path, split_method: str, say) -> Path:
    """The task's dataset in `out`: one extracted there before for this task and split is
    reused, anything else extracted (again) from `raw`."""
    if (out / "manifest.json").exists() and _unfit(open_shards(out, "train").info, task,
                                                   split_method) is None:
        say(f"{task}: using {out}")
        return out
    say(f"{task}: extracting into {out}")
    extract(list(raw), out, Options(task=task, split_method=split_method), force=True)
    return out


def train_or_resume(config: Config, run: Path, say, progress: bool) -> dict:
    """A finished run's test record, or the result of training (resuming) it now."""
    folder = Run(run)
    finished = folder.history().test
    if finished:
        accuracy = finished["test/accuracy"]
        say(f"{run.name}: done (" + ("not tested: no test split)" if accuracy is None
                                     else f"{100 * accuracy:.2f} %)"))
        return finished
    say(f"{run.name}: {'resuming' if folder.started() else 'training'}")
    return fit(config, run, resume=True, say=say, progress=progress)  # or starts it over

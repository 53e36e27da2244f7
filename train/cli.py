"""The trainer's verbs on the `etlkit` command line: train, evaluate, predict, table.

JAX is imported inside each command, so `etlkit info` and `etlkit extract` start fast.
"""

from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer, reported) -> None:
    """Add the trainer's commands to `app`; `reported` turns EtlErrors into one-line exits."""

    @app.command(name="train")
    def train_cmd(
        shards: Annotated[Path, typer.Argument(help="Dataset folder from `etlkit extract`.")],
        out: Annotated[Path, typer.Option("--out", "-o", help="Run folder to write.")],
        model: Annotated[str, typer.Option(help="M3, M6-1, M6-2, M7-1, M7-2, M8, M9, M11, "
                                           "M12, M13, M16 (or a seed network).")] = "M7-2",
        batch_size: Annotated[int, typer.Option(help="Global batch, over all devices.")] = 16,
        lr: Annotated[float, typer.Option(help="Adam learning rate.")] = 1e-4,
        epochs: Annotated[int, typer.Option(help="At most this many epochs.")] = 40,
        lr_step_epochs: Annotated[int, typer.Option(help="Learning rate × 0.1 every this many "
                                                    "epochs.")] = 20,
        patience: Annotated[int, typer.Option(help="Stop after this many epochs without a "
                                              "better validation accuracy (0: never).")] = 5,
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
    ):
        """Train an M-series network on shards with the paper's recipe; report test accuracy."""
        from .loop import Config, fit
        config = Config(shards=str(shards), model=model, batch_size=batch_size, lr=lr,
                        epochs=epochs, lr_step_epochs=lr_step_epochs, patience=patience,
                        precision=precision, augment=augment, seed=seed,
                        conv_dropout=conv_dropout, fc_dropout=fc_dropout,
                        steps_per_call=steps_per_call, log_every=log_every,
                        checkpoint_minutes=checkpoint_minutes)
        with reported():
            fit(config, out, resume=resume, say=lambda m: typer.echo(m, err=True),
                progress=progress)

"""Each network's own training recipe: the paper's for the M-series, its document's for the
digit and letter seed networks. `etlkit train` uses a model's recipe for every option not given.
"""

from dataclasses import dataclass

from . import models


@dataclass(frozen=True)
class Recipe:
    optimizer: str  # "adam" or "sgd" (with momentum)
    lr: float
    batch_size: int
    epochs: int
    lr_step_epochs: int  # learning rate x lr_decay every this many epochs; 0: constant
    patience: int  # early stopping; 0: train every epoch
    momentum: float = 0.9  # sgd only
    source: str = ""


#: Tsai 2016 §5.1: Adam 1e-4, batch 16, x 0.1 every 20 epochs, 40 epochs, stop on a plateau.
PAPER = Recipe("adam", 1e-4, 16, 40, 20, 5, source="Tsai 2016 §5.1")
_SGD = Recipe("sgd", 0.05, 100, 15, 0, 0, source="MNIST CNN study: SGD, batch 100, 15 epochs")

RECIPES = {
    # its document names no optimizer: SGD (lr 0.5, momentum 0.9, batch 100) left this sigmoid
    # network at chance after 15 epochs on mnist-5k; Adam at 1e-2 reaches 96.7 %
    "LeNet-5": Recipe("adam", 1e-2, 32, 15, 0, 0, source="LeNet-5 seed: sigmoid, avg-pool"),
    **{f"MNIST-CNN-{i}": _SGD for i in range(1, 7)},
    "CNN-93k": Recipe("adam", 1e-3, 32, 5, 0, 0, source="digit recognizer: Adam, 5 epochs"),
    "FF-baseline": Recipe("adam", 1e-3, 32, 5, 0, 0, source="digit recognizer: Adam, 5 epochs"),
    "EMNIST-CNN": Recipe("adam", 1e-3, 128, 10, 0, 0,
                         source="EMNIST-balanced CNN: Adam, batch 128, 10 epochs"),
}


def recipe(model: str) -> Recipe:
    """The recipe of a model (any spelling `models.spec` accepts)."""
    wanted = model.lower()
    for name in models.names():
        if name.lower() == wanted:
            return RECIPES.get(name, PAPER)
    return PAPER


def recipe_table() -> str:
    """One line per recipe and the networks that use it, for `etlkit train --help`."""
    users: dict[Recipe, list[str]] = {}
    for name in models.names():
        users.setdefault(recipe(name), []).append(name)
    return "\n".join(f"{', '.join(names)}: {r.optimizer} lr {r.lr:g}"
                     f"{f' momentum {r.momentum:g}' if r.optimizer == 'sgd' else ''}, "
                     f"batch {r.batch_size}, {r.epochs} epochs"
                     f"{f', lr x0.1 every {r.lr_step_epochs} epochs' if r.lr_step_epochs else ''}"
                     f"{f', patience {r.patience}' if r.patience else ''} ({r.source})"
                     for r, names in users.items())

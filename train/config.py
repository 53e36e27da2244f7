"""`Config`: every option that defines a training run, checked and completed from the model's
recipe; and the model and optimizer a config defines."""

from dataclasses import dataclass, replace

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from etlkit.errors import EtlError, check_integer, check_real, is_finite_number
from etlkit.remote import check_location
from etlkit.split import SEED_MAX

from . import models, recipes

#: The modern options a recipe sets (docs/beyond.md), in `Config` and `recipes.Recipe` alike.
RECIPE_OPTIONS = ("schedule", "warmup_epochs", "weight_decay", "label_smoothing", "mixup",
                  "cutmix", "affine", "elastic", "ema")
#: The largest --affine: rotation and shear ±60°, zoom ±60 %, shift ±40 % of the side; past
#: about 6.7 the zoom reaches 0 and the images are no longer characters.
AFFINE_MAX = 4.0
#: The largest --weight-decay: AdamW shrinks each kernel by lr × decay a step (5e-4 in the
#: residual networks' recipe, 0.01-0.1 in common use); far past 1 the weights collapse and the
#: loss ends in NaN, which the trainer would blame on --lr.
WEIGHT_DECAY_MAX = 1.0
#: The largest --elastic: displacements of 3.7 pixels RMS on 28 (Simard et al.'s 34: 1.3);
#: at 1,000 the field moves ink further than the image is wide.
ELASTIC_MAX = 100.0
#: --mixup and --cutmix, Beta(a, a), when on: below 0.01 the mixing weight is 0 or 1 (and
#: under float32's smallest normal the sampler gives NaN); at 10 it is already 0.5 ± 0.1.
BETA_RANGE = (0.01, 10.0)
#: The largest evaluation batch: 16,384 images of 64×64 are 256 MiB as float32, more than any
#: device gains from; a larger one (a hand edit of config.json) would only exhaust memory.
EVAL_BATCH_MAX = 1 << 14


@dataclass(frozen=True)
class Config:
    """Everything that defines a run. Options left as None come from the model's recipe
    (`recipes.py`: the paper's §5.1 for the M-series) when `fit` starts."""

    shards: str  # a dataset folder or URL (`etlkit.remote`)
    model: str = "M7-2"
    optimizer: str | None = None  # adam | adamw | sgd
    batch_size: int | None = None
    lr: float | None = None
    momentum: float | None = None  # sgd
    epochs: int | None = None
    lr_step_epochs: int | None = None  # learning rate x lr_decay every this many epochs; 0: never
    lr_decay: float = 0.1
    patience: int | None = None  # epochs without a better validation accuracy; 0: never stop
    # the modern options (recipes.Recipe; docs/beyond.md), all off in the paper's recipe
    schedule: str | None = None  # step | cosine (linear warm-up, then cosine decay to 0)
    warmup_epochs: float | None = None
    weight_decay: float | None = None  # adamw, on kernels only (not biases, not batch norm)
    label_smoothing: float | None = None
    mixup: float | None = None  # Beta(a, a) mixing of image pairs; 0: off
    cutmix: float | None = None  # Beta(a, a) pasting of a box from another image; 0: off
    affine: float | None = None  # random rotation, shear, zoom, shift; strength, 0: off
    elastic: float | None = None  # elastic distortion amplitude, pixels per 28 of side; 0: off
    ema: float | None = None  # decay of the weights' moving average that is evaluated; 0: off
    precision: str = "fp32"  # fp32 | bf16
    augment: bool = False
    seed: int = 0
    conv_dropout: float = 0.5
    fc_dropout: float = 0.5
    steps_per_call: int = 0  # optimizer steps per jitted call; 0: see `group`
    eval_batch_size: int = 256
    bn_calibration_images: int = 2048  # training images that re-estimate batch-norm statistics
    log_every: int = 100  # steps between metrics.jsonl lines
    checkpoint_minutes: float = 10.0

    def group(self, backend: str) -> int:
        """Steps per call: 8 for small batches on accelerators, where dispatching each step
        would leave the device idle; 1 on CPU, where a step takes far longer than dispatch."""
        if self.steps_per_call:
            return self.steps_per_call
        return 8 if self.batch_size <= 64 and backend != "cpu" else 1

    def with_recipe(self) -> "Config":
        """Every option None here set from the model's recipe."""
        r = recipes.recipe(self.model)
        return replace(self, **{k: getattr(r, k) for k in (
            "optimizer", "batch_size", "lr", "momentum", "epochs", "lr_step_epochs", "patience",
            *RECIPE_OPTIONS) if getattr(self, k) is None})

    def check(self) -> None:
        """Refuse, in one line naming the flag, any value a run cannot use: a name unknown, a
        number out of range, NaN or infinite (which config.json could not even record)."""
        check_location(self.shards)
        if self.optimizer not in ("adam", "adamw", "sgd"):
            raise EtlError(f"--optimizer must be adam, adamw or sgd, not {self.optimizer!r}")
        if self.schedule not in ("step", "cosine"):
            raise EtlError(f"--schedule must be step or cosine, not {self.schedule!r}")
        if self.precision not in ("fp32", "bf16"):
            raise EtlError(f"--precision must be fp32 or bf16, not {self.precision!r}")
        self._check_numbers()
        if self.weight_decay and self.optimizer != "adamw":
            raise EtlError("--weight-decay needs --optimizer adamw")
        try:
            models.spec(self.model)
        except ValueError as err:  # names the valid models
            raise EtlError(str(err)) from None

    def _check_numbers(self) -> None:
        """Every numeric option against its range (0 where it means off, never or automatic)."""
        for name in ("batch_size", "epochs", "log_every"):
            check_integer(_flag(name), getattr(self, name), 1)
        check_integer(_flag("eval_batch_size"), self.eval_batch_size, 1, EVAL_BATCH_MAX)
        for name in ("lr_step_epochs", "patience", "steps_per_call", "bn_calibration_images"):
            check_integer(_flag(name), getattr(self, name), 0)
        check_integer("seed", self.seed, 0, SEED_MAX)
        for name in ("lr", "lr_decay"):
            check_real(_flag(name), getattr(self, name), low_open=True)
        for name in ("momentum", "label_smoothing", "ema", "conv_dropout", "fc_dropout"):
            check_real(_flag(name), getattr(self, name), 0, 1)
        for name in ("warmup_epochs", "checkpoint_minutes"):
            check_real(_flag(name), getattr(self, name))
        check_real("weight-decay", self.weight_decay, 0, WEIGHT_DECAY_MAX, high_open=False)
        check_real("affine", self.affine, 0, AFFINE_MAX, high_open=False)
        check_real("elastic", self.elastic, 0, ELASTIC_MAX, high_open=False)
        for name in ("mixup", "cutmix"):
            value, (low, high) = getattr(self, name), BETA_RANGE
            if not (is_finite_number(value) and (value == 0 or low <= value <= high)):
                raise EtlError(f"--{name} must be 0 (off) or in [{low:g}, {high:g}], "
                               f"not {value!r}")


def _flag(name: str) -> str:
    """A Config field's CLI flag without the dashes: fc_dropout -> fc-dropout."""
    return name.replace("_", "-")


def build(config: Config, num_classes: int):
    """The model a config defines, initialised from its seed."""
    dtype = jnp.bfloat16 if config.precision == "bf16" else jnp.float32
    return models.build(config.model, num_classes, rngs=nnx.Rngs(config.seed), dtype=dtype,
                        conv_dropout=config.conv_dropout, fc_dropout=config.fc_dropout)


def optimizer(model, config: Config, steps_per_epoch: int) -> nnx.Optimizer:
    """The recipe's optimizer with its schedule (Adam and AdamW: β 0.9/0.999, ε 1e-8)."""
    # periods longer than the run change nothing in it: a warm-up is cut to the run and a step
    # decay that never comes is a constant, so no period outgrows the int32 a step count is
    # compiled as (--lr-step-epochs 10**9 overflowed it), and runs of any length on the same
    # shapes compile the same step
    if config.schedule == "cosine":
        total = config.epochs * steps_per_epoch
        warmup = min(round(min(config.warmup_epochs, config.epochs) * steps_per_epoch), total - 1)
        schedule = optax.warmup_cosine_decay_schedule(0.0, config.lr, warmup, total)
    elif config.lr_step_epochs and config.lr_step_epochs < config.epochs:
        schedule = optax.exponential_decay(config.lr, config.lr_step_epochs * steps_per_epoch,
                                           config.lr_decay, staircase=True)
    else:
        schedule = optax.constant_schedule(config.lr)
    if config.optimizer == "sgd":
        tx = optax.sgd(schedule, momentum=config.momentum)
    elif config.optimizer == "adamw":
        tx = optax.adamw(schedule, b1=0.9, b2=0.999, eps=1e-8, weight_decay=config.weight_decay,
                         mask=lambda params: jax.tree.map(lambda p: p.ndim > 1, params))
    else:
        tx = optax.adam(schedule, b1=0.9, b2=0.999, eps=1e-8)
    return nnx.Optimizer(model, tx, wrt=nnx.Param), schedule

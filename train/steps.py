"""The jitted train and eval functions, and the device mesh they run on.

The model and optimizer are split once into a graph definition and a state pytree; the jitted
functions take and return only the state (donated, so updates happen in place) and are traced
once per run, since every call has the same shapes. One train call runs K optimizer steps with
`lax.scan`, so a batch of 16 is not bound by Python dispatch; an epoch whose steps are not a
multiple of K ends with one shorter call, compiled once more and then reused every epoch (no
padded steps, no `lax.cond`). On CPU the scan is unrolled: XLA:CPU runs convolutions inside a
loop or conditional body ~15× slower than at top level (measured: M6-1, 1.9 s vs 0.11 s a
step). Keys for dropout and augmentation are `fold_in(seed, step)`, so a resumed run draws the
same randomness.

The modern recipe's options (`StepOptions`: distortion, label smoothing, mixup / cutmix, a
moving average of the weights) enter the step only when on, so the paper's step is traced
exactly as without them. With an average, the state is (train state, average) and
`eval_state` evaluates the average.

Data parallelism is GSPMD: a 1-D ("data",) mesh over every device of every process, batches
sharded along their batch axis, the state replicated. BatchNorm's batch statistics are then
global means, and the same code runs on 1 or N devices.
"""

from dataclasses import dataclass, fields

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from . import ema, ops, targets
from .augment import augment, distort


@dataclass(frozen=True)
class StepOptions:
    """The modern recipe's options the train step applies (`config.Config`); 0 is off."""

    label_smoothing: float = 0.0
    mixup: float = 0.0
    cutmix: float = 0.0
    affine: float = 0.0
    elastic: float = 0.0
    ema: float = 0.0

    @classmethod
    def of(cls, config) -> "StepOptions":
        return cls(**{f.name: getattr(config, f.name) for f in fields(cls)})


@dataclass
class Mesh:
    """The ("data",) mesh and the shardings batches and state use on it."""

    mesh: jax.sharding.Mesh

    @classmethod
    def create(cls) -> "Mesh":
        # Auto axes: XLA propagates the shardings (plain GSPMD), no sharding-in-types rules
        return cls(jax.make_mesh((jax.device_count(),), ("data",),
                                 axis_types=(jax.sharding.AxisType.Auto,)))

    @property
    def size(self) -> int:
        return self.mesh.size

    def replicate(self, tree):
        return jax.device_put(tree, NamedSharding(self.mesh, P()))

    def batch(self, host: dict[str, np.ndarray], axis: int) -> dict[str, jax.Array]:
        """This process's part of a global batch -> global arrays sharded along `axis`."""
        def put(x):
            spec = P(*([None] * axis), "data") if x.ndim > axis else P()
            return jax.make_array_from_process_local_data(NamedSharding(self.mesh, spec), x)
        return {k: put(v) for k, v in host.items()}


class Steps:
    """Compiled train / eval functions for one model and optimizer."""

    def __init__(self, model: nnx.Module, optimizer: nnx.Optimizer, seed: int, augmented: bool,
                 options: StepOptions = StepOptions()):
        self.graphdef, state = nnx.split((model, optimizer))
        self.model_def, _ = nnx.split(model)
        # shapes of the model's part of the state (the arrays themselves are donated on the
        # first train call): the template `best` checkpoints are restored into
        self.model_shapes = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype),
                                         state[0])
        self.options = options
        self.num_classes = model.num_classes
        self.state = (state, ema.initial(model)) if options.ema else state
        # Python runs once per trace: these count compilations
        self.traces = {"train": 0, "eval": 0, "calibrate": 0}
        self._key = jax.random.key(seed)
        self._augment = augmented
        options = ops.compiler_options()
        self.train_call = jax.jit(self._train_call, donate_argnums=0, compiler_options=options)
        self.eval_call = jax.jit(self._eval_call, compiler_options=options)
        probe = nnx.clone(model)  # the same model with momentum 0: running stats = batch stats
        for _, module in nnx.iter_modules(probe):
            if isinstance(module, nnx.BatchNorm):
                module.momentum = 0.0
        self._calibration_def, _ = nnx.split(probe)
        self._has_batch_norm = bool(jax.tree.leaves(nnx.state(model, nnx.BatchStat)))
        self._batch_stats = jax.jit(self._batch_stats_fn, compiler_options=options)
        self._set_stats = jax.jit(self._set_stats_fn, donate_argnums=0)
        self._with_average = jax.jit(self._with_average_fn)

    def eval_state(self, state):
        """The model state that is evaluated and kept as `best`: the model's, or with
        `StepOptions.ema` the model's batch-norm statistics with the averaged weights."""
        return self._with_average(*state) if self.options.ema else state[0]

    def _with_average_fn(self, train_state, average):
        model = nnx.merge(self.model_def, train_state[0])
        nnx.update(model, average)
        return nnx.state(model)

    def _train_call(self, state, images, labels, first_step):
        self.traces["train"] += 1
        numbers = first_step + jnp.arange(images.shape[0])
        keys = jax.vmap(lambda i: jax.random.fold_in(self._key, i))(numbers)
        if images.shape[0] == 1:  # a scan of length 1 would still be a loop
            state, (loss, correct) = self._step(state, (images[0], labels[0], keys[0],
                                                        numbers[0]))
        else:
            state, (loss, correct) = jax.lax.scan(self._step, state,
                                                  (images, labels, keys, numbers),
                                                  unroll=ops.cpu_paths())
        return state, {"loss_sum": loss.sum(), "correct": correct.sum(),
                       "steps": images.shape[0], "seen": images.shape[0] * images.shape[1]}

    def _step(self, state, batch):
        images, labels, key, number = batch
        o = self.options
        model, optimizer = nnx.merge(self.graphdef, state[0] if o.ema else state)
        x = images.astype(jnp.float32) / 255.0
        if self._augment:
            x = augment(x, jax.random.fold_in(key, 1))
        if o.affine or o.elastic:
            x = distort(x, jax.random.fold_in(key, 2), o.affine, o.elastic)
        soft = bool(o.label_smoothing or o.mixup or o.cutmix)
        if soft:
            x, wanted = targets.mix(x, labels, self.num_classes, jax.random.fold_in(key, 3),
                                    smoothing=o.label_smoothing, mixup=o.mixup, cutmix=o.cutmix)

        def loss_fn(model):
            logits = model(x, train=True, key=jax.random.fold_in(key, 0))
            if soft:
                return targets.loss(logits, wanted), logits
            loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
            return loss, logits

        (loss, logits), grads = nnx.value_and_grad(loss_fn, has_aux=True)(model)
        optimizer.update(model, grads)
        correct = (jnp.argmax(logits, -1) == labels).sum()
        new = nnx.state((model, optimizer))
        if o.ema:
            new = (new, ema.update(state[1], model, number, o.ema))
        return new, (loss, correct)

    def _eval_call(self, model_state, images, labels, mask):
        self.traces["eval"] += 1
        return evaluate_batch(nnx.merge(self.model_def, model_state), images, labels, mask)

    def recalibrate(self, state, batches):
        """Batch-norm statistics re-estimated as the mean over `batches` of batch statistics
        computed without dropout ("precise BN"). Running averages collected during training
        see dropout-noised activations, which max-pooling then inflates; at test time, without
        dropout, they mismatch (M7-2 on synthetic hiragana: 3 % validation accuracy with them,
        93 % with batch statistics). They are the statistics of the evaluated weights
        (`eval_state`: the average, with `StepOptions.ema`)."""
        if not self._has_batch_norm:
            return state
        total, n = None, 0
        for images in batches:
            stats = self._batch_stats(self.eval_state(state), images)
            total = stats if total is None else jax.tree.map(jnp.add, total, stats)
            n += 1
        return state if total is None else self._set_stats(state, jax.tree.map(
            lambda x: x / n, total))

    def _batch_stats_fn(self, model_state, images):
        self.traces["calibrate"] += 1
        model = nnx.merge(self._calibration_def, model_state)
        model.calibrate(images.astype(jnp.float32) / 255.0)
        return nnx.state(model, nnx.BatchStat)

    def _set_stats_fn(self, state, stats):
        train_state = state[0] if self.options.ema else state
        model, optimizer = nnx.merge(self.graphdef, train_state)
        nnx.update(model, stats)
        updated = nnx.state((model, optimizer))
        return (updated, state[1]) if self.options.ema else updated


#: Test-time augmentation: each extra view is the image under a random affine distortion of
#: this strength (`augment.distort`), drawn from a fixed key, so evaluations repeat exactly.
TTA_AFFINE = 0.5


def evaluate_batch(model, images, labels, mask, k: int = 5, views: int = 1
                   ) -> dict[str, jax.Array]:
    """Sums over a padded batch (loss, top-1, top-k) and per-record predictions. ``views`` > 1
    is test-time augmentation: the class probabilities are the mean over the image and
    ``views`` - 1 distorted copies of it."""
    x = images.astype(jnp.float32) / 255.0
    logits = model(x, train=False)
    logp = jax.nn.log_softmax(logits)
    if views > 1:
        tta_key = jax.random.key(0)
        probs = [jnp.exp(logp)] + [
            jax.nn.softmax(model(distort(x, jax.random.fold_in(tta_key, v), TTA_AFFINE, 0.0),
                                 train=False)) for v in range(1, views)]
        logp = jnp.log(jnp.mean(jnp.stack(probs), axis=0))
    loss = -jnp.take_along_axis(logp, labels[:, None], axis=1)[:, 0]
    top_p, top_i = jax.lax.top_k(logp, min(k, logits.shape[-1]))
    hit = (top_i == labels[:, None])
    return {"loss_sum": jnp.where(mask, loss, 0).sum(),
            "correct": (hit[:, 0] & mask).sum(), "top5": (hit.any(1) & mask).sum(),
            "count": mask.sum(), "top_index": top_i, "top_prob": jnp.exp(top_p)}

"""Every network etlkit trains, described as data in one table and built by one builder.

The table (``_TABLE``) is the specification: each entry gives a network's layers in the
paper's notation plus the few conventions that differ between networks (input size, kernel,
padding, batch norm, activation, pooling, initialisation). ``build`` turns any entry into a
``Model``, and ``count_params`` / ``flops_per_image`` read the same entries, so a network is
defined in exactly one place (docs/m-series.md for the M-series, Tsai 2016 Table 1).

Layer notation, comma-separated: ``32`` is a kxk convolution with 32 output channels, ``P`` a
2x2 pool with stride 2, ``FC-256`` a hidden fully connected layer (the input is flattened in
row-major NHWC order first), ``D0.25`` a dropout layer at a fixed rate. Residual networks add
``R64`` (a pre-activation residual block, He et al. 2016 "Identity mappings": BN, ReLU, 3x3
conv, BN, ReLU, 3x3 conv, plus the input; a bias-free 1x1 convolution of the pre-activated
input replaces the identity where the shape changes), ``R64/2`` (the same with stride 2 in its
first convolution and shortcut) and ``GAP`` (the closing BN and ReLU of a pre-activation stack,
then the global average over the image). Every network ends with an output layer
``FC-num_classes`` (weights and bias, no batch norm, no dropout) that returns logits; the
softmax belongs to the loss.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Iterator

import jax
import jax.numpy as jnp
from flax import nnx

from . import ops


@dataclasses.dataclass(frozen=True)
class Spec:
    """One network: its layers in the paper's notation and its layer conventions."""

    family: str  # "M" (Tsai 2016, 64x64), "seed" (28x28 digit/letter networks), "resnet"
    layers: str
    input_size: int = 64
    kernel_size: int = 3
    padding: str = "SAME"
    batch_norm: bool = True  # True: weights without bias -> BatchNorm; False: weights with bias
    activation: str = "relu"  # "relu" or "sigmoid"
    pool: str = "max"  # "max" or "avg"
    init: str = "he_normal"  # kernel init of every weight layer: "he_normal" or "glorot_uniform"
    auto_dropout: bool = True  # dropout after every conv / hidden FC at the builder's rates


def _seed(layers: str, **kw) -> Spec:
    """A 28x28 seed network: valid 3x3 convs with biases, ReLU, max-pool, Keras' default init."""
    conventions = dict(input_size=28, padding="VALID", batch_norm=False, init="glorot_uniform",
                       auto_dropout=False)
    return Spec("seed", layers, **(conventions | kw))


def _resnet(layers: str, input_size: int) -> Spec:
    """A pre-activation residual network: BN and ReLU everywhere, He init, no dropout."""
    return Spec("resnet", layers, input_size=input_size, auto_dropout=False)


_TABLE: dict[str, Spec] = {
    "M3": Spec("M", "FC-5000, FC-5000"),
    "M6-1": Spec("M", "32, 32, P, 64, 64, P, FC-256"),
    "M6-2": Spec("M", "64, P, 128, P, 512, P, FC-4096, FC-4096"),
    "M7-1": Spec("M", "64, P, 128, P, 512, 512, P, FC-4096, FC-4096"),
    "M7-2": Spec("M", "64, P, 128, P, 192, P, 256, P, FC-1024, FC-1024"),
    "M8": Spec("M", "32, 32, P, 64, 64, P, 128, 128, P, FC-1024"),
    "M9": Spec("M", "64, P, 128, P, 256, 256, P, 512, 512, P, FC-4096, FC-4096"),
    "M11": Spec("M", "64, 64, P, 128, 128, P, 256, 256, P, 512, 512, P, FC-1024, FC-1024"),
    "M12": Spec("M", "64, 64, P, 128, 128, P, 256, 256, P, 512, 512, 512, P, FC-4096, FC-4096"),
    "M13": Spec("M", "32, 32, P, 64, 64, P, 128, 128, P, 256, 256, P, 512, 512, P, "
                     "FC-1024, FC-1024"),
    "M16": Spec("M", "64, 64, P, 128, 128, P, 256, 256, 256, P, 512, 512, 512, P, "
                     "512, 512, 512, P, FC-4096, FC-4096"),
    "LeNet-5": _seed("6, P, 12, P", kernel_size=5, activation="sigmoid", pool="avg"),
    "MNIST-CNN-1": _seed("32, 64, P, FC-128"),
    "MNIST-CNN-2": _seed("32, 64, P, D0.25, FC-128"),
    "MNIST-CNN-3": _seed("32, 64, P, D0.25, FC-128, D0.5"),
    "MNIST-CNN-4": _seed("32, P, 64, P, FC-128"),
    "MNIST-CNN-5": _seed("32, P, 64, P, D0.25, FC-128"),
    "MNIST-CNN-6": _seed("32, P, 64, P, D0.25, FC-128, D0.5"),
    "CNN-93k": _seed("32, P, 64, P, 64, FC-64"),
    "FF-baseline": _seed("FC-128"),
    "EMNIST-CNN": _seed("32, P, 64, P, FC-128, D0.5"),
    # beyond the paper (docs/beyond.md): a stem, one block per stage, channels doubling as the
    # side halves; the 64x64 one pools its stem output first, so no stage runs at full size
    "ResNet-64": _resnet("32, P, R32, R64/2, R128/2, R256/2, GAP", 64),
    "ResNet-28": _resnet("32, R32, R64/2, R128/2, GAP", 28),
    "WideResNet-28": _resnet("64, R64, R128/2, R256/2, GAP", 28),
}

_ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "relu": jax.nn.relu, "sigmoid": jax.nn.sigmoid}
_POOLS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "max": ops.max_pool_2x2, "avg": lambda x: nnx.avg_pool(x, window_shape=(2, 2), strides=(2, 2))}
_INITS = {"he_normal": nnx.initializers.he_normal(),
          "glorot_uniform": nnx.initializers.glorot_uniform()}


def names() -> list[str]:
    """All network names, the M-series first in table order."""
    return list(_TABLE)


def spec(name: str) -> Spec:
    """The table entry of ``name`` (case-insensitive)."""
    by_lower = {n.lower(): n for n in _TABLE}
    if name.lower() not in by_lower:
        raise ValueError(f"unknown model {name!r}; valid names: {', '.join(_TABLE)}")
    return _TABLE[by_lower[name.lower()]]


@dataclasses.dataclass(frozen=True)
class _Step:
    """One layer of a planned network; ``n_in``/``n_out`` are channels or features."""

    kind: str  # "conv", "residual", "pool", "gap", "fc" (hidden), "dropout", "out"
    n_in: int = 0
    n_out: int = 0
    out_pixels: int = 1  # output height x width of a conv or residual block
    rate: float = 0.0  # dropout rate
    stride: int = 1  # residual blocks


def _plan(s: Spec, num_classes: int, conv_dropout: float, fc_dropout: float) -> Iterator[_Step]:
    """Walk the layer string, tracking the activation shape, and yield every layer."""
    side, channels, features = s.input_size, 1, None  # features: set once flattened
    shrink = 0 if s.padding == "SAME" else s.kernel_size - 1
    for token in (t.strip() for t in s.layers.split(",")):
        if token == "P":
            side //= 2
            yield _Step("pool")
        elif token.startswith("D"):
            yield _Step("dropout", rate=float(token[1:]))
        elif token.startswith("R"):
            width, _, stride = token[1:].partition("/")
            stride = int(stride or 1)
            side = -(-side // stride)  # SAME padding: ceil(side / stride)
            yield _Step("residual", channels, int(width), out_pixels=side * side, stride=stride)
            channels = int(width)
        elif token == "GAP":
            side = 1
            yield _Step("gap", channels, channels)
        elif token.startswith("FC-"):
            n_in = features or side * side * channels
            features = int(token[3:])
            yield _Step("fc", n_in, features)
            if s.auto_dropout and fc_dropout > 0:
                yield _Step("dropout", rate=fc_dropout)
        else:
            side -= shrink
            yield _Step("conv", channels, int(token), out_pixels=side * side)
            channels = int(token)
            if s.auto_dropout and conv_dropout > 0:
                yield _Step("dropout", rate=conv_dropout)
    yield _Step("out", features or side * side * channels, num_classes)


class ConvBlock(nnx.Module):
    """kxk convolution -> BatchNorm (M-series) or bias (seed nets) -> activation."""

    def __init__(self, s: Spec, n_in: int, n_out: int, dtype, rngs: nnx.Rngs):
        self.conv = nnx.Conv(n_in, n_out, (s.kernel_size, s.kernel_size), padding=s.padding,
                             use_bias=not s.batch_norm, kernel_init=_INITS[s.init],
                             dtype=dtype, param_dtype=jnp.float32,
                             conv_general_dilated=ops.conv, rngs=rngs)
        self.bn = _batch_norm(n_out, dtype, rngs) if s.batch_norm else None
        self.activation = s.activation

    def __call__(self, x: jax.Array, *, train: bool, key: jax.Array | None) -> jax.Array:
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x, use_running_average=not train)
        return _ACTIVATIONS[self.activation](x)


class DenseBlock(nnx.Module):
    """Flatten -> fully connected -> BatchNorm or bias -> activation; ``activation=None`` is
    the output layer (always with bias, no BatchNorm)."""

    def __init__(self, s: Spec, n_in: int, n_out: int, activation: str | None, dtype,
                 rngs: nnx.Rngs):
        hidden_bn = s.batch_norm and activation is not None
        self.linear = nnx.Linear(n_in, n_out, use_bias=not hidden_bn, kernel_init=_INITS[s.init],
                                 dtype=dtype, param_dtype=jnp.float32, rngs=rngs)
        self.bn = _batch_norm(n_out, dtype, rngs) if hidden_bn else None
        self.activation = activation

    def __call__(self, x: jax.Array, *, train: bool, key: jax.Array | None) -> jax.Array:
        x = self.linear(x.reshape(x.shape[0], -1))
        if self.bn is not None:
            x = self.bn(x, use_running_average=not train)
        return x if self.activation is None else _ACTIVATIONS[self.activation](x)


class ResidualBlock(nnx.Module):
    """Pre-activation residual block (see the module docstring for ``R64`` / ``R64/2``)."""

    def __init__(self, s: Spec, n_in: int, n_out: int, stride: int, dtype, rngs: nnx.Rngs):
        def conv(a, b, k, stride_):
            return nnx.Conv(a, b, (k, k), strides=stride_, padding="SAME", use_bias=False,
                            kernel_init=_INITS[s.init], dtype=dtype, param_dtype=jnp.float32,
                            conv_general_dilated=ops.conv, rngs=rngs)

        self.bn1 = _batch_norm(n_in, dtype, rngs)
        self.conv1 = conv(n_in, n_out, 3, stride)
        self.bn2 = _batch_norm(n_out, dtype, rngs)
        self.conv2 = conv(n_out, n_out, 3, 1)
        self.shortcut = conv(n_in, n_out, 1, stride) if (n_in, stride) != (n_out, 1) else None
        self.activation = s.activation

    def __call__(self, x: jax.Array, *, train: bool, key: jax.Array | None) -> jax.Array:
        act = _ACTIVATIONS[self.activation]
        pre = act(self.bn1(x, use_running_average=not train))
        y = self.conv1(pre)
        y = self.conv2(act(self.bn2(y, use_running_average=not train)))
        return y + (x if self.shortcut is None else self.shortcut(pre))


class GlobalPool(nnx.Module):
    """The closing BN and activation of a pre-activation stack, then the mean over the image."""

    def __init__(self, s: Spec, channels: int, dtype, rngs: nnx.Rngs):
        self.bn = _batch_norm(channels, dtype, rngs)
        self.activation = s.activation

    def __call__(self, x: jax.Array, *, train: bool, key: jax.Array | None) -> jax.Array:
        x = _ACTIVATIONS[self.activation](self.bn(x, use_running_average=not train))
        return x.mean(axis=(1, 2), keepdims=True)


class Pool(nnx.Module):
    """2x2 pooling with stride 2 (max or average)."""

    def __init__(self, kind: str):
        self.kind = kind

    def __call__(self, x: jax.Array, *, train: bool, key: jax.Array | None) -> jax.Array:
        return _POOLS[self.kind](x)


class Dropout(nnx.Module):
    """Dropout, active only in train mode, with the key the model derives for this layer."""

    def __init__(self, rate: float):
        self.rate = rate

    def __call__(self, x: jax.Array, *, train: bool, key: jax.Array | None) -> jax.Array:
        return ops.dropout(x, self.rate, key) if train else x


def _batch_norm(n: int, dtype, rngs: nnx.Rngs) -> nnx.BatchNorm:
    """Keras-style BatchNorm (momentum 0.99, epsilon 1e-3); statistics stay float32."""
    return nnx.BatchNorm(n, momentum=0.99, epsilon=1e-3, dtype=dtype, param_dtype=jnp.float32,
                         rngs=rngs)


class Model(nnx.Module):
    """A network built from its table entry: a flat list of blocks run in order."""

    def __init__(self, s: Spec, num_classes: int, *, conv_dropout: float, fc_dropout: float,
                 dtype, rngs: nnx.Rngs):
        self.input_size = s.input_size
        self.num_classes = num_classes
        self.dtype = dtype
        layers = []
        for step in _plan(s, num_classes, conv_dropout, fc_dropout):
            if step.kind == "conv":
                layers.append(ConvBlock(s, step.n_in, step.n_out, dtype, rngs))
            elif step.kind == "residual":
                layers.append(ResidualBlock(s, step.n_in, step.n_out, step.stride, dtype, rngs))
            elif step.kind == "gap":
                layers.append(GlobalPool(s, step.n_in, dtype, rngs))
            elif step.kind in ("fc", "out"):
                activation = s.activation if step.kind == "fc" else None
                layers.append(DenseBlock(s, step.n_in, step.n_out, activation, dtype, rngs))
            elif step.kind == "pool":
                layers.append(Pool(s.pool))
            else:
                layers.append(Dropout(step.rate))
        self.layers = nnx.List(layers)

    def __call__(self, images: jax.Array, *, train: bool,
                 key: jax.Array | None = None) -> jax.Array:
        """Logits, float32 (B, num_classes), of images (B, H, W) or (B, H, W, 1) in [0, 1].

        ``train=True`` uses batch statistics and dropout driven by ``key``; ``train=False``
        uses the running statistics and no dropout, and ignores ``key``.
        """
        x = self._prepare(images)
        for i, layer in enumerate(self.layers):
            subkey = None
            if train and isinstance(layer, Dropout):
                if key is None:
                    raise ValueError("train=True needs a dropout key")
                subkey = jax.random.fold_in(key, i)
            x = layer(x, train=train, key=subkey)
        return x.astype(jnp.float32)

    def calibrate(self, images: jax.Array) -> None:
        """Batch norm in train mode without dropout: updates the running statistics towards
        those of the network as it runs at test time (see `Steps.recalibrate`)."""
        x = self._prepare(images)
        for layer in self.layers:
            if not isinstance(layer, Dropout):
                x = layer(x, train=True, key=None)

    def activations(self, images: jax.Array) -> list[tuple[str, jax.Array]]:
        """Eval-mode output of every conv block (after its activation) and residual block:
        [("conv1", a), ..., ("block1", b), ...]."""
        x, out, count = self._prepare(images), [], {"conv": 0, "block": 0}
        for layer in self.layers:
            x = layer(x, train=False, key=None)
            kind = {ConvBlock: "conv", ResidualBlock: "block"}.get(type(layer))
            if kind:
                count[kind] += 1
                out.append((f"{kind}{count[kind]}", x))
        return out

    def conv_kernels(self) -> list[jax.Array]:
        """The (k, k, in, out) kernel of every 3x3 (or kxk) convolution, in order; residual
        blocks give their two, not their 1x1 shortcut."""
        kernels = []
        for layer in self.layers:
            if isinstance(layer, ConvBlock):
                kernels.append(layer.conv.kernel[...])
            elif isinstance(layer, ResidualBlock):
                kernels += [layer.conv1.kernel[...], layer.conv2.kernel[...]]
        return kernels

    def _prepare(self, images: jax.Array) -> jax.Array:
        """Add the channel axis when missing, check the size, cast to the compute dtype."""
        x = images[..., None] if images.ndim == 3 else images
        if x.shape[1:] != (self.input_size, self.input_size, 1):
            raise ValueError(f"expected images (B, {self.input_size}, {self.input_size}[, 1]), "
                             f"got {images.shape}")
        return x.astype(self.dtype)


#: XLA options of the program that draws the initial weights: its random-bit arithmetic
#: compiles in a third of the time with fewer optimisation passes, and draws the same values
#: to the bit (tests/test_models.py compares them with the values drawn op by op).
INIT_COMPILER_OPTIONS = {"xla_backend_optimization_level": 1}


def build(name: str, num_classes: int, *, rngs: nnx.Rngs, conv_dropout: float = 0.5,
          fc_dropout: float = 0.5, dtype=jnp.float32) -> Model:
    """Build ``name``. ``dtype`` is the computation dtype (params stay float32); the dropout
    rates apply to the M-series, where dropout follows every conv and hidden FC layer (the
    seed networks carry their own fixed rates in the table; the residual networks have none).

    The initial weights are drawn in one compiled program: the same values as drawn op by op,
    for one compilation instead of one per initializer and shape (seconds on a CPU)."""
    s = spec(name)  # an unknown name fails here, outside the compilation
    rngs_def, rngs_state = nnx.split(rngs)
    model_def = []  # the model's structure, static, known once the program is traced
    # inside another trace (nnx.eval_shape in count_params and load_model) nothing is
    # compiled, and JAX takes compiler options on the outermost jit only
    traced = any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree.leaves(rngs_state))

    @functools.partial(jax.jit, compiler_options=None if traced else INIT_COMPILER_OPTIONS)
    def draw(rngs_state):
        streams = nnx.merge(rngs_def, rngs_state)
        graph, state = nnx.split(Model(s, num_classes, conv_dropout=conv_dropout,
                                       fc_dropout=fc_dropout, dtype=dtype, rngs=streams))
        model_def.append(graph)
        return state, nnx.state(streams)

    model_state, rngs_state = draw(rngs_state)
    nnx.update(rngs, rngs_state)  # the streams advanced as drawing op by op advances them
    return nnx.merge(model_def[0], model_state)


def count_params(name: str, num_classes: int) -> int:
    """Trainable parameters (weights, biases, BatchNorm scale and shift), nothing allocated."""
    abstract = nnx.eval_shape(lambda: build(name, num_classes, rngs=nnx.Rngs(0)))
    return sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(nnx.state(abstract, nnx.Param)))


def flops_per_image(name: str, num_classes: int) -> int:
    """Forward-pass FLOPs of one image: 2 x the multiply-adds of every conv and dense layer
    (a residual block's two 3x3 convolutions and its 1x1 shortcut, where it has one)."""
    s = spec(name)
    macs = 0
    for step in _plan(s, num_classes, 0.0, 0.0):
        if step.kind == "conv":
            macs += step.out_pixels * s.kernel_size**2 * step.n_in * step.n_out
        elif step.kind == "residual":
            macs += step.out_pixels * 9 * (step.n_in + step.n_out) * step.n_out
            if (step.n_in, step.stride) != (step.n_out, 1):
                macs += step.out_pixels * step.n_in * step.n_out
        elif step.kind in ("fc", "out"):
            macs += step.n_in * step.n_out
    return 2 * macs

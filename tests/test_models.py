"""The network table and builder (train/models.py) against docs/m-series.md.

Large models are only ever built abstractly (nnx.eval_shape inside count_params); real forward
passes use M6-1 and the 28x28 seed networks.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from networks import one_of_each_make_up

from train import models

M_SERIES = ["M3", "M6-1", "M6-2", "M7-1", "M7-2", "M8", "M9", "M11", "M12", "M13", "M16"]
SEEDS = ["LeNet-5"] + [f"MNIST-CNN-{i}" for i in range(1, 7)] + [
    "CNN-93k", "FF-baseline", "EMNIST-CNN"]
RESNETS = ["ResNet-64", "ResNet-28", "WideResNet-28"]
CLASS_COUNTS = (3, 75, 881, 1004)

#: docs/m-series.md, "Trainable parameter counts these conventions give".
M_PARAMS = {
    "M3": (45_515_003, 45_875_075, 49_905_881, 50_521_004),
    "M6-1": (4_260_771, 4_279_275, 4_486_417, 4_518_028),
    "M6-2": (151_689_155, 151_984_139, 155_286_321, 155_790_252),
    "M7-1": (154_049_475, 154_344_459, 157_646_641, 158_150_572),
    "M7-2": (5_989_187, 6_062_987, 6_889_137, 7_015_212),
    "M8": (8_680_611, 8_754_411, 9_580_561, 9_706_636),
    "M9": (54_861_763, 55_156_747, 58_458_929, 58_962_860),
    "M11": (14_130_499, 14_204_299, 15_030_449, 15_156_524),
    "M12": (57_406_787, 57_701_771, 61_003_953, 61_507_884),
    "M13": (7_866_531, 7_940_331, 8_766_481, 8_892_556),
    "M16": (39_912_259, 40_207_243, 43_509_425, 44_013_356),
}

#: docs/m-series.md, "Forward cost per 64x64 image (881 classes)", GFLOP.
M_GFLOP_881 = {"M3": 0.10, "M6-1": 0.20, "M6-2": 0.77, "M7-1": 1.97, "M7-2": 0.34, "M8": 0.32,
               "M9": 1.17, "M11": 1.69, "M12": 2.08, "M13": 0.54, "M16": 2.55}

#: Seed networks (biases, no batch norm; conv: 9*in*out + out, FC: in*out + out).
SEED_PARAMS = {
    # C1 5x5x1x6+6 = 156 (28->24, pool 12); C3 5x5x6x12+12 = 1,812 (12->8, pool 4);
    # FC 4*4*12=192 -> 10: 1,930.  156 + 1,812 + 1,930 = 3,898.
    ("LeNet-5", 10): 3_898,
    # Cases 1-3, conv-conv-pool: conv 320 + conv 18,496 (28->26->24, pool 12);
    # FC 12*12*64=9,216 -> 128: 1,179,776; FC 128 -> 10: 1,290.  Total 1,199,882
    # (Keras' mnist_cnn is case 3); dropout adds no parameters, so 1-3 are equal.
    ("MNIST-CNN-1", 10): 1_199_882,
    ("MNIST-CNN-2", 10): 1_199_882,
    ("MNIST-CNN-3", 10): 1_199_882,
    # Cases 4-6, conv-pool-conv-pool: 28->26, pool 13, ->11, pool 5 (floor);
    # 320 + 18,496 + FC 5*5*64=1,600 -> 128: 204,928 + 1,290 = 225,034.
    ("MNIST-CNN-4", 10): 225_034,
    ("MNIST-CNN-5", 10): 225_034,
    ("MNIST-CNN-6", 10): 225_034,
    # 320 + 18,496 + 36,928 (5->3, flatten 576) + FC-64 36,928 + FC-10 650.
    ("CNN-93k", 10): 93_322,
    # 784*128+128 = 100,480 + 1,290.
    ("FF-baseline", 10): 101_770,
    # 320 + 18,496 + 204,928 + FC 128 -> 47: 6,063.
    ("EMNIST-CNN", 47): 229_807,
}

def _preact_params(c_in: int, c_out: int, stride: int) -> int:
    """One pre-activation block: BN(c_in) scale+shift, 3x3 c_in->c_out, BN(c_out), 3x3
    c_out->c_out, all convs without bias, plus a 1x1 c_in->c_out shortcut when the shape
    changes."""
    shortcut = c_in * c_out if (c_in, stride) != (c_out, 1) else 0
    return 2 * c_in + 9 * c_in * c_out + 2 * c_out + 9 * c_out * c_out + shortcut


#: Residual networks: stem 3x3 1->c (no bias) + BN; blocks; closing BN; FC with bias.
RESNET_PARAMS = {
    # 9*32 + 64 = 352; R32 18,560; R64/2 57,536; R128/2 229,760; BN 256; 128*10+10 = 1,290
    ("ResNet-28", 10): 352 + _preact_params(32, 32, 1) + _preact_params(32, 64, 2)
    + _preact_params(64, 128, 2) + 256 + 1_290,
    # ... + R256/2 918,272; BN 512; 256*75+75 = 19,275
    ("ResNet-64", 75): 352 + _preact_params(32, 32, 1) + _preact_params(32, 64, 2)
    + _preact_params(64, 128, 2) + _preact_params(128, 256, 2) + 512 + 19_275,
    ("WideResNet-28", 10): 9 * 64 + 128 + _preact_params(64, 64, 1)
    + _preact_params(64, 128, 2) + _preact_params(128, 256, 2) + 512 + 2_570,
}

WITH_DROPOUT = {"M6-1", "MNIST-CNN-2", "MNIST-CNN-3", "MNIST-CNN-5", "MNIST-CNN-6", "EMNIST-CNN"}


#: A model's forward pass compiled as one program, as training and inference run it: a few
#: compilations per network instead of one per operation and shape (seconds a test).
_forward = nnx.jit(lambda model, x, train, key: model(x, train=train, key=key),
                   static_argnames="train")


def _activation_shapes(model: models.Model,
                       x: jax.Array) -> list[tuple[str, jax.ShapeDtypeStruct]]:
    """`model.activations(x)` as (name, shape and dtype), traced without computing anything."""
    names = []

    def arrays():
        named = model.activations(x)
        names.extend(name for name, _ in named)
        return [a for _, a in named]

    return list(zip(names, nnx.eval_shape(arrays), strict=True))


def _images(size: int, batch: int = 2, seed: int = 0) -> jax.Array:
    return jax.random.uniform(jax.random.key(seed), (batch, size, size))


def _batch_stats(model: models.Model) -> list[np.ndarray]:
    return [np.asarray(x) for x in jax.tree.leaves(nnx.state(model, nnx.BatchStat))]


def test_names_and_spec_lookup():
    assert models.names() == M_SERIES + SEEDS + RESNETS
    assert [models.spec(n).input_size for n in RESNETS] == [64, 28, 28]
    assert models.spec("m7-2") is models.spec("M7-2")
    assert models.spec("lenet-5").input_size == 28
    assert [models.spec(n).family for n in M_SERIES] == ["M"] * len(M_SERIES)
    assert {models.spec(n).input_size for n in M_SERIES} == {64}
    assert {(models.spec(n).family, models.spec(n).input_size) for n in SEEDS} == {("seed", 28)}


def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError, match=r"unknown model 'M99'; valid names: M3, M6-1, ") as e:
        models.spec("M99")
    assert "\n" not in str(e.value)
    assert all(name in str(e.value) for name in models.names())


@pytest.mark.parametrize("num_classes", CLASS_COUNTS)
@pytest.mark.parametrize("name", M_SERIES)
def test_m_series_param_counts(name, num_classes):
    expected = M_PARAMS[name][CLASS_COUNTS.index(num_classes)]
    assert models.count_params(name, num_classes) == expected


@pytest.mark.parametrize(("name", "num_classes"), list(SEED_PARAMS))
def test_seed_param_counts(name, num_classes):
    assert models.count_params(name, num_classes) == SEED_PARAMS[(name, num_classes)]


def test_resnet_param_counts():
    assert RESNET_PARAMS == {("ResNet-28", 10): 307_754, ("ResNet-64", 75): 1_244_267,
                             ("WideResNet-28", 10): 1_225_802}
    for (name, num_classes), expected in RESNET_PARAMS.items():
        assert models.count_params(name, num_classes) == expected


def test_resnet_flops_by_hand():
    # a block's MACs: out_pixels x (9 c_in c_out + 9 c_out c_out [+ c_in c_out shortcut])
    def block(side, c_in, c_out, shortcut=True):
        return side * side * (9 * c_in * c_out + 9 * c_out * c_out + shortcut * c_in * c_out)
    resnet28 = 28 * 28 * 9 * 32 + block(28, 32, 32, False) + block(14, 32, 64) + block(
        7, 64, 128) + 128 * 10
    assert models.flops_per_image("ResNet-28", 10) == 2 * resnet28 == 74_313_216
    # the stem runs at 64x64, then a pool: stages at 32, 16, 8, 4
    resnet64 = 64 * 64 * 9 * 32 + block(32, 32, 32, False) + block(16, 32, 64) + block(
        8, 64, 128) + block(4, 128, 256) + 256 * 75
    assert models.flops_per_image("ResNet-64", 75) == 2 * resnet64
    # twice ResNet-28's widths, one stage fewer: 28, 14, 7
    wide = 28 * 28 * 9 * 64 + block(28, 64, 64, False) + block(14, 64, 128) + block(
        7, 128, 256) + 256 * 10
    assert models.flops_per_image("WideResNet-28", 10) == 2 * wide
    # cheaper per image than the M-series networks it is set against
    assert models.flops_per_image("ResNet-64", 75) < models.flops_per_image("M7-2", 75) / 2


def test_resnet_forward_blocks_and_batch_norm():
    model = models.build("ResNet-28", 10, rngs=nnx.Rngs(0))
    x = _images(28, batch=3)
    stats = _batch_stats(model)
    assert len(stats) == 2 * (1 + 2 + 2 + 2 + 1)  # stem, two per block, the closing BN
    logits = _forward(model, x, train=False, key=None)
    assert logits.shape == (3, 10) and logits.dtype == jnp.float32
    # no dropout: train mode differs from eval mode only by batch statistics, not by key
    train1 = _forward(model, x, train=True, key=jax.random.key(1))
    np.testing.assert_array_equal(train1, _forward(model, x, train=True, key=jax.random.key(2)))
    assert not np.allclose(train1, logits)
    assert all(not np.array_equal(b, a)
               for b, a in zip(stats, _batch_stats(model), strict=True))
    assert [(n, a.shape) for n, a in _activation_shapes(model, x)] == [
        ("conv1", (3, 28, 28, 32)), ("block1", (3, 28, 28, 32)), ("block2", (3, 14, 14, 64)),
        ("block3", (3, 7, 7, 128))]
    assert [k.shape for k in model.conv_kernels()] == [
        (3, 3, 1, 32), (3, 3, 32, 32), (3, 3, 32, 32), (3, 3, 32, 64), (3, 3, 64, 64),
        (3, 3, 64, 128), (3, 3, 128, 128)]
    # the identity shortcut: with both convolutions of block1 zeroed it passes its input on
    block = model.layers[1]
    block.conv2.kernel[...] = jnp.zeros_like(block.conv2.kernel[...])

    @nnx.jit
    def stem_and_block1(model, x):
        stem = model.layers[0](x[..., None], train=False, key=None)
        return stem, model.layers[1](stem, train=False, key=None)

    stem, passed = stem_and_block1(model, x)
    np.testing.assert_array_equal(passed, stem)


@pytest.mark.parametrize("name", M_SERIES)
def test_m_series_flops(name):
    assert models.flops_per_image(name, 881) / 1e9 == pytest.approx(M_GFLOP_881[name], rel=0.03)


def test_seed_flops_by_hand():
    # conv 26*26*9*32 + 24*24*9*32*64; FC 9216*128 + 128*10 multiply-adds, times 2.
    macs = 26 * 26 * 9 * 32 + 24 * 24 * 9 * 32 * 64 + 9216 * 128 + 128 * 10
    assert models.flops_per_image("MNIST-CNN-3", 10) == 2 * macs


@pytest.fixture(scope="module")
def m6_1() -> models.Model:
    """One float32 M6-1 at 3 classes for the tests that do not change it."""
    return models.build("M6-1", 3, rngs=nnx.Rngs(0))


def test_m6_1_structure_and_init(m6_1):
    model = m6_1
    assert [k.shape for k in model.conv_kernels()] == [
        (3, 3, 1, 32), (3, 3, 32, 32), (3, 3, 32, 64), (3, 3, 64, 64)]
    params = jax.tree.leaves(nnx.state(model, nnx.Param))
    assert {p.dtype for p in params} == {jnp.dtype(jnp.float32)}
    # He-normal: std sqrt(2 / fan_in) on the FC-256 kernel (16,384 x 256 draws).
    fc = next(p for p in params if p.shape == (16384, 256))
    assert float(jnp.std(fc)) == pytest.approx(np.sqrt(2 / 16384), rel=0.02)
    # BatchNorm statistics exist for the 4 convs and the hidden FC, none for the output layer.
    assert len(_batch_stats(model)) == 2 * 5


def test_compiled_initialisation_draws_what_op_by_op_draws():
    """build draws the weights in one compiled program, with fewer optimisation passes: the
    values of the Model constructed outside it, one initializer call at a time (what every run
    before drew for its seed; every network of the table was compared so when the options
    were chosen)."""
    compiled = nnx.state(models.build("FF-baseline", 10, rngs=nnx.Rngs(3)))
    eager = nnx.state(models.Model(models.spec("FF-baseline"), 10, conv_dropout=0.5,
                                   fc_dropout=0.5, dtype=jnp.float32, rngs=nnx.Rngs(3)))
    for a, b in zip(jax.tree.leaves(compiled), jax.tree.leaves(eager), strict=True):
        np.testing.assert_array_equal(a, b)


def test_m6_1_forward_train_and_eval():
    model = models.build("M6-1", 75, rngs=nnx.Rngs(0))
    x = _images(64)
    stats = _batch_stats(model)

    logits = _forward(model, x, train=False, key=None)
    assert logits.shape == (2, 75)
    assert logits.dtype == jnp.float32
    np.testing.assert_array_equal(logits, _forward(model, x, train=False, key=jax.random.key(5)))
    np.testing.assert_array_equal(logits, _forward(model, x[..., None], train=False, key=None))
    for before, after in zip(stats, _batch_stats(model), strict=True):
        np.testing.assert_array_equal(before, after)

    key = jax.random.key(1)
    train1 = _forward(model, x, train=True, key=key)
    assert train1.shape == (2, 75)
    assert train1.dtype == jnp.float32
    assert not np.array_equal(train1, logits)
    assert not np.array_equal(train1, _forward(model, x, train=True, key=jax.random.key(2)))
    changed = [not np.array_equal(b, a) for b, a in zip(stats, _batch_stats(model), strict=True)]
    assert all(changed)
    with pytest.raises(ValueError, match="dropout key"):
        model(x, train=True)


def test_m6_1_activations_named_per_conv(m6_1):
    acts = m6_1.activations(_images(64))
    assert [(n, a.shape) for n, a in acts] == [
        ("conv1", (2, 64, 64, 32)), ("conv2", (2, 64, 64, 32)),
        ("conv3", (2, 32, 32, 64)), ("conv4", (2, 32, 32, 64))]
    assert all(float(a.min()) >= 0 for _, a in acts)  # after ReLU


def test_wrong_image_size_rejected(m6_1):
    with pytest.raises(ValueError, match="expected images"):
        m6_1(_images(28), train=False)


def test_no_dropout_when_rates_are_zero():
    model = models.build("M6-1", 3, rngs=nnx.Rngs(0), conv_dropout=0.0, fc_dropout=0.0)
    x = _images(64)
    np.testing.assert_array_equal(model(x, train=True), model(x, train=True, key=jax.random.key(3)))


def test_bf16_compute_float32_params_and_logits():
    model = models.build("M6-1", 75, rngs=nnx.Rngs(0), dtype=jnp.bfloat16)
    x = _images(64)
    params = jax.tree.leaves(nnx.state(model, nnx.Param))
    assert {p.dtype for p in params} == {jnp.dtype(jnp.float32)}
    assert _forward(model, x, train=False, key=None).dtype == jnp.float32
    assert _forward(model, x, train=True, key=jax.random.key(0)).dtype == jnp.float32
    assert {a.dtype for _, a in _activation_shapes(model, x)} == {jnp.dtype(jnp.bfloat16)}
    assert {s.dtype for s in _batch_stats(model)} == {np.dtype(np.float32)}


@pytest.mark.parametrize("name", SEEDS)
def test_seed_forward(name):
    """Every seed network's shapes; the forward passes compiled and run for one network of
    each make-up (the others stack the same layers in other widths)."""
    num_classes = 47 if name == "EMNIST-CNN" else 10
    model = models.build(name, num_classes, rngs=nnx.Rngs(0))
    x = _images(28, batch=3)
    assert _batch_stats(model) == []
    convs = [(k.shape[0], k.shape[1]) for k in model.conv_kernels()]
    assert len(_activation_shapes(model, x)) == len(convs)
    assert set(convs) <= {(5, 5) if name == "LeNet-5" else (3, 3)}
    if name not in one_of_each_make_up():
        for train, key in ((False, None), (True, jax.random.key(1))):
            logits = nnx.eval_shape(lambda m, t=train, k=key: m(x, train=t, key=k), model)
            assert (logits.shape, logits.dtype) == ((3, num_classes), jnp.float32)
        return

    logits = _forward(model, x, train=False, key=None)
    assert logits.shape == (3, num_classes)
    assert logits.dtype == jnp.float32
    np.testing.assert_array_equal(logits, _forward(model, x, train=False, key=jax.random.key(9)))

    train1 = _forward(model, x, train=True, key=jax.random.key(1))
    np.testing.assert_array_equal(train1, _forward(model, x, train=True, key=jax.random.key(1)))
    train2 = _forward(model, x, train=True, key=jax.random.key(2))
    if name in WITH_DROPOUT:
        assert not np.array_equal(train1, train2)
    else:  # no dropout and no batch norm: train mode is eval mode
        np.testing.assert_array_equal(train1, train2)
        np.testing.assert_array_equal(train1, logits)


def test_jit_split_merge_matches_eager():
    model = models.build("MNIST-CNN-3", 10, rngs=nnx.Rngs(0))
    graphdef, state = nnx.split(model)
    x, key = _images(28), jax.random.key(4)

    @jax.jit
    def forward(state, x, key):
        return nnx.merge(graphdef, state)(x, train=True, key=key)

    np.testing.assert_allclose(forward(state, x, key), model(x, train=True, key=key), rtol=1e-5,
                               atol=1e-6)

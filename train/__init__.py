"""The JAX/Flax trainer and everything that uses a trained run.

Training core (one concern a module): `config` (a run's options, its model and optimizer),
`recipes` (each network's own recipe), `models` (the networks as one table and one builder),
`ops` (pooling, dropout and convolution kernels fast on XLA:CPU), `augment` (on-device
distortion), `targets` (label smoothing, mixup, cutmix), `ema` (the weights' moving average),
`data` (shards -> device batches), `steps` (the jitted functions and the device
mesh), `checkpoint` (the checkpoint file format), `loop` (`fit`: the training loop),
`progress` (the bar), `rundir` (the run folder: config, metrics, checkpoints, evaluations;
loads a model).

`inference/` (new images through a run), `reports/` (evaluation and figures) and
`experiments/` (grids of runs, the demo) build on the core; `cli` registers the commands.
"""

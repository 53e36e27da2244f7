"""An exponential moving average of a model's weights, the weights a run evaluates and keeps.

It lives in the train state beside the model and optimizer (so `latest` checkpoints hold it
and a resumed run continues it exactly) and is updated inside the jitted step. The decay warms
up as in timm and TensorFlow's `ExponentialMovingAverage(num_updates=...)`:
min(decay, (1 + step) / (10 + step)), so a short run's average is not dominated by its
random initial weights.
"""

import jax
import jax.numpy as jnp
from flax import nnx


def initial(model: nnx.Module) -> nnx.State:
    """The average's start: a copy of the model's parameters."""
    return jax.tree.map(jnp.copy, nnx.state(model, nnx.Param))


def update(average: nnx.State, model: nnx.Module, step: jax.Array, decay: float) -> nnx.State:
    """The average after optimizer step number ``step`` (0 for the first)."""
    rate = jnp.minimum(decay, (1.0 + step) / (10.0 + step))
    return jax.tree.map(lambda a, p: rate * a + (1 - rate) * p, average,
                        nnx.state(model, nnx.Param))

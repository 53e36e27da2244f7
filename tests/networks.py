"""Which networks of the table stand for the others in tests that compile them."""

import re

from train import models


def one_of_each_make_up() -> list[str]:
    """The first network of the table with each make-up: the kinds of layer it stacks (conv,
    pool, fully connected, dropout, residual block, strided residual block, global pooling) and
    the spec fields the builder and converter read. Networks of one make-up differ only in
    widths and depths, which build, run and export the same way."""
    seen, chosen = set(), []
    for name in models.names():
        spec = models.spec(name)
        kinds = frozenset(re.sub(r"[0-9.]+", "", layer.strip()) for layer in
                          spec.layers.split(","))
        make_up = (kinds, spec.input_size, spec.kernel_size, spec.padding, spec.batch_norm,
                   spec.activation, spec.pool, spec.auto_dropout)
        if make_up not in seen:
            seen.add(make_up)
            chosen.append(name)
    return chosen

"""The JAX/Flax trainer for the M-series networks (issue 4; nothing here yet)."""

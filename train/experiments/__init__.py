"""Many runs at once: the paper's Table 3 grid, the seed networks on real digits, the demo."""

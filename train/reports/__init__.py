"""What a run is shown as: its evaluation on a split (eval.json and the PNGs) and the paper's
figures."""

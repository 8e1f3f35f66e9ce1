"""``python -m data_prep {brats,acdc} RAW_DIR OUT_DIR``: the same as ``svgan prepare``."""

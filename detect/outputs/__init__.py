"""Outputs: boxes.json and its schema, the Kaggle submission CSV, overlay PNGs, report plots."""

"""`detect compare`: several models trained on the same splits, seed and budget, tested on the
held-out patients: plan.py (one config and run folder per model) · held_out.py (the test split
through the one Predictor, metrics with bootstrap intervals, speed) · run.py (train, test, the
finished markers, the paired tests) · report.py (compare.csv, report.md) · plots.py."""

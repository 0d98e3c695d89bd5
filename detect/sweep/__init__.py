"""`detect sweep`: one training run per combination of `--grid key=v1,v2` values: grid.py (typed
values through detect.config's own parser, combinations, run names) · run.py (resumable runs) ·
table.py (sweep.csv) · observations.py (per-key means, paired differences, the sentences) ·
report.py (report.md and the per-key plot)."""

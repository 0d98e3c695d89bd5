"""`detect eda`: the exploratory analysis of a dataset as a report folder (run.py), its plots
(plots.py, matplotlib's Figure API), its text (sections.py) and files (report.py: Markdown,
self-contained HTML, eda.json). The numbers themselves are data_prep.eda's (no torch)."""

"""The numbers of `detect eda`, without torch and without plots.

- `tables`: what was read -> one tidy table of images and one of boxes, plus the data-quality
  facts found on the way. From the label tables alone (RSNA's labels CSV, optionally the class
  info and a DICOM header table) or from the records `detect prepare` made (either dataset).
- `stats`: those tables -> the dict that eda.json holds: every count, share, 95% interval,
  histogram and grid the report shows.

The plots and the report (matplotlib, markdown, HTML) live in `detect/eda/`; they read only
the dict `stats.compute_eda` returns, so every number a plot or table shows is in eda.json.
"""

from data_prep.eda.stats import compute_eda, intensity_histogram, wilson_interval
from data_prep.eda.tables import EdaTables, read_header_table, tables_from_label_files, tables_from_records

__all__ = [
    "EdaTables",
    "compute_eda",
    "intensity_histogram",
    "read_header_table",
    "tables_from_label_files",
    "tables_from_records",
    "wilson_interval",
]

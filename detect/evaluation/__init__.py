"""Evaluation: exact metrics, the scoring shared with validation, `detect eval`, the report."""

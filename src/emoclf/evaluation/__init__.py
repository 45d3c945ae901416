"""Metrics (pure functions) and reports (tables, plots, CSVs) on untouched evaluation data."""

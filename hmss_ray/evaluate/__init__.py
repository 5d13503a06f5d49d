"""Evaluation: per-patient challenge metrics of a split, tables, figures and a Markdown report."""

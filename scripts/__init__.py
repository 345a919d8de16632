"""Reproducible experiments, run from the checkout as `python -m scripts.<name>`."""

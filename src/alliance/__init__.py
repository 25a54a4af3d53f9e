"""Reproducible alliance-outcome analyses for psychotherapy research."""

__version__ = "0.1.0"

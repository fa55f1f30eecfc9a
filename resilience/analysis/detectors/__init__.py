"""Detectors: one module per kind of finding, on the base class in ``base``."""

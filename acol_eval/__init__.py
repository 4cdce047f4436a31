"""acol-eval: train ACoL models, localise objects with class activation maps, score WSOL."""

__version__ = "0.1.0"

"""acol-eval: train ACoL models, localise objects with class activation maps, score WSOL."""

__version__ = "0.1.0"


def list_metrics() -> list[str]:
    """The names of every metric score reports, built-in and registered, in summary.csv's
    order (acol_eval.metricdefs holds them as objects)."""
    from .metricdefs import list_metrics as names

    return names()

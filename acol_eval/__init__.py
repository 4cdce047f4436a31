"""acol-eval: train ACoL models, localise objects with class activation maps, score WSOL."""

__version__ = "0.1.0"


def list_methods() -> list[str]:
    """The names of the registered training methods (`train --method`), built-in first.

    A method defined outside acol-eval appears once its module has been imported."""
    from .trainmethod import list_methods as registered  # torch only when asked

    return registered()

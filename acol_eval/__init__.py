"""acol-eval: train ACoL models, localise objects with class activation maps, score WSOL."""

__version__ = "0.1.0"


def list_formats() -> dict[str, str]:
    """The annotation formats a source can be read from (`FORMAT:PATH`): each name with
    one line saying what it is and how its boxes are written."""
    from .readers import format_descriptions  # here: `import acol_eval` stays light

    return format_descriptions()

"""acol-eval: train ACoL models, localise objects with class activation maps, score WSOL.

The Python API (docs/python-api.md): `synth`, `train`, `localize`, `score`, `boxes`,
`compare`, `load_model`, `open_maps` (acol_eval.api, imported on first use, so `import
acol_eval` stays light), the result objects `LocalizeRun` and `ScoreReport` (each with
`.open(folder)`), and `AcolError`, the one exception they raise.
"""

from acol_eval.util.errors import AcolError as AcolError  # the API's one exception

__version__ = "0.1.0"

# The jobs' subpackages are named apart from these functions (training/, comparison/),
# so acol_eval.train is one thing: the function.
API = ("synth", "train", "localize", "score", "boxes", "compare", "load_model", "open_maps")
# the result objects the functions return, for opening a folder later (`.open(folder)`)
RESULTS = {"LocalizeRun": "acol_eval.maps.runfolder", "ScoreReport": "acol_eval.maps.reportfolder"}


def __getattr__(name: str):
    if name in API:
        from acol_eval import api

        return getattr(api, name)
    if name in RESULTS:
        import importlib

        return getattr(importlib.import_module(RESULTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *API, *RESULTS])


def list_metrics() -> list[str]:
    """The names of every metric score reports, built-in and registered, in summary.csv's
    order (acol_eval.metrics.metricdefs holds them as objects)."""
    from acol_eval.metrics.metricdefs import list_metrics as names

    return names()


def list_methods() -> list[str]:
    """The names of the registered training methods (`train --method`), built-in first.

    A method defined outside acol-eval appears once its module has been imported."""
    from acol_eval.models.trainmethod import list_methods as registered  # torch only when asked

    return registered()


def list_formats() -> dict[str, str]:
    """The annotation formats a source can be read from (`FORMAT:PATH`): each name with
    one line saying what it is and how its boxes are written."""
    from acol_eval.data.readers import format_descriptions  # here: `import acol_eval` stays light

    return format_descriptions()

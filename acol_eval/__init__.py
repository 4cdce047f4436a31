"""acol-eval: train ACoL models, localise objects with class activation maps, score WSOL.

The Python API (docs/python-api.md): `synth`, `train`, `localize`, `score`, `boxes`,
`compare`, `load_model`, `open_maps` (acol_eval.api, imported on first use, so `import
acol_eval` stays light) and `AcolError`, the one exception they raise.
"""

import sys
import types

from acol_eval.util.errors import AcolError as AcolError  # the API's one exception

__version__ = "0.1.0"

API = ("synth", "train", "localize", "score", "boxes", "compare", "load_model", "open_maps")
# API names that are also subpackages (acol_eval/train/, acol_eval/compare/)
_SHARED = frozenset(n for n in API if n in ("train", "compare"))


class _Command:
    """acol_eval.train and acol_eval.compare: calling one runs the API function; its
    attributes are the subpackage's (acol_eval.train.training), so both meanings of the
    name work."""

    def __init__(self, name: str) -> None:
        self._name = name

    def _function(self):
        from acol_eval import api

        return getattr(api, self._name)

    def __call__(self, *args, **kwargs):
        return self._function()(*args, **kwargs)

    @property
    def __doc__(self):  # help() and a notebook's `?` show the function's text
        return self._function().__doc__

    @property
    def __signature__(self):
        import inspect

        return inspect.signature(self._function())

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        import importlib

        package = importlib.import_module(f"{__name__}.{self._name}")
        try:
            return getattr(package, name)
        except AttributeError:
            return importlib.import_module(f"{package.__name__}.{name}")

    def __repr__(self) -> str:
        return f"<acol_eval.{self._name}: the API function and the subpackage>"


_COMMANDS = {name: _Command(name) for name in _SHARED}


class _Top(types.ModuleType):
    """The package module: importing acol_eval.train (the subpackage) does not replace
    the command acol_eval.train (the import system sets the attribute; it is kept)."""

    def __setattr__(self, name, value):
        if name in _SHARED and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Top


def __getattr__(name: str):
    if name in _COMMANDS:
        return _COMMANDS[name]
    if name in API:
        from acol_eval import api

        return getattr(api, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *API])


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

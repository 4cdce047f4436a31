"""The names of the map methods (`localize --method`), apart from the methods
themselves (methods.py): the CLI offers them as choices without importing torch and
the CAM library, which costs seconds."""

from __future__ import annotations

from enum import Enum

from acol_eval.util.errors import AcolError


class MapMethod(str, Enum):
    """How class maps are made: the model's own fused maps, or a post-hoc CAM method."""

    MODEL = "model"
    GRADCAM = "gradcam"
    GRADCAM_PLUSPLUS = "gradcam++"
    XGRADCAM = "xgradcam"
    LAYERCAM = "layercam"
    SCORECAM = "scorecam"
    EIGENCAM = "eigencam"
    EIGENGRADCAM = "eigengradcam"
    HIRESCAM = "hirescam"
    GRADCAM_ELEMENTWISE = "gradcamelementwise"

    @classmethod
    def parse(cls, text: str | MapMethod, flag: str = "--method") -> MapMethod:
        """The method named `text`; anything else is a one-line AcolError naming `flag`."""
        try:
            return cls(text)
        except ValueError:
            names = ", ".join(m.value for m in cls)
            raise AcolError(f"{flag} {text!r} is not one of {names}") from None

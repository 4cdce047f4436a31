"""Metrics: the registry (metricdefs), their computation and their reports."""

# the opt-in region metrics register themselves in metricdefs on import
from acol_eval.metrics import regionmetrics  # noqa: F401

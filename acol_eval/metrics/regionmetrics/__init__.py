"""The explanation literature's localisation metrics (Quantus 0.6.0's set), opt-in
tenants of the metric registry: definitions.py registers them on import."""

from acol_eval.metrics.regionmetrics.definitions import (
    REGION_METRICS,
    RegionOptions,
    measure,
    region_metrics,
    region_names,
)
from acol_eval.metrics.regionmetrics.region import boxes_region, mask_region

__all__ = ["REGION_METRICS", "RegionOptions", "boxes_region", "mask_region", "measure",
           "region_metrics", "region_names"]

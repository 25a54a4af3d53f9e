"""How client and therapist rate the same alliance: paired scores, discrepancy summaries
(Bland–Altman) and polynomial response surfaces. Steps in :mod:`alliance.agreement.steps`,
figures in :mod:`alliance.agreement.figures`.
"""

from alliance.agreement.dyads import (
    KEYS,
    pair_ratings,
    pair_items,
    pair_scales,
    discrepancy_summary,
    per_dyad_table,
    ResponseSurface,
    SURFACE_CONTRASTS,
    surface_parameters,
    principal_axis,
    response_surface,
)

__all__ = [
    "KEYS",
    "pair_ratings",
    "pair_items",
    "pair_scales",
    "discrepancy_summary",
    "per_dyad_table",
    "ResponseSurface",
    "SURFACE_CONTRASTS",
    "surface_parameters",
    "principal_axis",
    "response_surface",
]

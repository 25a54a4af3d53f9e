"""Rupture–repair episodes in session-by-session alliance ratings and their link to outcome.
Steps in :mod:`alliance.ruptures.steps`, figures in :mod:`alliance.ruptures.figures`.
"""

from alliance.ruptures.episodes import (
    EPISODE_COLUMNS,
    COUNT_COLUMNS,
    rupture_sd,
    detect_ruptures,
    rupture_counts,
    rupture_summary,
    rupture_outcome_data,
    rupture_outcome_formula,
    rupture_outcome_model,
    DETECTION_COLUMNS,
    match_episodes,
    detection_table,
)

__all__ = [
    "EPISODE_COLUMNS",
    "COUNT_COLUMNS",
    "rupture_sd",
    "detect_ruptures",
    "rupture_counts",
    "rupture_summary",
    "rupture_outcome_data",
    "rupture_outcome_formula",
    "rupture_outcome_model",
    "DETECTION_COLUMNS",
    "match_episodes",
    "detection_table",
]

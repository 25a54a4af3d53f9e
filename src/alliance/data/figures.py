"""Figures of the data domain: completion of each measure by session (missingness).
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.patches import Patch

from alliance.errors import require_columns
from alliance.report.style import SEQUENTIAL, new_figure

#: colour of the cells where a measure was not scheduled (not a share: no data)
NOT_SCHEDULED = "0.92"


def missingness_figure(scheduled: pd.DataFrame, labels: Mapping[str, str] | None = None):
    """Heatmap of the share of scheduled administrations answered, instrument by session.

    Parameters
    ----------
    scheduled : DataFrame
        :func:`alliance.data.summary.scheduled_completion`: a cell is drawn only where the
        measure was scheduled; elsewhere it stays blank ("not scheduled"), so a measure given at
        intake and end only is not shown as unanswered in between.
    labels : mapping, optional
        Instrument entry -> display name (e.g. ``"oq45"`` -> ``"OQ-45.2"``).

    Returns
    -------
    (Figure, dict)
        The figure and the facts it drew: ``sessions`` (first, last), ``instruments`` (entry ->
        schedule).
    """
    require_columns(scheduled, ["instrument", "schedule", "session", "completion_rate"], "scheduled")
    if scheduled.empty:
        raise ValueError("scheduled: no administrations to draw")
    order = list(dict.fromkeys(scheduled["instrument"]))
    sessions = np.arange(int(scheduled["session"].min()), int(scheduled["session"].max()) + 1)
    grid = (scheduled.pivot(index="instrument", columns="session", values="completion_rate")
            .reindex(index=order, columns=sessions))
    schedule = scheduled.drop_duplicates("instrument").set_index("instrument")["schedule"]
    names = [f"{(labels or {}).get(e, e)} ({schedule[e]})" for e in order]
    fig, ax = new_figure(7.5, 0.45 * len(grid) + 1.9)
    ax.set_facecolor(NOT_SCHEDULED)
    im = ax.imshow(grid.to_numpy(dtype=float), aspect="auto", cmap=SEQUENTIAL, vmin=0, vmax=1,
                   interpolation="nearest", extent=(sessions[0] - 0.5, sessions[-1] + 0.5, len(order) - 0.5, -0.5))
    ax.set_yticks(range(len(order)), names)
    step = max(1, int(np.ceil(len(sessions) / 20)))
    ax.set_xticks(sessions[::step])
    ax.set_xlabel("Session")
    ax.set_title("Share of scheduled administrations with at least one item answered")
    ax.grid(False)
    fig.colorbar(im, ax=ax, label="Answered (share of scheduled)")
    ax.legend(handles=[Patch(facecolor=NOT_SCHEDULED, edgecolor="0.6", label="not scheduled")],
              loc="upper left", bbox_to_anchor=(0.0, -0.14), frameon=False, fontsize="small")
    facts = {"sessions": [int(sessions[0]), int(sessions[-1])],
             "instruments": {e: str(schedule[e]) for e in order}}
    return fig, facts


def missingness_caption(facts: Mapping[str, Any], n_clients: int, labels: Mapping[str, str] | None = None) -> str:
    """The sentence of the missingness caption that depends on the data (reStructuredText)."""
    first, last = facts["sessions"]
    sparse = [f"{(labels or {}).get(e, e)} ({s})" for e, s in facts["instruments"].items() if s != "every session"]
    text = f"Sessions {first}\u2013{last}; N = {n_clients} clients."
    if sparse:
        text += " Not given at every session (drawn only where scheduled): " + "; ".join(sparse) + "."
    return text + "\n"

"""Figures for rupture–repair episodes.

Each function takes plain DataFrames and returns a :class:`matplotlib.figure.Figure` built
without pyplot (no global state, no GUI backend; figures render with Agg). Colours come from
seaborn's colour-blind palette. Panels are labelled by ordinal ("client 1", ...) unless asked
otherwise, so that a figure written under ``results/`` carries no client ids.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator


__all__ = [
    "plot_rupture_trajectories",
]

_PALETTE = sns.color_palette("colorblind")
# The repair marker black: the palette's orange looked like the vermilion of unrepaired ruptures.
LINE, REPAIRED, UNREPAIRED, REPAIR, CENSORED = _PALETTE[0], _PALETTE[2], _PALETTE[3], "black", _PALETTE[7]


def _require(data: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in data.columns]
    if missing:
        raise ValueError(f"{what} is missing column(s) {missing}; found {list(data.columns)}")


def _example_clients(episodes: pd.DataFrame, max_clients: int) -> list[Any]:
    """Clients with both kinds of episode first, then repaired-only and unrepaired-only
    clients in turn, so that both outcomes are shown."""
    if episodes.empty:
        return []
    kinds = episodes.groupby("client", sort=False)["repaired"].agg(["any", "all"])
    both = list(kinds.index[kinds["any"] & ~kinds["all"]])
    repaired = list(kinds.index[kinds["all"]])
    unrepaired = list(kinds.index[~kinds["any"]])
    alternating = [c for pair in zip(repaired, unrepaired) for c in pair]
    rest = repaired[len(unrepaired):] + unrepaired[len(repaired):]
    return (both + alternating + rest)[:max_clients]


def plot_rupture_trajectories(
    series: pd.DataFrame,
    episodes: pd.DataFrame,
    clients: Sequence[Any] | None = None,
    max_clients: int = 6,
    ncols: int = 3,
    label_clients: bool = False,
) -> Figure:
    """Alliance trajectories of example clients with their rupture episodes marked.

    Parameters
    ----------
    series : DataFrame
        ``client``, ``session``, ``score``.
    episodes : DataFrame
        Output of :func:`alliance.ruptures.detect_ruptures`.
    clients : sequence, optional
        Clients to draw; default up to ``max_clients`` clients with episodes: those with
        both a repaired and an unrepaired episode first, then repaired-only and
        unrepaired-only clients alternately.
    max_clients, ncols : int
        Number of panels and panels per row.
    label_clients : bool
        Title panels with the client id instead of an ordinal.

    Returns
    -------
    Figure
        One panel per client: the series (line), each drop from the pre-rupture session to
        the rupture session (thick segment; green repaired, red unrepaired, grey censored),
        the lower edge of the repair band (``repair_band``, else the pre-rupture score) as a
        dotted line up to the end of the episode, and the repair session (marker).
    """
    _require(series, ["client", "session", "score"], "series")
    _require(episodes, ["client", "pre_session", "rupture_session", "pre_score", "rupture_score",
                        "repaired", "repair_session", "repair_score"], "episodes")  # fmt: skip
    chosen = list(clients) if clients is not None else _example_clients(episodes, max_clients)
    if not chosen:
        raise ValueError("no clients to plot: episodes is empty and no clients were given")
    ncols = max(1, min(ncols, len(chosen)))
    nrows = int(np.ceil(len(chosen) / ncols))
    fig = Figure(figsize=(3.6 * ncols, 2.6 * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False, sharey=True)
    for k, client in enumerate(chosen):
        ax = axes.flat[k]
        own = series[series["client"] == client].sort_values("session")
        if own.empty:
            raise ValueError(f"client {k + 1} of the clients to plot has no rows in series")
        ax.plot(own["session"], own["score"], "-o", color=LINE, ms=3, lw=1)
        for ep in episodes[episodes["client"] == client].itertuples():
            _mark_episode(ax, ep)
        ax.set_title(str(client) if label_clients else f"client {k + 1}", fontsize=9)
        ax.set_xlabel("session")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    for ax in axes.flat[len(chosen):]:
        ax.set_visible(False)
    axes[0, 0].set_ylabel("alliance")
    fig.legend(handles=_episode_legend(), loc="outside lower center", ncols=4, fontsize=8)
    return fig


def _mark_episode(ax: Any, ep: Any) -> None:
    censored = bool(getattr(ep, "censored", False)) and not ep.repaired
    colour = REPAIRED if ep.repaired else (CENSORED if censored else UNREPAIRED)
    ax.plot([ep.pre_session, ep.rupture_session], [ep.pre_score, ep.rupture_score],
            color=colour, lw=3, solid_capstyle="round")  # fmt: skip
    end = ep.repair_session if ep.repaired else ep.rupture_session
    band = getattr(ep, "repair_band", ep.pre_score)
    ax.hlines(band, ep.pre_session, end, colors=colour, linestyles=":", lw=1)
    if ep.repaired:
        ax.plot([ep.repair_session], [ep.repair_score], marker="^", color=REPAIR, ms=7)


def _episode_legend() -> list[Line2D]:
    return [
        Line2D([], [], color=REPAIRED, lw=3, label="rupture, repaired"),
        Line2D([], [], color=UNREPAIRED, lw=3, label="rupture, not repaired"),
        Line2D([], [], color=CENSORED, lw=3, label="rupture, censored"),
        Line2D([], [], color=REPAIR, marker="^", lw=0, label="repair session"),
    ]

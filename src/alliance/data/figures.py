"""Figures of the data domain: completion of each measure by session (missingness).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from alliance.report.style import SEQUENTIAL, new_figure


def missingness_figure(comp: pd.DataFrame, max_session: int = 30):
    """Heatmap of the share of administrations answered, instrument by session."""
    grid = comp[comp["session"] <= max_session].pivot(index="instrument", columns="session",
                                                      values="completion_rate")
    fig, ax = new_figure(7.5, 0.45 * len(grid) + 1.6)
    im = ax.imshow(grid.to_numpy(dtype=float), aspect="auto", cmap=SEQUENTIAL, vmin=0, vmax=1,
                   interpolation="nearest")
    ax.set_yticks(range(len(grid)), grid.index)
    ticks = np.arange(0, grid.shape[1], max(1, grid.shape[1] // 10))
    ax.set_xticks(ticks, grid.columns[ticks])
    ax.set_xlabel("Session")
    ax.set_title("Share of administrations with at least one item answered")
    ax.grid(False)
    fig.colorbar(im, ax=ax, label="Answered")
    return fig

"""Figures of the scoring domain: the Jacobson–Truax plot of pre against post scores
(Jacobson & Truax, 1991), with the reliable-change band and the clinical cut-off.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import pandas as pd

from alliance.scoring.change import CATEGORIES


def jacobson_plot(change_csv: str, parameters_json: str, png_path: str,
                  labels: Mapping[str, str] | None = None) -> None:
    """Workflow step: one Jacobson plot per instrument (pre against post, the no-change line,
    the reliable-change band and the cut-off), written to ``png_path`` and a PDF beside it;
    ``labels`` maps an instrument entry to its name in the panel titles (e.g. ``"PHQ-9"``)."""
    import json
    import math

    from alliance.report import style as figures

    table = pd.read_csv(change_csv)
    with open(parameters_json, encoding="utf-8") as fh:
        parameters = json.load(fh)
    instruments = [i for i in parameters if table["instrument"].eq(i).any()]
    n = max(len(instruments), 1)
    ncols = min(n, 2)
    fig, axes = figures.new_figure(5.0 * ncols, 5.4 * math.ceil(n / ncols), nrows=math.ceil(n / ncols),
                                   ncols=ncols, squeeze=False, layout="constrained")
    for ax in axes.ravel()[len(instruments):]:
        ax.set_visible(False)
    if not instruments:
        axes[0, 0].set_visible(True)
        axes[0, 0].text(0.5, 0.5, "No outcome measure with change norms", ha="center", va="center")
        axes[0, 0].set_axis_off()
    for ax, entry in zip(axes.ravel(), instruments):
        _jacobson_panel(ax, table[table["instrument"].eq(entry)], parameters[entry], (labels or {}).get(entry, entry))
    figures.save_figure(fig, png_path)
    figures.close(fig)


def _jacobson_panel(ax, rows: pd.DataFrame, params: Mapping[str, Any], entry: str) -> None:
    from alliance.report import style as figures

    lo = float(np.nanmin(rows[["pre", "post"]].to_numpy()))
    hi = float(np.nanmax(rows[["pre", "post"]].to_numpy()))
    pad = 0.05 * (hi - lo or 1.0)
    lims = (lo - pad, hi + pad)
    grid = np.array(lims)
    band = params["reliable_change"]
    ax.plot(grid, grid, color="0.3", lw=1, label="no change")
    ax.plot(grid, grid + band, color="0.5", lw=1, ls="--", label=f"reliable change (\u00b1{band:.3g})")
    ax.plot(grid, grid - band, color="0.5", lw=1, ls="--")
    if params.get("cutoff") is not None:
        ax.axhline(params["cutoff"], color="0.2", lw=1, ls=":", label=f"cut-off {params['cutoff']:.3g}")
        ax.axvline(params["cutoff"], color="0.2", lw=1, ls=":")
    import seaborn as sns

    palette = sns.color_palette(figures.PALETTE, 10)
    # Recovered and improved in two blues, unchanged grey, deteriorated vermilion: the
    # palette's first four colours made improved (orange) and deteriorated (vermilion) alike.
    colours = [palette[0], palette[9], palette[7], palette[3]]
    for i, category in enumerate(CATEGORIES):  # fixed colour and marker per category in every panel
        chosen = rows[rows["classification"].eq(category)]
        if not chosen.empty:
            ax.scatter(chosen["pre"], chosen["post"], s=14, marker=figures.MARKERS[i], color=colours[i],
                       label=f"{category} ({len(chosen)})", alpha=0.8, rasterized=figures.dense(len(chosen)))
    ax.set(xlim=lims, ylim=lims, xlabel="First administration", ylabel="Last administration",
           title=f"{entry} ({'higher is better' if params['direction'] == 'higher_is_better' else 'lower is better'})")
    ax.set_aspect("equal")
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2, frameon=False)

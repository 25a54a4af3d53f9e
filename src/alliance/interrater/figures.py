"""Figures for rater effects in observer-rated alliance: leniency and pairwise agreement.

Each function returns a :class:`matplotlib.figure.Figure` built with the project's style
(:mod:`alliance.figures`: seaborn colour-blind palette, markers for greyscale) and does not
save it; the workflow writes it with :func:`alliance.outputs.write_figure`. Raters are
shown as "Coder 1" … "Coder k" (:func:`coder_labels`: the k-th rater in sorted id order, which
is the order of ``rater_leniency.csv``), never by id or pseudonym: a figure goes into papers
and slides, where a pseudonym means nothing and invites being matched to a person.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.transforms import blended_transform_factory

from alliance.errors import require_columns
from alliance.report.style import MARKERS, PALETTE, close, dense, new_figure
from alliance.interrater.rater_effects import paired_ratings, pairwise_rater_agreement

__all__ = ["coder_labels", "plot_rater_leniency", "plot_pairwise_agreement"]

LENIENCY_TITLE = "Rater leniency (conditional modes of the rater effect)"
#: half-width of the uniform jitter for integer-valued ratings, in rating units
_JITTER = 0.12


def coder_labels(raters) -> dict:
    """Rater id -> "Coder k", k counting the distinct ids in sorted (text) order from 1."""
    ids = sorted(pd.unique(pd.Series(list(raters))), key=str)
    return {r: f"Coder {k}" for k, r in enumerate(ids, start=1)}


def _colours():
    return sns.color_palette(PALETTE)


def plot_rater_leniency(leniency_table: pd.DataFrame, *, scale_label: str = "rating",
                        rater_labels: dict | None = None) -> Figure:
    """Caterpillar plot of the raters' leniency with confidence intervals.

    Raters are ordered by leniency (most severe at the bottom, most lenient at the top);
    each shows its conditional mode with the interval from ``ci_low`` to ``ci_high``, the
    number of its ratings at the right margin, and a line at 0 (the model's average rater).

    Parameters
    ----------
    leniency_table : DataFrame
        Output of :func:`alliance.interrater.rater_effects.rater_leniency` (columns ``rater``,
        ``n_ratings``, ``leniency``, ``ci_low``, ``ci_high``).
    scale_label : str, default "rating"
        Name of the rated scale for the axis label (e.g. ``"WAI-O total"``).
    rater_labels : dict, optional
        Rater id -> label; default :func:`coder_labels` of the table's raters.

    Returns
    -------
    Figure
    """
    require_columns(leniency_table, ["rater", "n_ratings", "leniency", "ci_low", "ci_high"],
                    "leniency_table")
    if leniency_table.empty:
        raise ValueError("leniency_table has no rows: no raters to plot")
    table = leniency_table.sort_values(["leniency", "rater"], kind="stable",
                                       key=_sortable).reset_index(drop=True)
    n = len(table)
    fig, ax = new_figure(6.5, min(0.24 * n + 1.4, 40.0), layout="constrained")
    try:
        _draw_leniency(ax, table, scale_label, rater_labels or coder_labels(table["rater"]))
    except Exception:
        close(fig)
        raise
    return fig


def _sortable(column: pd.Series) -> pd.Series:
    # Rater ids may mix types; order them by their text so sorting never fails.
    return column if column.name == "leniency" else column.astype(str)


def _draw_leniency(ax, table: pd.DataFrame, scale_label: str, labels: dict) -> None:
    n = len(table)
    pos = np.arange(n)
    colour = _colours()[0]
    err = np.vstack([table["leniency"] - table["ci_low"], table["ci_high"] - table["leniency"]])
    ax.errorbar(table["leniency"], pos, xerr=np.clip(err, 0, None), fmt=MARKERS[0],
                color=colour, ms=4, lw=1, capsize=2)
    ax.axvline(0.0, color="0.35", ls="--", lw=1)
    ax.set_yticks(pos, [labels[r] for r in table["rater"]], fontsize=max(5, 9 - n // 25))
    ax.set_ylim(-0.7, n - 0.3)
    ax.set_xlabel(f"rater effect ({scale_label} units; > 0 lenient, < 0 severe)")
    ax.set_ylabel("rater")
    ax.set_title(LENIENCY_TITLE)
    ax.grid(axis="y", visible=False)
    margin = blended_transform_factory(ax.transAxes, ax.transData)
    for p, count in zip(pos, table["n_ratings"]):
        ax.text(1.01, p, f"n = {int(count)}", transform=margin, va="center", fontsize=7,
                color="0.3")


def plot_pairwise_agreement(data: pd.DataFrame, target: str, rater: str, rating: str, *,
                            max_pairs: int = 12, min_shared: int = 10,
                            scale_label: str = "rating", ncols: int = 4,
                            rater_labels: dict | None = None) -> Figure:
    """Scatterplots of the ratings of rater pairs on their shared targets.

    One panel per pair, for the ``max_pairs`` pairs with the most shared targets (at least
    ``min_shared``; ties in sorted id order): rater a's rating on the x axis, rater b's on
    the y axis, the identity line (perfect agreement) dashed, and the pair's number of
    shared targets n, Pearson r and mean difference a − b in the panel title. Points off
    the line by a constant show leniency; scatter about a parallel line shows inconsistency.
    Integer-valued ratings get a small uniform jitter (± 0.12, seeded, so reruns give the
    same figure) so that tied ratings stay visible. All panels share one scale.

    Parameters
    ----------
    data : DataFrame
        Long ratings table, one row per rating.
    target, rater, rating : str
        Column names.
    max_pairs : int, default 12
        Most panels drawn.
    min_shared : int, default 10
        Pairs with fewer shared targets are not drawn.
    scale_label : str, default "rating"
    ncols : int, default 4
        Panels per row.
    rater_labels : dict, optional
        Rater id -> label; default :func:`coder_labels` of all raters in ``data``.

    Returns
    -------
    Figure

    Raises
    ------
    ValueError
        The checks of :func:`alliance.interrater.rater_effects.pairwise_rater_agreement`, no pair with
        ``min_shared`` shared targets, or ``max_pairs``/``ncols`` below 1.
    """
    for name, value in (("max_pairs", max_pairs), ("ncols", ncols)):
        if isinstance(value, bool) or not float(value).is_integer() or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    table = pairwise_rater_agreement(data, target, rater, rating, min_shared=min_shared)
    if table.empty:
        raise ValueError(
            f"no pair of raters in column {rater!r} shares at least min_shared={min_shared} "
            f"targets in column {target!r}; nothing to plot"
        )
    chosen = _top_pairs(table, int(max_pairs))
    pairs = paired_ratings(data, target, rater, rating)
    fig, axes = _panel_grid(len(chosen), int(ncols))
    try:
        _draw_pairs(axes, chosen, pairs, scale_label, rater_labels or coder_labels(data[rater]))
    except Exception:
        close(fig)
        raise
    return fig


def _top_pairs(table: pd.DataFrame, max_pairs: int) -> pd.DataFrame:
    """Pairs with the most shared targets; the table's (sorted-id) order breaks ties."""
    order = np.lexsort((np.arange(len(table)), -table["n_shared"].to_numpy()))
    return table.iloc[order[:max_pairs]].reset_index(drop=True)


def _panel_grid(n_panels: int, ncols: int):
    ncols = min(ncols, n_panels)
    nrows = int(np.ceil(n_panels / ncols))
    fig, axes = new_figure(2.7 * ncols, 2.7 * nrows + 0.4, nrows=nrows, ncols=ncols,
                           squeeze=False, layout="constrained")
    for ax in axes.flat[n_panels:]:
        ax.set_visible(False)
    fig.suptitle("Pairwise rater agreement on shared targets (dashed: identity)")
    return fig, axes


def _draw_pairs(axes, chosen: pd.DataFrame, pairs: pd.DataFrame, scale_label: str, labels: dict) -> None:
    ratings = np.concatenate([pairs["rating_a"].to_numpy(), pairs["rating_b"].to_numpy()])
    integer = bool(np.all(ratings == np.round(ratings)))
    lo, hi = float(ratings.min()), float(ratings.max())
    pad = 0.05 * (hi - lo) + (_JITTER if integer else 0.0) + (0.5 if hi == lo else 0.0)
    limits = (lo - pad, hi + pad)
    rng = np.random.default_rng(0)
    colour = _colours()[0]
    by_pair = pairs.groupby(["rater_a", "rater_b"], sort=False)
    for ax, row in zip(axes.flat, chosen.itertuples(index=False)):
        own = by_pair.get_group((row.rater_a, row.rater_b))
        x, y = own["rating_a"].to_numpy(), own["rating_b"].to_numpy()
        if integer:
            x = x + rng.uniform(-_JITTER, _JITTER, len(x))
            y = y + rng.uniform(-_JITTER, _JITTER, len(y))
        ax.scatter(x, y, s=10, alpha=0.6, color=colour, marker=MARKERS[0], linewidths=0,
                   rasterized=dense(len(x)))
        ax.plot(limits, limits, ls="--", color="0.35", lw=1)
        ax.set_xlim(limits)
        ax.set_ylim(limits)
        ax.set_aspect("equal", adjustable="box")
        r_text = "n/a" if not np.isfinite(row.pearson_r) else f"{row.pearson_r:.2f}"
        a, b = labels[row.rater_a], labels[row.rater_b]
        ax.set_title(f"{a} vs {b}\nn = {row.n_shared}, r = {r_text}, "
                     f"mean diff = {row.mean_difference:.2f}", fontsize=8)
        ax.set_xlabel(f"{scale_label}, {a}", fontsize=8)
        ax.set_ylabel(f"{scale_label}, {b}", fontsize=8)
        ax.tick_params(labelsize=7)


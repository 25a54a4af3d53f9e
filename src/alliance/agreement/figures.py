"""Figures for client–therapist agreement: Bland–Altman plots and the response surface.

Each function takes plain DataFrames (or a :class:`~alliance.agreement.ResponseSurface`) and
returns a :class:`matplotlib.figure.Figure` built without pyplot (no global state, no GUI
backend; figures render with Agg). Colours come from seaborn's colour-blind palette.
"""
from __future__ import annotations


import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from alliance.agreement.dyads import ResponseSurface, discrepancy_summary

__all__ = [
    "plot_bland_altman",
    "plot_response_surface",
]

_PALETTE = sns.color_palette("colorblind")


def plot_bland_altman(
    pairs: pd.DataFrame,
    scale: str,
    loa_z: float = 1.96,
    level: float = 0.95,
    ax_labels: tuple[str, str] = ("mean of client and therapist", "client − therapist"),
) -> Figure:
    """Bland–Altman plot of client versus therapist ratings on one scale.

    Differences (client − therapist) against pair means, with the mean difference and the
    limits of agreement (``loa_z`` SD) as lines and their confidence intervals as bands, all
    taken from :func:`alliance.agreement.discrepancy_summary` (Bland & Altman, 1986, 1999).
    """
    summary = discrepancy_summary(pairs, [scale], loa_z=loa_z, level=level).iloc[0]
    x = pd.to_numeric(pairs[f"client_{scale}"], errors="coerce").to_numpy(float)
    y = pd.to_numeric(pairs[f"therapist_{scale}"], errors="coerce").to_numpy(float)
    keep = ~(np.isnan(x) | np.isnan(y))
    mean, diff = (x[keep] + y[keep]) / 2, x[keep] - y[keep]
    fig = Figure(figsize=(5.5, 4), layout="constrained")
    ax = fig.subplots()
    ax.scatter(mean, diff, s=12, alpha=0.6, color=_PALETTE[0], edgecolors="none")
    lines = [
        ("mean_diff", "mean_diff_ci_low", "mean_diff_ci_high", _PALETTE[1], "mean difference"),
        ("loa_low", "loa_low_ci_low", "loa_low_ci_high", _PALETTE[3], "limits of agreement"),
        ("loa_high", "loa_high_ci_low", "loa_high_ci_high", _PALETTE[3], None),
    ]
    for value, low, high, colour, label in lines:
        ax.axhline(summary[value], color=colour, lw=1.5, label=label)
        ax.axhspan(summary[low], summary[high], color=colour, alpha=0.15, lw=0)
    ax.axhline(0, color="0.5", lw=0.8, ls=":")
    ax.set_xlabel(ax_labels[0])
    ax.set_ylabel(ax_labels[1])
    ax.set_title(f"{scale}: n = {int(summary['n'])}", fontsize=10)
    ax.legend(fontsize=8, loc="best")
    return fig


def plot_response_surface(
    result: ResponseSurface,
    x_range: tuple[float, float],
    y_range: tuple[float, float] | None = None,
    labels: tuple[str, str, str] = ("client", "therapist", "outcome"),
    grid: int = 30,
) -> Figure:
    """Fitted response surface with the lines of congruence and incongruence.

    Parameters
    ----------
    result : ResponseSurface
        Output of :func:`alliance.agreement.response_surface`.
    x_range, y_range : (float, float)
        Raw-scale ranges to draw (usually the observed range, or the scale range);
        ``y_range`` defaults to ``x_range``.
    labels : (str, str, str)
        Axis labels for x, y and z.
    grid : int
        Grid points per axis.
    """
    y_range = x_range if y_range is None else y_range
    xs = np.linspace(*x_range, grid)
    ys = np.linspace(*y_range, grid)
    gx, gy = np.meshgrid(xs, ys)
    gz = result.predict(gx, gy)
    fig = Figure(figsize=(6, 5), layout="constrained")
    # computed_zorder=False: draw in call order, so the lines stay visible over the surface.
    ax = fig.add_subplot(projection="3d", computed_zorder=False)
    ax.plot_surface(gx, gy, gz, cmap="cividis", alpha=0.75, linewidth=0, antialiased=True)
    lo, hi = max(x_range[0], y_range[0]), min(x_range[1], y_range[1])
    line = np.linspace(lo, hi, grid)
    ax.plot(line, line, result.predict(line, line), color=_PALETTE[1], lw=2.5,
            label="congruence (x = y)")  # fmt: skip
    c = result.centre
    mirrored = 2 * c - line  # x - c = -(y - c)
    inside = (mirrored >= y_range[0]) & (mirrored <= y_range[1])
    ax.plot(line[inside], mirrored[inside], result.predict(line[inside], mirrored[inside]),
            color=_PALETTE[3], lw=2.5, ls="--", label="incongruence (x = -y)")  # fmt: skip
    ax.set_xlabel(labels[0])
    ax.set_ylabel(labels[1])
    ax.set_zlabel(labels[2])
    ax.legend(fontsize=8, loc="upper left")
    return fig

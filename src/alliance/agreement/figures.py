"""Figures for client–therapist agreement: Bland–Altman plots and the response surface.

Each function takes plain DataFrames (or a :class:`~alliance.agreement.ResponseSurface`) and
returns a :class:`matplotlib.figure.Figure` built without pyplot (no global state, no GUI
backend; figures render with Agg). Colours come from seaborn's colour-blind palette.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from alliance.agreement.dyads import ResponseSurface, discrepancy_summary
from alliance.report.style import OKABE_ITO, dense, legend_place

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
    title: str | None = None,
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
    ax.scatter(mean, diff, s=12, alpha=0.5, color=OKABE_ITO["grey"], edgecolors="none", label="dyad-sessions",
               rasterized=dense(len(mean)))
    # blue and vermilion: the palette's orange and vermilion looked alike
    lines = [
        ("mean_diff", "mean_diff_ci_low", "mean_diff_ci_high", OKABE_ITO["blue"], "mean difference (95% CI)"),
        ("loa_low", "loa_low_ci_low", "loa_low_ci_high", OKABE_ITO["vermilion"], "limits of agreement (95% CI)"),
        ("loa_high", "loa_high_ci_low", "loa_high_ci_high", OKABE_ITO["vermilion"], None),
    ]
    for value, low, high, colour, label in lines:
        ax.axhline(summary[value], color=colour, lw=1.5, label=label)
        ax.axhspan(summary[low], summary[high], color=colour, alpha=0.15, lw=0)
    ax.axhline(0, color="0.5", lw=0.8, ls=":")
    ax.set_xlabel(ax_labels[0])
    ax.set_ylabel(ax_labels[1])
    ax.set_title(f"{title or scale}: n = {int(summary['n'])}", fontsize=10)
    ax.legend(fontsize=8, loc=legend_place(len(mean)))
    return fig


def _span(values: np.ndarray) -> tuple[float, float]:
    low, high = float(np.min(values)), float(np.max(values))
    pad = 0.05 * (high - low) if high > low else 1.0
    return low - pad, high + pad


def plot_response_surface(
    result: ResponseSurface,
    points: np.ndarray,
    labels: tuple[str, str, str] = ("client", "therapist", "outcome"),
    grid: int = 30,
    tests: Sequence[str] = (),
) -> Figure:
    """Fitted response surface with the data, the lines of congruence and incongruence.

    Left, the surface in 3-D with the observed (x, y) projected on its floor; right, its
    contours with the observed (x, y). Both show the line of congruence (x = y) and the
    line of incongruence through the centre c (x − c = −(y − c)). Drawn over the observed
    range of x and y (5% margin).

    Parameters
    ----------
    result : ResponseSurface
        Output of :func:`alliance.agreement.response_surface`.
    points : array of shape (n, 2)
        The observed (x, y) on the raw scale, one row per unit used in the fit.
    labels : (str, str, str)
        Axis labels for x, y and z.
    grid : int
        Grid points per axis.
    tests : sequence of str
        Lines printed under the panels (e.g. the a1–a5 tests).
    """
    points = np.asarray(points, dtype=float)
    if points.ndim != 2 or points.shape[1] != 2 or len(points) == 0:
        raise ValueError(f"points must be an (n, 2) array of observed (x, y), got shape {points.shape}")
    x_range, y_range = _span(points[:, 0]), _span(points[:, 1])
    gx, gy = np.meshgrid(np.linspace(*x_range, grid), np.linspace(*y_range, grid))
    gz = result.predict(gx, gy)
    line = np.linspace(max(x_range[0], y_range[0]), min(x_range[1], y_range[1]), grid)
    mirrored = 2 * result.centre - line  # x - c = -(y - c)
    inside = (mirrored >= y_range[0]) & (mirrored <= y_range[1])
    # vermilion and black: the palette's orange and vermilion looked alike
    lines = [
        (line, line, dict(color=OKABE_ITO["vermilion"], lw=2.5, label="congruence (x = y)")),
        (line[inside], mirrored[inside], dict(color=OKABE_ITO["black"], lw=2.5, ls="--",
                                              label="incongruence (x − c = −(y − c))")),
    ]
    fig = Figure(figsize=(12, 5.2 + 0.18 * len(tests)), layout="constrained")
    # computed_zorder=False: draw in call order, so lines and points stay visible.
    ax3d = fig.add_subplot(1, 2, 1, projection="3d", computed_zorder=False)
    floor = float(np.min(gz)) - 0.1 * float(np.ptp(gz) or 1.0)
    ax3d.scatter(points[:, 0], points[:, 1], np.full(len(points), floor), s=6, alpha=0.5,
                 color=_PALETTE[0], depthshade=False, label="clients (x, y)", rasterized=dense(len(points)))
    ax3d.plot_surface(gx, gy, gz, cmap="cividis", alpha=0.75, linewidth=0, antialiased=True)
    for lx, ly, style in lines:
        ax3d.plot(lx, ly, result.predict(lx, ly), **style)
    ax3d.set_zlim(floor, float(np.max(gz)))
    ax3d.set_box_aspect(None, zoom=0.85)  # room for the z label beside the contour panel
    ax3d.set_xlabel(labels[0])
    ax3d.set_ylabel(labels[1])
    ax3d.set_zlabel(labels[2])
    ax3d.legend(fontsize=7, loc="upper left")
    ax = fig.add_subplot(1, 2, 2)
    contours = ax.contourf(gx, gy, gz, levels=12, cmap="cividis", alpha=0.85)
    fig.colorbar(contours, ax=ax, label=labels[2])
    ax.scatter(points[:, 0], points[:, 1], s=8, alpha=0.6, color="white", edgecolors="0.2", linewidths=0.4,
               rasterized=dense(len(points)))
    for lx, ly, style in lines:
        ax.plot(lx, ly, **style)
    ax.plot([result.centre], [result.centre], marker="+", color="black", ms=10, label=f"centre c = {result.centre:.2f}")
    ax.set_xlim(*x_range)
    ax.set_ylim(*y_range)
    ax.set_xlabel(labels[0])
    ax.set_ylabel(labels[1])
    ax.legend(fontsize=7, loc="upper left")
    if tests:
        fig.supxlabel("\n".join(tests), fontsize=8, ha="left", x=0.02)
    return fig

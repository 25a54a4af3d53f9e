"""The diagnostics figure of one model (:mod:`alliance.models.diagnostics`), as R's
``performance::check_model`` draws it (Lüdecke et al., 2021): residuals against fitted values,
QQ plot of the residuals, QQ plot of the random effects and the therapists' influence. Drawn in
the project style; saving is left to :func:`alliance.outputs.write_figure`. Therapists appear by
influence rank only, never by id.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping

import numpy as np
import seaborn as sns
from matplotlib.ticker import MaxNLocator

from alliance.models.diagnostics import ModelDiagnostics, binned_means
from alliance.report.style import MARKERS, PALETTE, dense, legend_place, new_figure

__all__ = ["diagnostics_figure"]

# Scatter clouds of thousands of session rows stay readable when thinned by transparency.
POINT_ALPHA = 0.35


def _colours(n: int) -> list:
    return sns.color_palette(PALETTE, max(n, 1))


def _residual_panel(ax, diag: ModelDiagnostics) -> None:
    res = diag.residuals
    ax.scatter(res["fitted"], res["residual"], s=6, alpha=POINT_ALPHA, color="0.35", marker=MARKERS[0],
               linewidths=0, label="observation", rasterized=dense(len(res)))
    bins = binned_means(res["fitted"].to_numpy(), res["residual"].to_numpy())
    colour = _colours(1)[0]
    ax.plot(bins["fitted"], bins["residual"], color=colour, marker=MARKERS[1], markersize=4, linewidth=1.5,
            label="mean in tenths of fitted values")
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xlabel("fitted value (conditional)")
    ax.set_ylabel("residual")
    ax.set_title("Residuals vs fitted")
    ax.legend(fontsize="x-small", loc=legend_place(len(res)), frameon=False)


def _qq_residual_panel(ax, diag: ModelDiagnostics) -> None:
    from alliance.models.diagnostics import qq_points

    qq = qq_points(diag.residuals["standardised"].to_numpy())
    ax.scatter(qq["theoretical"], qq["sample"], s=6, alpha=POINT_ALPHA, color="0.35", marker=MARKERS[0], linewidths=0,
               rasterized=dense(len(qq)))
    ax.plot(qq["theoretical"], qq["line"], color="black", linewidth=1)
    ax.set_xlabel("normal quantile")
    ax.set_ylabel("standardised residual")
    r = diag.residual
    ax.set_title(f"Residual QQ (skew {r['skewness']:.2f}, ex. kurtosis {r['excess_kurtosis']:.2f})")


def _term_label(group: str, term: str) -> str:
    what = "intercept" if term == "(Intercept)" else f"slope ({term})"
    return f"{group.capitalize()} {what}"


def _legend(group: str, term: str, part) -> str:
    label = f"{_term_label(group, term)} (n = {len(part)})"
    if not np.any(part["sample"].to_numpy() != 0):
        label += ": variance estimated at 0, all modes 0"
    return label


def _qq_random_panel(ax, diag: ModelDiagnostics) -> None:
    qq = diag.random_qq
    if qq.empty:
        ax.set_axis_off()
        ax.text(0.5, 0.5, "no random effects", ha="center", va="center", fontsize="small")
        return
    keys = list(dict.fromkeys(zip(qq["group"], qq["term"])))
    colours = _colours(len(keys))
    for k, (group, term) in enumerate(keys):
        part = qq.loc[(qq["group"] == group) & (qq["term"] == term)]
        ax.scatter(part["theoretical"], part["standardised_sample"], s=10, alpha=0.7, color=colours[k],
                   marker=MARKERS[k % len(MARKERS)], linewidths=0, label=_legend(group, term, part),
                   rasterized=dense(len(part)))
    lim = float(np.nanmax(np.abs(qq["theoretical"]))) if len(qq) else 1.0
    ax.plot([-lim, lim], [-lim, lim], color="black", linewidth=0.8)
    ax.set_xlabel("normal quantile")
    ax.set_ylabel("conditional mode / SD of the modes")
    ax.set_title("Random-effect QQ")
    ax.legend(fontsize="x-small", loc="upper left", frameon=False)


def _influence_panel(ax, diag: ModelDiagnostics, term_labels: Mapping[str, str], note: str | None) -> None:
    table = diag.influence
    if table is None or table.empty:
        ax.set_axis_off()
        ax.text(0.5, 0.5, note or "therapist influence not computed", ha="center", va="center",
                fontsize="small", wrap=True)
        ax.set_title("Therapist influence")
        return
    terms = list(dict.fromkeys(table["term"]))
    colours = _colours(len(terms))
    for k, term in enumerate(terms):
        part = table.loc[table["term"] == term]
        ax.scatter(part["rank"], part["change_in_se"], s=14, color=colours[k], marker=MARKERS[k % len(MARKERS)],
                   label=term_labels.get(term, term), zorder=3)
        flagged = part.loc[part["flagged"]]
        ax.scatter(flagged["rank"], flagged["change_in_se"], s=70, facecolors="none", edgecolors="black",
                   linewidths=1, zorder=4, label="flagged" if k == 0 else None)
    for y in (-1, 1):
        ax.axhline(y, color="0.4", linewidth=0.8, linestyle="--")
    # room above the +1 SE line for the legend, whatever the spread of the changes
    reach = float(np.nanmax(np.abs(table["change_in_se"]))) if table["change_in_se"].notna().any() else 1.0
    ax.set_ylim(-max(1.3, 1.15 * reach), max(1.8, 1.5 * reach))
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xlabel("therapist, ranked by Cook's distance (1 = most influential)")
    ax.set_ylabel("change of the estimate when left out (full-model SEs)")
    ax.set_title("Therapist influence (leave one out)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(fontsize="x-small", loc="upper right", frameon=False)


def diagnostics_figure(diag: ModelDiagnostics, title: str, term_labels: Mapping[str, str] | None = None,
                       influence_note: str | None = None):
    """A 2 x 2 figure: residuals vs fitted (with the mean residual per tenth of the fitted
    values), QQ of the standardised residuals, QQ of every random effect (each term's modes
    over their SD, one colour and marker per term) and each therapist's influence on the
    alliance estimates (change in full-model SEs by Cook's-distance rank; dashed lines at
    +-1 SE, the flag rule; flagged therapists circled).

    Parameters
    ----------
    diag : ModelDiagnostics
        From :func:`alliance.models.diagnostics.diagnose`.
    title : str
        Figure title (the model's label) ; the summary sentence is added under it.
    term_labels : mapping, optional
        Display names of the alliance terms.
    influence_note : str, optional
        Text of the influence panel when the influence was not computed.
    """
    fig, axes = new_figure(10.0, 8.6, nrows=2, ncols=2)
    _residual_panel(axes[0, 0], diag)
    _qq_residual_panel(axes[0, 1], diag)
    _qq_random_panel(axes[1, 0], diag)
    _influence_panel(axes[1, 1], diag, term_labels or {}, influence_note)
    fig.suptitle(title, fontweight="bold")
    fig.text(0.5, -0.01, textwrap.fill(diag.summary, 150), ha="center", va="top", fontsize="small")
    fig.tight_layout()
    return fig

"""Figures of the alliance–outcome models: forest plot with the meta-analytic benchmark,
specification curve, therapist caterpillar plot, early-alliance vs outcome scatter, and
alliance / symptom trajectories.

Each function takes plain DataFrames (outputs of :mod:`alliance.models`) and returns a
matplotlib figure drawn in the project style (:mod:`alliance.figures`); saving is left to
:func:`alliance.outputs.write_figure`. No figure shows client or therapist ids.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.ticker import FuncFormatter, MaxNLocator
from matplotlib.transforms import blended_transform_factory

from alliance.report.style import MARKERS, OKABE_ITO, dense, new_figure
from alliance.models.summaries import BENCHMARK
from alliance.errors import require_columns

import math




#: the multiverse's choices as the specification curve names them
CHOICE_NAMES = {"early": "Early alliance", "outcome": "Outcome", "respondent": "Alliance", "covariates": "Covariates"}
#: how the early alliance is defined, for axis labels (``scoring: early_alliance: method``)


def _require(data: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    require_columns(data, columns, what)
    if data.empty:
        raise ValueError(f"{what} has no rows to plot")


PANEL_TITLES = {
    "client": "Client level: r-equivalent (df from the number of clients), beside the benchmark",
    "within": "Within client: b x SD_w(alliance) / SD_w(outcome)",
    "therapist": "Therapist level: r-equivalent (df bounded by the number of therapists)",
}
PANEL_AXES = {
    "client": "r-equivalent (positive: better alliance, better outcome), 95% CI",
    "within": "within-client standardised effect (positive: better alliance, better outcome), 95% CI",
    "therapist": "r-equivalent (positive: better alliance, better outcome), 95% CI",
}


def forest_plot(effects: pd.DataFrame, benchmark: Mapping[str, float] = BENCHMARK,
                label: str = "label", estimate: str = "estimate", ci_low: str = "ci_low",
                ci_high: str = "ci_high", level: str = "level"):
    """Forest plot of alliance effects, one panel per level; the benchmark beside client-level rows only.

    Parameters
    ----------
    effects : DataFrame
        One row per effect (:func:`alliance.models.steps.alliance_effects`): a label, the
        ``level`` (client | within | therapist), the oriented estimate and its CI.
    benchmark : mapping
        ``r``, ``ci_low``, ``ci_high``: drawn as a shaded band with a line at ``r`` in the
        client-level panel (default Flückiger et al., 2018: .278, .256–.299), which pooled
        mostly between-client correlations.
    """
    _require(effects, [label, estimate, ci_low, ci_high, level], "effects")
    unknown = sorted(set(effects[level].astype(str)) - set(PANEL_TITLES))
    if unknown:
        raise ValueError(f"effects: level {unknown} is not one of {list(PANEL_TITLES)}")
    panels = [(lv, effects.loc[effects[level] == lv]) for lv in PANEL_TITLES if (effects[level] == lv).any()]
    heights = [0.45 * len(rows) + 0.5 for _, rows in panels]
    # Each panel's title and x label take about 1.2 in. beside its rows.
    fig, axes = new_figure(6.5, sum(heights) + 1.3 * len(panels) + 0.5, nrows=len(panels), squeeze=False,
                           gridspec_kw={"height_ratios": heights, "hspace": 0.9 if len(panels) > 1 else 0.2})
    for ax, (lv, rows) in zip(axes[:, 0], panels):
        y = np.arange(len(rows))[::-1]
        if lv == "client":
            ax.axvspan(benchmark["ci_low"], benchmark["ci_high"], color="0.85", zorder=0,
                       label=f"Flückiger et al. 2018: r = {benchmark['r']:.3f} "
                             f"[{benchmark['ci_low']:.3f}, {benchmark['ci_high']:.3f}]")
            ax.axvline(benchmark["r"], color="0.4", linestyle="--", linewidth=1, zorder=1)
            ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.08), frameon=False, fontsize="small")
        ax.axvline(0, color="black", linewidth=0.8, zorder=1)
        est, lo, hi = (rows[c].to_numpy(float) for c in (estimate, ci_low, ci_high))
        ax.errorbar(est, y, xerr=np.vstack([est - lo, hi - est]), fmt=MARKERS[1], color="black", capsize=3, zorder=3)
        ax.set_yticks(y, rows[label].astype(str))
        ax.set_ylim(-0.6, len(rows) - 0.4)
        ax.set_title(PANEL_TITLES[lv], fontsize="medium", loc="left")
        ax.set_xlabel(PANEL_AXES[lv])
    return fig


def specification_curve_plot(curve: pd.DataFrame, labels: Sequence[str] = ("early", "outcome", "respondent", "covariates"),
                             benchmark: Mapping[str, float] | None = BENCHMARK, ylabel: str = "r-equivalent",
                             names: Mapping[str, Mapping[str, str]] | None = None):
    """Specification curve (Simonsohn, Simmons & Nelson, 2020): estimates ranked, with CIs,
    and below them which choice each specification made.

    ``curve`` is :func:`alliance.models.specification_curve` output; ``labels`` are its
    columns naming the choices; ``names`` maps a column to {choice: the name shown} (e.g.
    ``{"outcome": {"phq9": "PHQ-9 total"}}``), the choice itself where none is given.
    """
    names = names or {}
    _require(curve, ["rank", "estimate", "ci_low", "ci_high", "significant", *labels], "curve")
    choices = [(col, value) for col in labels for value in sorted(curve[col].astype(str).unique())]
    fig, (top, bottom) = new_figure(7.5, 4.0 + 0.22 * len(choices), nrows=2, sharex=True,
                                    gridspec_kw={"height_ratios": [2.2, max(1.0, 0.12 * len(choices))]})
    x = curve["rank"].to_numpy()
    if benchmark is not None:
        top.axhspan(benchmark["ci_low"], benchmark["ci_high"], color="0.85", zorder=0, label="benchmark (Flückiger et al. 2018)")
    top.axhline(0, color="black", linewidth=0.8)
    top.vlines(x, curve["ci_low"], curve["ci_high"], color="0.5", linewidth=1)
    sig = curve["significant"].to_numpy(bool)
    top.scatter(x[sig], curve["estimate"][sig], marker=MARKERS[0], color="black", label="p < .05", zorder=3)
    top.scatter(x[~sig], curve["estimate"][~sig], marker=MARKERS[0], facecolor="white", edgecolor="black",
                label="p \u2265 .05", zorder=3)
    top.set_ylabel(ylabel)
    # Outside the axes: inside, the legend hides estimates or the benchmark band.
    top.legend(frameon=False, fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    for i, (col, value) in enumerate(choices):
        used = curve[col].astype(str).to_numpy() == value
        bottom.scatter(x[used], np.full(used.sum(), i), marker="|", color="black")
    bottom.set_yticks(range(len(choices)), [f"{CHOICE_NAMES.get(c, c)}: {names.get(c, {}).get(v, v)}"
                                             for c, v in choices])
    bottom.invert_yaxis()
    bottom.set_xlabel("specification (ranked by estimate)")
    bottom.xaxis.set_major_locator(MaxNLocator(integer=True))
    return fig


#: Most therapists a caterpillar plot labels one by one (with their client counts).
LABELLED_ROWS = 80


def caterpillar_plot(ranef: pd.DataFrame, term: str = "(Intercept)", lower: str | None = None,
                     upper: str | None = None, xlabel: str = "therapist effect on the outcome",
                     sd: str | None = None, n_clients: str | None = None, z: float = 1.96,
                     unit: str = "Therapist"):
    """Therapists' conditional modes, sorted (caterpillar plot), as lme4's
    ``dotplot(ranef(m, condVar = TRUE))``: each therapist's mode with mode +- ``z`` conditional
    SD, the most negative at the bottom, labelled by rank ("Therapist 1" … "Therapist k",
    never by id) and with the number of its clients at the right margin. Beyond
    :data:`LABELLED_ROWS` therapists (a national study has thousands) the rows are too thin to
    label: the figure keeps a fixed height, the rank axis gets about ten ticks and the client
    counts are left to the caption.

    Parameters
    ----------
    ranef : DataFrame
        One row per therapist: the mode (``term``) and, optionally, its conditional SD (``sd``;
        :func:`alliance.models.uncertainty.conditional_sd`) or interval columns ``lower`` and
        ``upper`` (e.g. from a bootstrap), and the client count (``n_clients``).
    xlabel : str
        What the effect is, with the outcome's name.

    Returns
    -------
    Figure
    """
    _require(ranef, [term] + [c for c in (lower, upper, sd, n_clients) if c], "ranef")
    d = ranef.sort_values(term, kind="mergesort").reset_index(drop=True)
    n = len(d)
    est = d[term].to_numpy(float)
    if sd:
        low, high = est - z * d[sd].to_numpy(float), est + z * d[sd].to_numpy(float)
        what = f"conditional mode \u00b1 {z:g} conditional SD"
    elif lower and upper:
        low, high = d[lower].to_numpy(float), d[upper].to_numpy(float)
        what = "estimate and interval"
    else:
        low = high = None
        what = "conditional mode"
    labelled = n <= LABELLED_ROWS
    fig, ax = new_figure(6.5, 0.2 * n + 1.9 if labelled else 9.0, layout="constrained")
    pos = np.arange(n)
    colour = OKABE_ITO["blue"]
    err = None if low is None else np.clip(np.vstack([est - low, high - est]), 0, None)
    if err is not None and labelled:
        ax.errorbar(est, pos, xerr=err, fmt=MARKERS[0], color=colour, ms=3.5, lw=1, capsize=1.5, label=what)
    elif err is not None:  # thousands of rows: a pale band of intervals under a line of modes
        ax.errorbar(est, pos, xerr=err, fmt="none", ecolor=colour, elinewidth=0.4, alpha=0.35,
                    label=what.replace("conditional mode \u00b1", "interval: mode \u00b1"))
        ax.scatter(est, pos, marker=MARKERS[0], color="0.1", s=1.0, linewidths=0, zorder=3, label="conditional mode")
    else:
        ax.scatter(est, pos, marker=MARKERS[0], color=colour, s=14 if labelled else 1.0, zorder=3, label=what)
    ax.axvline(0, color="0.35", ls="--", lw=1, label="average therapist (0)")
    if labelled:
        ax.set_yticks(pos, [f"{unit} {k}" for k in pos + 1], fontsize=max(5, 8 - n // 25))
    else:
        ax.yaxis.set_major_locator(MaxNLocator(nbins=10, integer=True))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{unit} {int(value) + 1}"))
    ax.set_ylim(-0.7, n - 0.3)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(f"{unit.lower()}s, ranked by their effect")
    ax.grid(axis="y", visible=False)
    if n_clients and labelled:
        margin = blended_transform_factory(ax.transAxes, ax.transData)
        for p, count in zip(pos, d[n_clients]):
            ax.text(1.01, p, f"{int(count)}", transform=margin, va="center", fontsize=6.5, color="0.3")
        ax.text(1.01, n - 0.3, "clients", transform=margin, va="bottom", fontsize=6.5, color="0.3")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.09), ncol=2, frameon=False, fontsize="small")
    return fig


def early_outcome_scatter(client_data: pd.DataFrame, x: str = "early_alliance", y: str = "post",
                          xlabel: str = "early alliance", ylabel: str = "post-treatment outcome",
                          line: pd.DataFrame | None = None, line_label: str = "model-implied line, 95% CI"):
    """Early alliance against outcome, one point per client, with the model-implied line.

    Parameters
    ----------
    line : DataFrame, optional
        :func:`alliance.models.uncertainty.implied_line` of the fitted model (``x``, ``fit``,
        ``ci_low``, ``ci_high``), drawn with its band and labelled ``line_label`` (give the
        estimate and p). Without it only the points are drawn: an unadjusted least-squares line
        would show a slope the model need not support.
    """
    _require(client_data, [x, y], "client_data")
    d = client_data[[x, y]].dropna()
    fig, ax = new_figure(5.5, 4.8)
    ax.scatter(d[x], d[y], s=10, alpha=0.45, color=OKABE_ITO["grey"], edgecolors="none", marker=MARKERS[0],
               label=f"clients (N = {len(d)})", rasterized=dense(len(d)))
    if line is not None and len(line):
        ax.fill_between(line["x"], line["ci_low"], line["ci_high"], color=OKABE_ITO["blue"], alpha=0.25, lw=0)
        ax.plot(line["x"], line["fit"], color=OKABE_ITO["blue"], linewidth=2, label=line_label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), frameon=False, fontsize="small")
    return fig


def trajectory_plot(session_data: pd.DataFrame, values: Sequence[str] = ("alliance", "symptoms"),
                    n_individual: int = 40, seed: int = 0, client: str = "client", session: str = "session",
                    names: Mapping[str, str] | None = None):
    """Session-by-session trajectories: a random subset of clients (thin lines) and the mean
    by session (thick line, with the number of clients at each session on a second axis);
    ``names`` maps a value column to the name shown (e.g. ``"Outcome (PHQ-9 total)"``)."""
    _require(session_data, [client, session, *values], "session_data")
    rng = np.random.default_rng(seed)
    clients = session_data[client].unique()
    shown = rng.choice(clients, size=min(n_individual, len(clients)), replace=False)
    fig, axes = new_figure(5.0 * len(values), 5.0, nrows=2, ncols=len(values), squeeze=False, sharex="col",
                           gridspec_kw={"height_ratios": [3, 1]})
    for ax, count_ax, value in zip(axes[0], axes[1], values):
        d = session_data[[client, session, value]].dropna()
        name = (names or {}).get(value, value)
        for k, (_, one) in enumerate(d.loc[d[client].isin(shown)].groupby(client, sort=False)):
            ax.plot(one[session], one[value], color="0.75", linewidth=0.6, label="single clients" if k == 0 else None)
        mean = d.groupby(session)[value].agg(["mean", "size"])
        ax.plot(mean.index, mean["mean"], color=OKABE_ITO["blue"], linewidth=2, marker=MARKERS[0], markersize=3,
                label="mean of all clients")
        ax.set_ylabel(name)
        ax.set_title(f"{name}: {len(shown)} of {d[client].nunique()} clients", fontsize="medium")
        ax.legend(loc="best", frameon=False, fontsize="small")
        count_ax.bar(mean.index, mean["size"], color="0.6")
        count_ax.set_ylabel("clients")
        count_ax.set_xlabel(session.capitalize())
        count_ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    return fig



def power_figure(curve: pd.DataFrame, target: float = 0.8, alpha: float | None = 0.05,
                 xlabel: str = "Effect size (generating coefficient)"):
    """Power curves: power against effect size, one panel per number of sessions, one line
    per design (therapists x clients per therapist), Wilson 95% intervals as error bars, the
    target power (dashed) and the nominal alpha (dotted; ``None`` to leave it out) as
    reference lines.

    Lines differ in marker and line style as well as colour, so the figure reads in greyscale.
    """
    from alliance.report.style import LINESTYLES, MARKERS, new_figure

    needed = ["n_therapists", "clients_per_therapist", "sessions", "effect_size", "power", "ci_low", "ci_high"]
    absent = [c for c in needed if c not in curve.columns]
    if absent:
        raise ValueError(f"power_figure: curve lacks column(s) {absent}; expected power_curve output")
    sessions = sorted(curve["sessions"].unique())
    fig, axes = new_figure(min(3.2 * len(sessions) + 1.5, 13.0), 3.6, ncols=len(sessions), sharey=True,
                           squeeze=False)
    designs = sorted(curve[["n_therapists", "clients_per_therapist"]].drop_duplicates().itertuples(index=False))
    for ax, n_sessions in zip(axes[0], sessions):
        panel = curve[curve["sessions"] == n_sessions]
        for k, (n_t, n_c) in enumerate(designs):
            line = panel[(panel["n_therapists"] == n_t) & (panel["clients_per_therapist"] == n_c)]
            line = line.sort_values("effect_size")
            if line.empty:
                continue
            yerr = np.vstack([line["power"] - line["ci_low"], line["ci_high"] - line["power"]])
            ax.errorbar(line["effect_size"], line["power"], yerr=yerr, marker=MARKERS[k % len(MARKERS)],
                        linestyle=LINESTYLES[k % len(LINESTYLES)], capsize=2, markersize=4,
                        label=f"{n_t} therapists \u00d7 {n_c} clients")
        ax.axhline(target, color="0.3", linewidth=0.8, linestyle="--")
        if alpha is not None:
            ax.axhline(alpha, color="0.5", linewidth=0.8, linestyle=":")
        ax.set_title(f"{n_sessions} sessions")
        ax.set_xlabel(xlabel)
        ax.set_ylim(-0.02, 1.02)
    axes[0][0].set_ylabel("Power")
    handles, labels = axes[0][0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 3), frameon=False,
                   bbox_to_anchor=(0.5, -0.02 - 0.05 * math.ceil(len(labels) / 3)))
    fig.tight_layout()
    return fig

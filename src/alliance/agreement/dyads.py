"""Client–therapist agreement on the alliance.

The Working Alliance Inventory is completed separately by client and therapist after the
same session, so their ratings can be paired and compared: discrepancy per item and per
scale (goal, task, bond, total), correlation, Bland–Altman limits of agreement, a per-dyad
table, and polynomial regression with response surface analysis (RSA) to ask whether
agreement itself predicts outcome.

Inputs follow ``docs/data_contract.md``: the long scores table (``client``, ``therapist``,
``session``, ``instrument``, ``respondent``, ``scale``, ``score``, ...) and, for items, the
tidy administrations table with item columns ``{instrument}_{n}``.

Paired tables are wide, one row per dyad-session (``client``, ``therapist``, ``session``),
with ``client_{name}`` and ``therapist_{name}`` for every scale (or ``item{n}``) name.

References
----------
Bland, J. M., & Altman, D. G. (1986). Statistical methods for assessing agreement between
two methods of clinical measurement. *Lancet*, 327, 307–310.
Bland, J. M., & Altman, D. G. (1999). Measuring agreement in method comparison studies.
*Statistical Methods in Medical Research*, 8, 135–160.
Edwards, J. R. (2002). Alternatives to difference scores: polynomial regression analysis
and response surface methodology. In F. Drasgow & N. Schmitt (Eds.), *Measuring and
analyzing behavior in organizations* (pp. 350–400). Jossey-Bass.
Shanock, L. R., Baran, B. E., Gentry, W. A., Pattison, S. C., & Heggestad, E. D. (2010).
Polynomial regression with response surface analysis. *Journal of Business and
Psychology*, 25, 543–554.
Humberg, S., Nestler, S., & Back, M. D. (2019). Response surface analysis in personality
and social psychology: checklist and clarifications for the case of congruence hypotheses.
*Social Psychological and Personality Science*, 10, 409–419 (surface parameter a5 = b3 − b5).
Kuznetsova, A., Brockhoff, P. B., & Christensen, R. H. B. (2017). lmerTest package: tests in
linear mixed effects models. *Journal of Statistical Software*, 82(13).
Schönbrodt, F. D., & Humberg, S. RSA: an R package for response surface analysis
(first principal axis).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from alliance.errors import describe_value, first_row, shape_of
from alliance.errors import require_columns as _require_columns
from alliance.lmm import fit as lmm_fit
from scipy import stats

__all__ = [
    "KEYS",
    "pair_ratings",
    "pair_items",
    "pair_scales",
    "discrepancy_summary",
    "per_dyad_table",
    "ResponseSurface",
    "SURFACE_CONTRASTS",
    "surface_parameters",
    "principal_axis",
    "response_surface",
]

KEYS = ["client", "therapist", "session"]
DEFAULT_SCALES = ("goal", "task", "bond", "total")
SCORE_COLUMNS = ["client", "therapist", "session", "instrument", "respondent", "scale", "score"]

COEFFICIENT_NAMES = ["b0", "b1", "b2", "b3", "b4", "b5"]
# Surface parameters as linear combinations of (b0, ..., b5): Edwards (2002); a5 from RSA.
SURFACE_CONTRASTS = pd.DataFrame(
    [
        [0, 1, 1, 0, 0, 0],  # a1: slope along the line of congruence (x = y)
        [0, 0, 0, 1, 1, 1],  # a2: curvature along the line of congruence
        [0, 1, -1, 0, 0, 0],  # a3: slope along the line of incongruence (x = -y)
        [0, 0, 0, 1, -1, 1],  # a4: curvature along the line of incongruence
        [0, 0, 0, 1, 0, -1],  # a5: b3 - b5, asymmetry of the x^2 and y^2 terms
    ],
    index=["a1", "a2", "a3", "a4", "a5"],
    columns=COEFFICIENT_NAMES,
    dtype=float,
)
INFERENCE_COLUMNS = ["estimate", "se", "df", "t", "p", "ci_low", "ci_high"]


# --------------------------------------------------------------------------------------
# Checks
# --------------------------------------------------------------------------------------
def _check_level(value: float, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
        raise ValueError(f"{name} must be a number between 0 and 1, got {value!r}")
    return float(value)


def _numeric_column(data: pd.DataFrame, column: str) -> np.ndarray:
    values = pd.to_numeric(data[column], errors="coerce")
    bad = (values.isna() & data[column].notna()).to_numpy()
    if bad.any():
        row = first_row(data, bad)
        raise ValueError(
            f"column {column!r} must be numeric; row {row!r} has {describe_value(data[column][bad].iloc[0])}"
        )
    out = values.to_numpy(dtype=float)
    if np.isinf(out).any():
        row = first_row(data, np.isinf(out))
        raise ValueError(f"column {column!r} must be finite; row {row!r} is infinite")
    return out


def _check_unique(data: pd.DataFrame, keys: list[str], what: str) -> None:
    duplicated = data.duplicated(keys)
    if duplicated.any():
        row = first_row(data, duplicated.to_numpy())
        first = {k: v.item() if isinstance(v, np.generic) else v for k, v in data.loc[duplicated, keys].iloc[0].items()}
        # ids by their shape only: an id may be a client's own
        where = ", ".join(f"{k} {shape_of(str(v))}" if k in ("client", "therapist") else f"{k}={v!r}"
                          for k, v in first.items())
        raise ValueError(f"{what} has more than one row for the same {', '.join(keys)} (row {row!r}: {where})")


# --------------------------------------------------------------------------------------
# Pairing
# --------------------------------------------------------------------------------------
def _side_scores(
    scores: pd.DataFrame, instrument: str, respondent: str, scales: Sequence[str]
) -> pd.DataFrame:
    rows = scores[(scores["instrument"] == instrument) & (scores["respondent"] == respondent)]
    if rows.empty:
        raise ValueError(
            f"scores has no rows with instrument={instrument!r} and respondent={respondent!r}"
        )
    available = list(pd.unique(rows["scale"]))
    missing = [s for s in scales if s not in available]
    if missing:
        raise ValueError(
            f"instrument {instrument!r} ({respondent}) has no scale(s) {missing}; "
            f"available: {available}"
        )
    rows = rows[rows["scale"].isin(scales)]
    _check_unique(rows, [*KEYS, "scale"], f"scores for {instrument!r} ({respondent})")
    wide = rows.pivot(index=KEYS, columns="scale", values="score")
    return wide.reindex(columns=list(scales))


def pair_scales(
    client_wide: pd.DataFrame, therapist_wide: pd.DataFrame, names: Sequence[str]
) -> pd.DataFrame:
    """Join client and therapist values (indexed by dyad-session) into one wide table."""
    left = client_wide.rename(columns=lambda s: f"client_{s}")
    right = therapist_wide.rename(columns=lambda s: f"therapist_{s}")
    joined = left.join(right, how="inner").reset_index()
    ordered = [col for s in names for col in (f"client_{s}", f"therapist_{s}")]
    joined = joined[[*KEYS, *ordered]].sort_values(KEYS, kind="mergesort", ignore_index=True)
    joined.columns.name = None
    return joined


def pair_ratings(
    scores: pd.DataFrame,
    instrument_client: str,
    instrument_therapist: str,
    scales: Sequence[str] = DEFAULT_SCALES,
) -> pd.DataFrame:
    """Pair client and therapist alliance scores of the same session.

    Parameters
    ----------
    scores : DataFrame
        The long scores table (``docs/data_contract.md``).
    instrument_client, instrument_therapist : str
        Instrument names of the client form (rows with ``respondent == "client"``) and of
        the therapist form (``respondent == "therapist"``); they may be the same name.
    scales : sequence of str
        Scale names present in both forms, e.g. ``("goal", "task", "bond", "total")``.

    Returns
    -------
    DataFrame
        One row per dyad-session that both rated (inner join on client, therapist and
        session), sorted, with ``client_{scale}`` and ``therapist_{scale}`` per scale. A scale
        score missing on one side stays NaN; the summaries drop such pairs per scale.
    """
    _require_columns(scores, SCORE_COLUMNS, "scores")
    if isinstance(scales, str) or len(scales) == 0:
        raise ValueError(f"scales must be a non-empty sequence of scale names, got {scales!r}")
    client = _side_scores(scores, instrument_client, "client", scales)
    therapist = _side_scores(scores, instrument_therapist, "therapist", scales)
    return pair_scales(client, therapist, scales)


def _item_columns(columns: Sequence[str], instrument: str) -> dict[int, str]:
    pattern = re.compile(rf"^{re.escape(instrument)}_(\d+)$")
    found = {int(m.group(1)): col for col in columns if (m := pattern.match(str(col)))}
    return dict(sorted(found.items()))


def _side_items(
    administrations: pd.DataFrame, instrument: str, respondent: str, items: dict[int, str]
) -> pd.DataFrame:
    rows = administrations[administrations["respondent"] == respondent]
    rows = rows[rows[list(items.values())].notna().any(axis=1)]
    if rows.empty:
        raise ValueError(f"administrations has no {respondent} rows with {instrument!r} items")
    _check_unique(rows, KEYS, f"administrations ({respondent}, {instrument!r})")
    wide = rows.set_index(KEYS)[list(items.values())]
    wide.columns = [f"item{n}" for n in items]
    return wide


def pair_items(
    administrations: pd.DataFrame, instrument_client: str, instrument_therapist: str
) -> pd.DataFrame:
    """Pair client and therapist item responses of the same session.

    Parameters
    ----------
    administrations : DataFrame
        The tidy administrations table (``docs/data_contract.md``) with ``client``,
        ``therapist``, ``session``, ``respondent`` and item columns ``{instrument}_{n}``.
    instrument_client, instrument_therapist : str
        Instrument names of the two forms. The forms must share items: the same item numbers
        (item n of the client form is compared with item n of the therapist form).

    Returns
    -------
    DataFrame
        One row per dyad-session with ``client_item{n}`` and ``therapist_item{n}``. Raw item
        responses (before reverse keying); both forms must use the same response scale.
    """
    _require_columns(administrations, [*KEYS, "respondent"], "administrations")
    client_items = _item_columns(administrations.columns, instrument_client)
    therapist_items = _item_columns(administrations.columns, instrument_therapist)
    for name, items in ((instrument_client, client_items), (instrument_therapist, therapist_items)):
        if not items:
            raise ValueError(f"administrations has no item columns '{name}_<n>'")
    if list(client_items) != list(therapist_items):
        raise ValueError(
            f"the forms do not share items: {instrument_client!r} has items "
            f"{list(client_items)}, {instrument_therapist!r} has {list(therapist_items)}"
        )
    client = _side_items(administrations, instrument_client, "client", client_items)
    therapist = _side_items(administrations, instrument_therapist, "therapist", therapist_items)
    return pair_scales(client, therapist, [f"item{n}" for n in client_items])


def _paired_names(pairs: pd.DataFrame, scales: Sequence[str] | None) -> list[str]:
    if scales is None:
        scales = [
            col[len("client_") :]
            for col in pairs.columns
            if str(col).startswith("client_") and f"therapist_{col[len('client_'):]}" in pairs
        ]
        if not scales:
            raise ValueError(
                "pairs has no client_<scale>/therapist_<scale> column pairs; "
                "build it with pair_ratings or pair_items"
            )
    if isinstance(scales, str):
        raise ValueError(f"scales must be a sequence of names, got the string {scales!r}")
    _require_columns(
        pairs, [c for s in scales for c in (f"client_{s}", f"therapist_{s}")], "pairs"
    )
    return list(scales)


# --------------------------------------------------------------------------------------
# Discrepancy, correlation, Bland–Altman
# --------------------------------------------------------------------------------------
def _pearson(x: np.ndarray, y: np.ndarray, level: float) -> dict[str, float]:
    n = len(x)
    out = {"r": math.nan, "r_ci_low": math.nan, "r_ci_high": math.nan, "r_p": math.nan}
    if n < 3 or np.std(x) == 0 or np.std(y) == 0:
        return out
    r = float(np.clip(np.corrcoef(x, y)[0, 1], -1.0, 1.0))
    out["r"] = r
    if abs(r) < 1:
        t = r * math.sqrt((n - 2) / (1 - r * r))
        out["r_p"] = float(2 * stats.t.sf(abs(t), n - 2))
    else:
        out["r_p"] = 0.0
    if n > 3 and abs(r) < 1:
        # Fisher z interval: atanh(r) is approximately normal with SE 1/sqrt(n - 3).
        half = stats.norm.ppf(0.5 + level / 2) / math.sqrt(n - 3)
        out["r_ci_low"] = math.tanh(math.atanh(r) - half)
        out["r_ci_high"] = math.tanh(math.atanh(r) + half)
    return out


def _limits_of_agreement(
    diff: np.ndarray, loa_z: float, level: float, limit_se: str
) -> dict[str, float]:
    n = len(diff)
    mean, sd = float(np.mean(diff)), float(np.std(diff, ddof=1))
    low, high = mean - loa_z * sd, mean + loa_z * sd
    if limit_se == "bland_altman":
        # Bland & Altman (1986, 1999): var(mean +/- z s) is approximately 3 s^2 / n.
        se = math.sqrt(3 * sd**2 / n)
    else:
        # Delta method, var(mean) + z^2 var(s), with var(s) ~ s^2 / (2 (n - 1)).
        se = sd * math.sqrt(1 / n + loa_z**2 / (2 * (n - 1)))
    t = stats.t.ppf(0.5 + level / 2, n - 1)
    return {
        "loa_low": low,
        "loa_high": high,
        "loa_se": se,
        "loa_low_ci_low": low - t * se,
        "loa_low_ci_high": low + t * se,
        "loa_high_ci_low": high - t * se,
        "loa_high_ci_high": high + t * se,
    }


def _scale_summary(
    x: np.ndarray, y: np.ndarray, loa_z: float, level: float, limit_se: str
) -> dict[str, float]:
    n = len(x)
    diff = x - y
    row: dict[str, float] = {"n": n}
    row["mean_client"] = float(np.mean(x)) if n else math.nan
    row["mean_therapist"] = float(np.mean(y)) if n else math.nan
    row["mean_diff"] = float(np.mean(diff)) if n else math.nan
    row["mean_abs_diff"] = float(np.mean(np.abs(diff))) if n else math.nan
    if n < 2:
        return row
    sd = float(np.std(diff, ddof=1))
    se = sd / math.sqrt(n)
    t_crit = stats.t.ppf(0.5 + level / 2, n - 1)
    row.update(
        sd_diff=sd,
        se_mean_diff=se,
        mean_diff_ci_low=row["mean_diff"] - t_crit * se,
        mean_diff_ci_high=row["mean_diff"] + t_crit * se,
        t=row["mean_diff"] / se if se > 0 else math.nan,
        p=float(2 * stats.t.sf(abs(row["mean_diff"] / se), n - 1)) if se > 0 else math.nan,
    )
    row.update(_pearson(x, y, level))
    row.update(_limits_of_agreement(diff, loa_z, level, limit_se))
    return row


SUMMARY_COLUMNS = [
    "scale", "n", "mean_client", "mean_therapist", "mean_diff", "mean_abs_diff", "sd_diff",
    "se_mean_diff", "mean_diff_ci_low", "mean_diff_ci_high", "t", "p", "r", "r_ci_low",
    "r_ci_high", "r_p", "loa_low", "loa_high", "loa_se", "loa_low_ci_low", "loa_low_ci_high",
    "loa_high_ci_low", "loa_high_ci_high",
]  # fmt: skip


def discrepancy_summary(
    pairs: pd.DataFrame,
    scales: Sequence[str] | None = None,
    loa_z: float = 1.96,
    level: float = 0.95,
    limit_se: str = "bland_altman",
) -> pd.DataFrame:
    """Client–therapist discrepancy, correlation and Bland–Altman limits per scale.

    Parameters
    ----------
    pairs : DataFrame
        Output of :func:`pair_ratings` or :func:`pair_items`.
    scales : sequence of str, optional
        Names to summarise; default every ``client_<name>``/``therapist_<name>`` pair.
    loa_z : float
        Multiplier of the SD of differences for the limits of agreement (1.96 for 95%
        limits; Bland & Altman, 1986, rounded it to 2).
    level : float
        Confidence level of all intervals.
    limit_se : {"bland_altman", "delta"}
        Standard error of a limit: ``"bland_altman"``, ``sqrt(3 s^2 / n)`` (Bland & Altman,
        1986, 1999); ``"delta"``, ``s * sqrt(1/n + z^2 / (2 (n - 1)))``, the expression
        that 3 s^2 / n approximates for z near 2.

    Returns
    -------
    DataFrame
        One row per scale: ``n`` complete pairs; ``mean_client``, ``mean_therapist``;
        ``mean_diff`` (client − therapist) with ``sd_diff``, ``se_mean_diff``, t-based CI,
        paired ``t`` and ``p``; ``mean_abs_diff``; Pearson ``r`` with Fisher-z CI and
        ``r_p``; limits of agreement ``loa_low``/``loa_high`` (mean ± z SD) with ``loa_se``
        and t-based (n − 1 df) CIs of each limit.

    Notes
    -----
    Every dyad-session counts as one independent pair. With several sessions per dyad the
    pairs are clustered, so the CIs are too narrow; summarise one session per dyad, or dyad
    means (:func:`per_dyad_table`), when that matters. Pairs missing either score of a scale
    are dropped for that scale.

    Tested against the published worked example of Bland & Altman (1986; peak expiratory
    flow, 17 subjects), scipy's paired t-test and Pearson interval, and a hand computation.
    """
    names = _paired_names(pairs, scales)
    if isinstance(loa_z, bool) or not isinstance(loa_z, (int, float)) or loa_z <= 0:
        raise ValueError(f"loa_z must be a positive number, got {loa_z!r}")
    level = _check_level(level, "level")
    if limit_se not in ("bland_altman", "delta"):
        raise ValueError(f"limit_se must be 'bland_altman' or 'delta', got {limit_se!r}")
    rows = []
    for name in names:
        x = _numeric_column(pairs, f"client_{name}")
        y = _numeric_column(pairs, f"therapist_{name}")
        complete = ~(np.isnan(x) | np.isnan(y))
        summary = _scale_summary(x[complete], y[complete], loa_z, level, limit_se)
        rows.append({"scale": name, **summary})
    return pd.DataFrame(rows).reindex(columns=SUMMARY_COLUMNS)


def per_dyad_table(pairs: pd.DataFrame, scales: Sequence[str] | None = None) -> pd.DataFrame:
    """Per-dyad agreement: mean ratings and discrepancies over the dyad's sessions.

    Returns
    -------
    DataFrame
        One row per client, therapist and scale: ``n_sessions`` (complete pairs),
        ``mean_client``, ``mean_therapist``, ``mean_diff`` (client − therapist), ``sd_diff``
        (NaN with one session) and ``mean_abs_diff``. Ids are the pseudonyms of the input.
    """
    names = _paired_names(pairs, scales)
    _require_columns(pairs, ["client", "therapist"], "pairs")
    frames = []
    for name in names:
        x = _numeric_column(pairs, f"client_{name}")
        y = _numeric_column(pairs, f"therapist_{name}")
        long = pd.DataFrame(
            {"client": pairs["client"].to_numpy(), "therapist": pairs["therapist"].to_numpy(),
             "x": x, "y": y, "d": x - y, "ad": np.abs(x - y)}
        ).dropna(subset=["d"])  # fmt: skip
        table = long.groupby(["client", "therapist"], sort=True).agg(
            n_sessions=("d", "size"),
            mean_client=("x", "mean"),
            mean_therapist=("y", "mean"),
            mean_diff=("d", "mean"),
            sd_diff=("d", "std"),
            mean_abs_diff=("ad", "mean"),
        )
        table.insert(0, "scale", name)
        frames.append(table.reset_index())
    return pd.concat(frames, ignore_index=True)


# --------------------------------------------------------------------------------------
# Polynomial regression and response surface analysis
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ResponseSurface:
    """Result of :func:`response_surface`.

    Attributes
    ----------
    coefficients : DataFrame
        b0..b5 of ``z = b0 + b1 x + b2 y + b3 x^2 + b4 xy + b5 y^2 [+ g' covariates]``
        (centred x, y and covariates), then one row per covariate, with ``estimate, se, df, t,
        p, ci_low, ci_high``.
    surface : DataFrame
        a1..a5 with the same columns.
    principal_axis : pd.Series
        Stationary point ``X0, Y0`` and first principal axis ``y = p10 + p11 x`` in centred
        units (point estimates, no SEs; NaN where undefined), and ``p10_raw``, the axis
        intercept on the original scale.
    vcov : DataFrame
        Covariance matrix of all coefficients (b0..b5, then the covariates).
    centre : float
        The value subtracted from both x and y.
    n : int
        Rows used; ``n_dropped`` rows with missing values were left out.
    method : str
        ``"ols"``, ``"cluster"`` or ``"mixed"``.
    covariate_means : Series
        The value subtracted from each covariate (its mean over the rows used); the surface is
        the fitted z at these values. Empty without covariates.
    df_method : str
        How the df of a1..a5 were obtained (see :func:`response_surface`).
    """

    coefficients: pd.DataFrame
    surface: pd.DataFrame
    principal_axis: pd.Series
    vcov: pd.DataFrame
    centre: float
    n: int
    n_dropped: int
    method: str
    covariate_means: pd.Series = field(default_factory=lambda: pd.Series(dtype=float))
    df_method: str = ""

    def predict(self, x: Any, y: Any) -> np.ndarray:
        """Fitted z at raw (uncentred) x and y, covariates at their means."""
        b = self.coefficients.loc[COEFFICIENT_NAMES, "estimate"].to_numpy()
        xc = np.asarray(x, dtype=float) - self.centre
        yc = np.asarray(y, dtype=float) - self.centre
        return b[0] + b[1] * xc + b[2] * yc + b[3] * xc**2 + b[4] * xc * yc + b[5] * yc**2


def _inference_table(
    estimate: np.ndarray, se: np.ndarray, df: np.ndarray, index: list[str], level: float
) -> pd.DataFrame:
    with np.errstate(divide="ignore", invalid="ignore"):
        t = estimate / se
    finite_df = np.isfinite(df)
    p = np.where(finite_df, 2 * stats.t.sf(np.abs(t), np.where(finite_df, df, 1)),
                 2 * stats.norm.sf(np.abs(t)))  # fmt: skip
    crit = np.where(finite_df, stats.t.ppf(0.5 + level / 2, np.where(finite_df, df, 1)),
                    stats.norm.ppf(0.5 + level / 2))  # fmt: skip
    return pd.DataFrame(
        {"estimate": estimate, "se": se, "df": df, "t": t, "p": p,
         "ci_low": estimate - crit * se, "ci_high": estimate + crit * se},
        index=index,
    )  # fmt: skip


def surface_parameters(
    coefficients: pd.Series, vcov: pd.DataFrame, df: pd.Series | float, level: float = 0.95
) -> pd.DataFrame:
    """Surface parameters a1..a5 with SEs from the coefficient covariance.

    Each a_k = c_k' b is a linear combination of the polynomial coefficients, so
    ``var(a_k) = c_k' V c_k`` (Edwards, 2002; contrasts in :data:`SURFACE_CONTRASTS`;
    a5 = b3 − b5 as Humberg, Nestler & Back, 2019).

    Parameters
    ----------
    coefficients : Series
        b0..b5 (index names ``b0``..``b5``; further entries, e.g. covariates, are ignored).
    vcov : DataFrame
        Their covariance matrix (index and columns ``b0``..``b5`` at least).
    df : float or Series
        Degrees of freedom for t-based inference (``inf``: normal): one value for all, or a
        Series indexed ``a1``..``a5`` with each parameter's own df (e.g. the Satterthwaite df
        of the contrast in a mixed model).
    level : float
        Confidence level.
    """
    level = _check_level(level, "level")
    b = coefficients.reindex(COEFFICIENT_NAMES).to_numpy(dtype=float)
    v = vcov.reindex(index=COEFFICIENT_NAMES, columns=COEFFICIENT_NAMES).to_numpy(dtype=float)
    contrasts = SURFACE_CONTRASTS.to_numpy()
    estimate = contrasts @ b
    se = np.sqrt(np.einsum("ij,jk,ik->i", contrasts, v, contrasts))
    names = list(SURFACE_CONTRASTS.index)
    if isinstance(df, pd.Series):
        missing = [a for a in names if a not in df.index]
        if missing:
            raise ValueError(f"df must be one number or a Series indexed {names}; missing {missing}")
        df_a = df.reindex(names).to_numpy(dtype=float)
    else:
        df_a = np.full(len(contrasts), float(df))
    return _inference_table(estimate, se, df_a, names, level)


def principal_axis(coefficients: pd.Series, centre: float = 0.0) -> pd.Series:
    """Stationary point and first principal axis of a quadratic surface (Edwards, 2002).

    ``X0 = (b2 b4 - 2 b1 b5) / (4 b3 b5 - b4^2)``, ``Y0 = (b1 b4 - 2 b2 b3) / (4 b3 b5 -
    b4^2)``, ``p11 = (b5 - b3 + sqrt((b3 - b5)^2 + b4^2)) / b4``, ``p10 = Y0 - p11 X0``, as
    in the RSA package. NaN where the denominators vanish (no unique stationary point, or
    b4 = 0 so the axis is parallel to a coordinate axis).
    """
    b1, b2, b3, b4, b5 = (float(coefficients[f"b{k}"]) for k in range(1, 6))
    denom = 4 * b3 * b5 - b4**2
    x0 = (b2 * b4 - 2 * b1 * b5) / denom if denom != 0 else math.nan
    y0 = (b1 * b4 - 2 * b2 * b3) / denom if denom != 0 else math.nan
    p11 = (b5 - b3 + math.sqrt((b3 - b5) ** 2 + b4**2)) / b4 if b4 != 0 else math.nan
    p10 = y0 - p11 * x0
    # Back on the raw scale (both axes shifted by the same centre): Y = c + p10 + p11 (X - c).
    p10_raw = centre + p10 - p11 * centre
    return pd.Series({"X0": x0, "Y0": y0, "p10": p10, "p11": p11, "p10_raw": p10_raw})


def _centre_value(x: np.ndarray, y: np.ndarray, centre: float | str) -> float:
    if isinstance(centre, str):
        if centre != "grand_mean":
            raise ValueError(
                f"centre must be a number (scale midpoint) or 'grand_mean', got {centre!r}"
            )
        return float(np.mean(np.concatenate([x, y])))
    if isinstance(centre, bool) or not isinstance(centre, (int, float)):
        raise ValueError(f"centre must be a finite number or 'grand_mean', got {centre!r}")
    if not math.isfinite(centre):
        raise ValueError(f"centre must be a finite number or 'grand_mean', got {centre!r}")
    return float(centre)


def _design(x: np.ndarray, y: np.ndarray, covariates: np.ndarray) -> np.ndarray:
    return np.column_stack([np.ones_like(x), x, y, x**2, x * y, y**2, covariates])


def _ols_fit(
    z: np.ndarray, design: np.ndarray, groups: np.ndarray | None, names: list[str]
) -> tuple[pd.Series, pd.DataFrame, float]:
    import statsmodels.api as sm

    model = sm.OLS(z, design)
    if groups is None:
        result = model.fit()
        df = float(result.df_resid)
    else:
        # CR1 sandwich (small-sample factor G/(G-1) * (N-1)/(N-K)); t with G - 1 df.
        result = model.fit(cov_type="cluster", cov_kwds={"groups": groups}, use_t=True)
        df = float(len(np.unique(groups)) - 1)
    b = pd.Series(result.params, index=names)
    vcov = pd.DataFrame(result.cov_params(), index=names, columns=names)
    return b, vcov, df


def _result_vcov(result: Any) -> pd.DataFrame:
    for name in ("vcov", "fixed_vcov", "cov_params"):
        value = getattr(result, name, None)
        if callable(value):
            value = value()
        if value is not None:
            return pd.DataFrame(value) if not isinstance(value, pd.DataFrame) else value
    raise ValueError(
        "the mixed-model result exposes no fixed-effect covariance matrix (looked for "
        "'vcov', 'fixed_vcov', 'cov_params'); the surface parameters' SEs need it"
    )


def _lmm(
    z: np.ndarray, design: np.ndarray, groups: np.ndarray, fit: Callable[..., Any]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """REML fit of ``z ~ design[:, 1:] + (1 | group)``: estimates, covariance, df (inf if none)."""
    terms = [f"rs_{k}" for k in range(1, design.shape[1])]
    data = pd.DataFrame(design[:, 1:], columns=terms)
    data.insert(0, "rs_z", z)
    data["rs_group"] = groups
    result = fit(f"rs_z ~ {' + '.join(terms)} + (1 | rs_group)", data, reml=True)
    fixed = result.fixed_effects
    intercept = next((n for n in ("(Intercept)", "Intercept", "const") if n in fixed.index), None)
    if intercept is None:
        raise ValueError(f"mixed-model fixed effects have no intercept row: {list(fixed.index)}")
    order = [intercept, *terms]
    df = fixed.loc[order, "df"] if "df" in fixed.columns else pd.Series(np.inf, index=order)
    return (
        fixed.loc[order, "estimate"].to_numpy(dtype=float),
        _result_vcov(result).loc[order, order].to_numpy(dtype=float),
        df.to_numpy(dtype=float),
    )


def _surface_basis(n_columns: int) -> np.ndarray:
    """Matrix A with ``A b = (b0, a1..a5, covariates)``: the surface parameters as coefficients."""
    basis = np.eye(n_columns)
    basis[1:6, :6] = SURFACE_CONTRASTS.to_numpy()
    return basis


def _mixed_fit(
    z: np.ndarray, design: np.ndarray, groups: np.ndarray, fit: Callable[..., Any] | None,
    names: list[str],
) -> tuple[pd.Series, pd.DataFrame, pd.Series, pd.Series]:
    """Therapist random-intercept fits: b with their df, and the Satterthwaite df of a1..a5.

    The df of a contrast c'b come from a second fit of the same model with the design
    reparameterised, ``X* = X A^-1`` (:func:`_surface_basis`), so that a1..a5 are single
    coefficients: the REML criterion changes only by a constant, so the variance parameters,
    ``Cov(A b) = A Cov(b) A'`` and hence the Satterthwaite df of ``a_k`` (Kuznetsova et al.,
    2017) are those of the contrast in the first fit.
    """
    if fit is None:
        fit = lmm_fit  # the project's REML engine (lme4/lmerTest semantics)
    b, v, df_b = _lmm(z, design, groups, fit)
    basis = _surface_basis(design.shape[1])
    _, _, df_star = _lmm(z, design @ np.linalg.inv(basis), groups, fit)
    return (
        pd.Series(b, index=names),
        pd.DataFrame(v, index=names, columns=names),
        pd.Series(df_b, index=names),
        pd.Series(df_star[1:6], index=list(SURFACE_CONTRASTS.index)),
    )


DF_METHODS = {
    "ols": "t with n - k residual df (OLS)",
    "cluster": "t with G - 1 df, G therapists (cluster-robust CR1 SEs)",
    "mixed": (
        "Satterthwaite df of each a_k (as lmerTest), from a refit with the design "
        "reparameterised so that a1..a5 are single coefficients"
    ),
}


def response_surface(
    data: pd.DataFrame,
    x: str,
    y: str,
    z: str,
    therapist: str | None = None,
    centre: float | str = "grand_mean",
    method: str | None = None,
    fit: Callable[..., Any] | None = None,
    level: float = 0.95,
    covariates: Sequence[str] = (),
) -> ResponseSurface:
    """Polynomial regression with response surface analysis (Edwards, 2002).

    Fits ``z = b0 + b1 x + b2 y + b3 x^2 + b4 xy + b5 y^2 [+ g' covariates]`` on centred x
    and y and returns the surface parameters along the line of congruence (x = y): slope
    ``a1 = b1 + b2`` and curvature ``a2 = b3 + b4 + b5``; along the line of incongruence
    (x = -y): slope ``a3 = b1 - b2`` and curvature ``a4 = b3 - b4 + b5``; and ``a5 = b3 - b5``
    (Humberg, Nestler & Back, 2019). SEs from the coefficient covariance V,
    ``var(a) = c' V c``.

    Parameters
    ----------
    data : DataFrame
        One row per unit (e.g. client), with x (client rating), y (therapist rating) on the
        same scale, and outcome z.
    x, y, z : str
        Column names.
    therapist : str, optional
        Cluster column (e.g. therapist). When given, SEs account for clustering.
    centre : float or "grand_mean"
        Value subtracted from both x and y (one value, so the line x = y keeps its meaning).
        ``"grand_mean"`` (default) uses the mean of all x and y values pooled, so that a1..a5
        describe the surface where the data are; a number (e.g. the scale midpoint, as
        Shanock et al., 2010) describes it there instead.
    method : {"ols", "cluster", "mixed"}, optional
        ``"ols"`` (statsmodels OLS, t with n - k df) is the default without ``therapist``;
        with it the default is ``"cluster"``: OLS with cluster-robust CR1 SEs by therapist
        and t with G - 1 df. ``"mixed"`` fits a therapist random intercept by REML via
        ``fit`` (default :func:`alliance.lmm.fit`, Satterthwaite df); the fit result must
        expose the fixed-effect covariance matrix (``vcov``, ``fixed_vcov`` or
        ``cov_params()``), and ``df`` in its fixed-effects table (else normal inference).
    fit : callable, optional
        ``fit(formula, data, reml=True)`` for ``method="mixed"``.
    level : float
        Confidence level.
    covariates : sequence of str
        Numeric columns entered linearly (e.g. the outcome's baseline, so that z is the post
        score adjusted for it); each is centred at its mean over the rows used.

    Returns
    -------
    ResponseSurface

    Notes
    -----
    Rows with a missing x, y, z, covariate (or therapist) are dropped (listwise); their
    number is in ``n_dropped``. With ``method="mixed"`` the df of a_k are the Satterthwaite df
    of the contrast c_k'b, obtained by refitting the model with the design reparameterised so
    that a1..a5 are single coefficients (exact: REML is invariant to a nonsingular
    reparameterisation of the fixed effects); estimates and SEs are c_k'b and sqrt(c_k'Vc_k)
    of the first fit. Tested against lme4 + lmerTest (``contest``) in
    tests/data/response_surface/, hand computations, statsmodels' contrast t tests, a hand CR1
    sandwich and recovery of known surfaces (tests/test_agreement.py).
    """
    level = _check_level(level, "level")
    covariates = _check_covariates(covariates, (x, y, z, therapist))
    columns = [x, y, z, *covariates] + ([therapist] if therapist is not None else [])
    _require_columns(data, columns, "data")
    method = _resolve_method(method, therapist)
    values = {col: _numeric_column(data, col) for col in (x, y, z, *covariates)}
    complete = ~np.any([np.isnan(v) for v in values.values()], axis=0)
    if therapist is not None:
        complete &= data[therapist].notna().to_numpy()
    xv, yv, zv = values[x][complete], values[y][complete], values[z][complete]
    _check_design_size(xv, yv, x, y, 6 + len(covariates))
    c = _centre_value(xv, yv, centre)
    cov_values = np.column_stack([values[k][complete] for k in covariates] or [np.empty((len(xv), 0))])
    cov_means = cov_values.mean(axis=0)
    design = _design(xv - c, yv - c, cov_values - cov_means)
    names = [*COEFFICIENT_NAMES, *covariates]
    groups = None
    if method != "ols":
        groups = pd.factorize(data[therapist].to_numpy()[complete])[0]
        if len(np.unique(groups)) < 2:
            raise ValueError(f"column {therapist!r} needs at least 2 clusters, found 1")
    if method == "mixed":
        b, vcov, df_b, df_a = _mixed_fit(zv, design, groups, fit, names)
    else:
        b, vcov, df = _ols_fit(zv, design, groups, names)
        df_b, df_a = pd.Series(df, index=names), df
    coefficients = _inference_table(
        b.to_numpy(), np.sqrt(np.diag(vcov.to_numpy())), df_b.to_numpy(), names, level
    )
    return ResponseSurface(
        coefficients=coefficients,
        surface=surface_parameters(b, vcov, df_a, level),
        principal_axis=principal_axis(b, c),
        vcov=vcov,
        centre=c,
        n=int(complete.sum()),
        n_dropped=int((~complete).sum()),
        method=method,
        covariate_means=pd.Series(cov_means, index=list(covariates), dtype=float),
        df_method=DF_METHODS[method],
    )


def _check_covariates(covariates: Sequence[str], taken: Sequence[str | None]) -> list[str]:
    if isinstance(covariates, str):
        raise ValueError(f"covariates must be a sequence of column names, got the string {covariates!r}")
    covariates = list(covariates)
    clash = [k for k in covariates if k in taken or k in COEFFICIENT_NAMES]
    if clash or len(set(covariates)) < len(covariates):
        raise ValueError(
            f"covariates must be distinct columns other than x, y, z and therapist, and not named "
            f"b0..b5; got {covariates}"
        )
    return covariates


def _resolve_method(method: str | None, therapist: str | None) -> str:
    if method is None:
        return "ols" if therapist is None else "cluster"
    if method not in ("ols", "cluster", "mixed"):
        raise ValueError(f"method must be 'ols', 'cluster' or 'mixed', got {method!r}")
    if method in ("cluster", "mixed") and therapist is None:
        raise ValueError(f"method={method!r} needs the therapist (cluster) column")
    return method


def _check_design_size(xv: np.ndarray, yv: np.ndarray, x: str, y: str, k: int) -> None:
    if len(xv) <= k:
        raise ValueError(
            f"response_surface needs more than {k} complete rows for {k} coefficients, got {len(xv)}"
        )
    for name, v in ((x, xv), (y, yv)):
        if len(np.unique(v)) < 3:
            raise ValueError(
                f"column {name!r} needs at least 3 distinct values to estimate a quadratic term"
            )

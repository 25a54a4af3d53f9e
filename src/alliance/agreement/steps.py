"""Workflow steps for client–therapist agreement on the alliance (config section ``agreement:``).

* :func:`write_agreement_outputs`: discrepancy, correlation and Bland–Altman limits of
  agreement per scale (over dyad-sessions and over dyad means), per item, and per dyad, and a
  Bland–Altman plot per scale.
* :func:`write_response_surface`: polynomial regression of the post-treatment outcome on the
  client's and the therapist's alliance, adjusted for the baseline, with response surface
  analysis (a1–a5 with Satterthwaite df from a therapist random-intercept model, or
  cluster-robust SEs), x and y centred at their pooled grand mean; table, fit description,
  figure and the figure's caption with the a1–a5 tests.

The statistics live in :mod:`alliance.agreement` (tested there against Bland & Altman's
published example, hand computations and simulated surfaces); these functions select the data
the config names, combine tables and write them (tests/test_agreement_workflow.py).

References
----------
Bland, J. M., & Altman, D. G. (1986). Statistical methods for assessing agreement between two
methods of clinical measurement. *Lancet*, 327, 307–310.
Bland, J. M., & Altman, D. G. (1999). Measuring agreement in method comparison studies.
*Statistical Methods in Medical Research*, 8, 135–160.
Edwards, J. R. (2002). Alternatives to difference scores: polynomial regression analysis and
response surface methodology. In F. Drasgow & N. Schmitt (Eds.), *Measuring and analyzing
behavior in organizations* (pp. 350–400). Jossey-Bass.
Humberg, S., Nestler, S., & Back, M. D. (2019). Response surface analysis in personality and
social psychology: checklist and clarifications for the case of congruence hypotheses. *Social
Psychological and Personality Science*, 10, 409–419.
Shanock, L. R., Baran, B. E., Gentry, W. A., Pattison, S. C., & Heggestad, E. D. (2010).
Polynomial regression with response surface analysis. *Journal of Business and Psychology*,
25, 543–554.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pandas as pd

from alliance.lmm import fit as lmm_fit
from alliance.agreement.dyads import (
    KEYS,
    SCORE_COLUMNS,
    SUMMARY_COLUMNS,
    ResponseSurface,
    discrepancy_summary,
    pair_items,
    pair_ratings,
    per_dyad_table,
    response_surface,
)
from alliance.agreement.dyads import _item_columns as _dyad_item_columns
from alliance.scoring.instruments import InstrumentKey, keys_from_config
from alliance.outputs import atomic_path, read_parquet, write_csv, write_json
from alliance.report.style import save_figure
from alliance.outputs import json_safe
from alliance.report.tables import format_number, format_p
from alliance.scoring.select import require_instrument, require_scores, select_change

__all__ = [
    "bland_altman_figure_paths",
    "check_agreement_settings",
    "scale_midpoint",
    "agreement_pairs",
    "discrepancy_tables",
    "item_discrepancy",
    "surface_data",
    "fit_surface",
    "surface_table",
    "surface_caption",
    "bland_altman_figure",
    "write_agreement_outputs",
    "write_response_surface",
]

log = logging.getLogger(__name__)

X, Y, Z, BASELINE = "client_alliance", "therapist_alliance", "post", "baseline"
COEFFICIENT_TERMS = {"b0": "intercept", "b1": "x", "b2": "y", "b3": "x^2", "b4": "x*y", "b5": "y^2"}
SURFACE_MEANING = {
    "a1": "slope along the line of congruence (x = y)",
    "a2": "curvature along the line of congruence (x = y)",
    "a3": "slope along the line of incongruence (x = -y)",
    "a4": "curvature along the line of incongruence (x = -y)",
    "a5": "b3 - b5: asymmetry of the x^2 and y^2 terms (Humberg et al., 2019)",
}
SURFACE_COLUMNS = ["kind", "parameter", "meaning", "estimate", "se", "df", "t", "p", "ci_low", "ci_high"]


def bland_altman_figure_paths(settings: Mapping[str, Any]) -> list[tuple[str, str]]:
    """``(path, scale)`` of the Bland–Altman plot of every compared scale, in scale order."""
    return [(f"results/agreement/bland_altman_{scale}.png", scale) for scale in settings["scales"]]


def check_agreement_settings(config: Mapping[str, Any]) -> None:
    """Check the ``agreement:`` section against the rest of the config (instrument entries).

    Raises
    ------
    ValueError
        Naming the config key whose value is not an instrument entry, or a surface scale that is
        not among the compared scales.
    """
    settings = config["agreement"]
    instruments = config["instruments"]
    hint = "set agreement: enabled: false when the study has no therapist-rated alliance"
    require_instrument(instruments, settings["client_instrument"], "agreement/client_instrument", hint)
    require_instrument(instruments, settings["therapist_instrument"], "agreement/therapist_instrument", hint)
    require_instrument(instruments, settings["surface"]["outcome"], "agreement/surface/outcome")
    if settings["surface"]["scale"] not in settings["scales"]:
        raise ValueError(
            f"at agreement/surface/scale: {settings['surface']['scale']!r} is not among "
            f"agreement/scales {settings['scales']}"
        )


def scale_midpoint(key: InstrumentKey, scale: str) -> float:
    """Midpoint of a scale's possible range, from the key's response range and scoring.

    A sum of k items answered from ``response_min`` to ``response_max`` has midpoint
    ``k (min + max) / 2``; a mean ``(min + max) / 2``; both times the key's multiplier; a
    composite scale the sum of its parts' midpoints. Shanock et al. (2010) centre x and y at
    the midpoint so that the surface parameters describe the surface at the middle of the
    scale. E.g. the WAI-SR total (12 items, 1-5, summed) has midpoint 36.
    """
    if scale not in key.scales:
        raise ValueError(f"instrument key {key.name!r} has no scale {scale!r}; its scales: {list(key.scales)}")
    spec = key.scales[scale]
    if spec.is_composite:
        return float(sum(scale_midpoint(key, part) for part in spec.composite_of))
    middle = (key.response_min + key.response_max) / 2
    per_item = middle * len(spec.items) if spec.scoring == "sum" else middle
    return float(per_item * spec.multiplier)


# --------------------------------------------------------------------------------------
# Discrepancy tables
# --------------------------------------------------------------------------------------
def agreement_pairs(scores: pd.DataFrame, settings: Mapping[str, Any]) -> pd.DataFrame:
    """Client and therapist scores of the same dyad-session (:func:`alliance.agreement.pair_ratings`)."""
    scales = list(settings["scales"])
    require_scores(scores, settings["client_instrument"], "client", scales, "agreement/client_instrument")
    require_scores(scores, settings["therapist_instrument"], "therapist", scales,
                   "agreement/therapist_instrument")
    return pair_ratings(scores, settings["client_instrument"], settings["therapist_instrument"], scales)


def _dyad_pairs(per_dyad: pd.DataFrame) -> pd.DataFrame:
    """Per-dyad means in the wide paired layout (``client_<scale>``, ``therapist_<scale>``)."""
    wide = per_dyad.pivot(index=["client", "therapist"], columns="scale",
                          values=["mean_client", "mean_therapist"])
    wide.columns = [f"{'client' if side == 'mean_client' else 'therapist'}_{scale}" for side, scale in wide.columns]
    return wide.reset_index()


def discrepancy_tables(pairs: pd.DataFrame, settings: Mapping[str, Any]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-scale discrepancy summaries and the per-dyad table.

    Returns
    -------
    (DataFrame, DataFrame)
        The :func:`alliance.agreement.discrepancy_summary` of every scale twice, ``unit``
        ``"session"`` (every dyad-session a pair; CIs too narrow when dyads contribute several
        sessions) and ``unit`` ``"dyad"`` (one pair per dyad: the means of its paired sessions,
        so the limits of agreement are those of dyad means); and the per-dyad table of
        :func:`alliance.agreement.per_dyad_table`.
    """
    scales = list(settings["scales"])
    options = {"loa_z": settings["loa_z"], "level": settings["level"], "limit_se": settings["limit_se"]}
    per_dyad = per_dyad_table(pairs, scales)
    by_session = discrepancy_summary(pairs, scales, **options)
    by_dyad = discrepancy_summary(_dyad_pairs(per_dyad), scales, **options)
    summary = pd.concat([by_session.assign(unit="session"), by_dyad.assign(unit="dyad")], ignore_index=True)
    summary.insert(0, "therapist_instrument", settings["therapist_instrument"])
    summary.insert(0, "client_instrument", settings["client_instrument"])
    columns = ["client_instrument", "therapist_instrument", "unit", "scale"]
    return summary[columns + [c for c in summary.columns if c not in columns]], per_dyad


def _item_subscales(key: InstrumentKey) -> dict[int, str]:
    """Item number -> the key's subscale(s) holding it (the total scale left out)."""
    names: dict[int, list[str]] = {}
    for name, spec in key.scales.items():
        if name == key.total_scale or spec.is_composite:
            continue
        for item in spec.items:
            names.setdefault(item, []).append(name)
    return {item: "+".join(found) for item, found in names.items()}


def _dyad_items(administrations_path: str, settings: Mapping[str, Any]) -> pd.DataFrame:
    """The clients' and therapists' rows of the administrations, with the ids and the items of the
    two compared forms: what :func:`item_discrepancy` reads (a small part of the file)."""
    import pyarrow.parquet as pq

    forms = (settings["client_instrument"], settings["therapist_instrument"])
    names = pq.read_schema(administrations_path).names
    items = [c for form in forms for c in _dyad_item_columns(names, form).values()]
    return _read_columns(administrations_path, [*KEYS, "respondent", *items],
                         rows=[("respondent", "in", ["client", "therapist"])])


def _read_columns(path: str, wanted, rows=None) -> pd.DataFrame:
    """Those of the ``wanted`` columns the file has (a missing one is reported by the check that
    needs it), in file order."""
    import pyarrow.parquet as pq

    return read_parquet(path, columns=[c for c in pq.read_schema(path).names if c in set(wanted)], rows=rows)


def item_discrepancy(administrations: pd.DataFrame, settings: Mapping[str, Any],
                     keys: Mapping[str, InstrumentKey]) -> pd.DataFrame:
    """Client–therapist discrepancy per item (raw responses of the same dyad-session).

    Item n of the client form is compared with item n of the therapist form, so both keys must
    have the same number of items and response range.

    Returns
    -------
    DataFrame
        ``item`` (number), ``subscale`` (of the client form's key) and the columns of
        :func:`alliance.agreement.discrepancy_summary`.
    """
    client, therapist = settings["client_instrument"], settings["therapist_instrument"]
    kc, kt = keys[client], keys[therapist]
    if (kc.n_items, kc.response_min, kc.response_max) != (kt.n_items, kt.response_min, kt.response_max):
        raise ValueError(
            f"at agreement/items: the forms cannot be compared item by item: {client!r} has "
            f"{kc.n_items} items answered {kc.response_min:g}-{kc.response_max:g}, {therapist!r} "
            f"{kt.n_items} items answered {kt.response_min:g}-{kt.response_max:g}; set items: false"
        )
    pairs = pair_items(administrations, client, therapist)
    table = discrepancy_summary(pairs, None, loa_z=settings["loa_z"], level=settings["level"],
                                limit_se=settings["limit_se"])
    items = table.pop("scale").str.removeprefix("item").astype(int)
    subscales = _item_subscales(kc)
    table.insert(0, "subscale", [subscales.get(i, "") for i in items])
    table.insert(0, "item", items.to_numpy())
    return table


def bland_altman_figure(pairs: pd.DataFrame, settings: Mapping[str, Any], scale: str,
                        keys: Mapping[str, Any] | None = None):
    """Bland–Altman plot of client versus therapist ratings on ``scale`` (a matplotlib Figure);
    instruments and the scale named from their ``keys`` (config entry -> key) when given."""
    from alliance.agreement.figures import plot_bland_altman
    from alliance.scoring.instruments import instrument_abbreviation, scale_display

    if scale not in settings["scales"]:
        raise ValueError(f"scale {scale!r} is not among agreement/scales {settings['scales']}")
    keys = keys or {}
    client, therapist = settings["client_instrument"], settings["therapist_instrument"]
    fig = plot_bland_altman(pairs, scale, loa_z=settings["loa_z"], level=settings["level"],
                            title=scale_display(client, scale, keys.get(client)).split(" ", 1)[-1].capitalize())
    fig.suptitle(f"{instrument_abbreviation(client, keys.get(client))} (client) \u2212 "
                 f"{instrument_abbreviation(therapist, keys.get(therapist))} (therapist)", fontsize=10)
    return fig


def write_agreement_outputs(scores_path: str, administrations_path: str, settings: Mapping[str, Any],
                            instruments: Mapping[str, Any], discrepancy_path: str, items_path: str,
                            per_dyad_path: str, figure_paths: Sequence[str]) -> dict[str, pd.DataFrame]:
    """Workflow step: discrepancy per scale and per item and the per-dyad table (CSV), and one
    Bland–Altman plot per scale (``figure_paths`` in the order of ``settings["scales"]``).

    ``instruments`` is the config's ``instruments:`` section (for the keys). With
    ``items: false`` the item table is written empty.
    """
    if len(figure_paths) != len(settings["scales"]):
        raise ValueError(
            f"one figure path per scale expected: {len(settings['scales'])} scales, {len(figure_paths)} paths"
        )
    pairs = agreement_pairs(_read_columns(scores_path, SCORE_COLUMNS), settings)
    log.info("agreement: %d dyad-sessions rated by client and therapist, %d dyads", len(pairs),
             len(pairs.drop_duplicates(["client", "therapist"])))
    summary, per_dyad = discrepancy_tables(pairs, settings)
    if settings["items"]:
        keys = keys_from_config({"instruments": instruments})
        items = item_discrepancy(_dyad_items(administrations_path, settings), settings, keys)
    else:
        items = pd.DataFrame(columns=["item", "subscale", *[c for c in SUMMARY_COLUMNS if c != "scale"]])
    write_csv(summary, discrepancy_path)
    write_csv(items, items_path)
    write_csv(per_dyad, per_dyad_path)
    figure_keys = keys_from_config({"instruments": instruments})
    for scale, path in zip(settings["scales"], figure_paths):
        save_figure(bland_altman_figure(pairs, settings, scale, figure_keys), path)
    return {"discrepancy": summary, "items": items, "per_dyad": per_dyad}


# --------------------------------------------------------------------------------------
# Response surface
# --------------------------------------------------------------------------------------
def surface_data(pairs: pd.DataFrame, change: pd.DataFrame, clients: pd.DataFrame,
                 settings: Mapping[str, Any]) -> pd.DataFrame:
    """One row per client: mean client and therapist alliance over the paired sessions, outcome.

    Only the dyad of the client's first therapist (``clients.parquet``) is used, so that each
    client's outcome enters once and belongs to one therapist cluster; with
    ``surface.sessions`` set, only those sessions are averaged.

    Returns
    -------
    DataFrame
        ``client``, ``therapist``, ``n_sessions`` (paired sessions averaged),
        ``client_alliance`` (x), ``therapist_alliance`` (y), ``baseline`` (the covariate),
        ``post`` (z) and ``change`` (post − baseline, for reference; not modelled).
    """
    surface = settings["surface"]
    scale = surface["scale"]
    if surface["sessions"] is not None:
        pairs = pairs[pairs["session"].isin(surface["sessions"])]
    first = clients[["client", "therapist"]]
    kept = pairs.merge(first, on=["client", "therapist"], how="inner")
    if len(kept) < len(pairs):
        log.info("agreement surface: %d dyad-session(s) with a later therapist left out", len(pairs) - len(kept))
    dyads = per_dyad_table(kept, [scale])
    dyads = dyads.rename(columns={"mean_client": X, "mean_therapist": Y})
    outcome = select_change(change, surface["outcome"], "agreement/surface/outcome")
    data = dyads.merge(outcome[["client", BASELINE, "post", "change"]], on="client", how="inner",
                       validate="one_to_one")
    return data[["client", "therapist", "n_sessions", X, Y, BASELINE, Z, "change"]]


def _surface_method(data: pd.DataFrame, method: str) -> str:
    """``auto``: a therapist random intercept when therapists have several clients, else OLS."""
    if method != "auto":
        return method
    n_therapists = data["therapist"].nunique()
    return "mixed" if 2 <= n_therapists < len(data) else "ols"


def _recording_fit(store: dict[str, Any]) -> Callable[..., Any]:
    """alliance.lmm.fit that keeps the first fit (the surface's model; the second is its
    reparameterisation for the df of a1–a5)."""

    def recording(formula: str, data: pd.DataFrame, reml: bool = True) -> Any:
        result = lmm_fit(formula, data, reml=reml)
        store.setdefault("result", result)
        return result

    return recording


def _centre(settings: Mapping[str, Any], keys: Mapping[str, InstrumentKey]) -> float | str:
    centre = settings["surface"]["centre"]
    if centre != "midpoint":
        return centre
    scale = settings["surface"]["scale"]
    mids = {side: scale_midpoint(keys[settings[f"{side}_instrument"]], scale) for side in ("client", "therapist")}
    if not math.isclose(mids["client"], mids["therapist"]):
        raise ValueError(
            f"at agreement/surface/centre: the client and therapist forms have different midpoints on "
            f"{scale!r} ({mids['client']:g} and {mids['therapist']:g}); the line of congruence needs "
            "one scale: give centre as a number or 'grand_mean'"
        )
    return mids["client"]


def fit_surface(data: pd.DataFrame, settings: Mapping[str, Any], centre: float | str) -> tuple[ResponseSurface, dict]:
    """Fit the response surface of :func:`alliance.agreement.response_surface` to :func:`surface_data`:
    ``post`` on x, y and their squares and product, with ``baseline`` as covariate.

    Returns the result and a dict describing the fit (method, numbers of clients and
    therapists, and for the mixed model its variance components and convergence).
    """
    method = _surface_method(data, settings["surface"]["method"])
    store: dict[str, Any] = {}
    therapist = None if method == "ols" else "therapist"
    result = response_surface(data, X, Y, Z, therapist=therapist, centre=centre, method=method,
                              fit=_recording_fit(store) if method == "mixed" else None,
                              level=settings["level"], covariates=[BASELINE])
    used = data[[X, Y, Z, BASELINE]].notna().all(axis=1)
    info: dict[str, Any] = {"method": result.method, "n_clients": result.n, "n_dropped": result.n_dropped,
                            "n_therapists": int(data.loc[used, "therapist"].nunique()),
                            "df_method": result.df_method}
    if "result" in store:
        mixed = store["result"]
        re = mixed.random_effects
        info.update(
            variance_therapist=float(re.loc[re["group"] == "rs_group", "variance"].iloc[0]),
            variance_residual=float(re.loc[re["group"] == "Residual", "variance"].iloc[0]),
            converged=bool(mixed.converged), singular=bool(mixed.singular), warnings=list(mixed.warnings),
        )
    return result, info


def surface_table(result: ResponseSurface) -> pd.DataFrame:
    """Coefficients b0–b5, the covariates and surface parameters a1–a5 in one table (see
    :data:`SURFACE_COLUMNS`; covariate rows have ``kind`` ``"covariate"``)."""
    meanings = [COEFFICIENT_TERMS.get(name, f"{name} (centred at its mean)") for name in result.coefficients.index]
    kinds = ["coefficient" if name in COEFFICIENT_TERMS else "covariate" for name in result.coefficients.index]
    coefficients = result.coefficients.assign(kind=kinds, meaning=meanings)
    surface = result.surface.assign(kind="surface", meaning=[SURFACE_MEANING[a] for a in result.surface.index])
    table = pd.concat([coefficients, surface]).rename_axis("parameter").reset_index()
    return table[SURFACE_COLUMNS]


def _df_text(df: float) -> str:
    return "z" if not math.isfinite(df) else f"t({format_number(df, 1)})"


def surface_tests(result: ResponseSurface) -> dict[str, str]:
    """Each surface parameter's estimate, SE and test, e.g.
    ``{"a1": "a1 = −0.153, SE 0.062, t(179.7) = −2.47, p = .014", ...}``."""
    tests = {}
    for name, row in result.surface.iterrows():
        p = format_p(row["p"])
        tests[name] = (f"{name} = {format_number(row['estimate'], 3)}, SE {format_number(row['se'], 3)}, "
                       f"{_df_text(row['df'])} = {format_number(row['t'], 2)}, p {p if p[0] in '<>' else '= ' + p}")
    return tests


def surface_caption(result: ResponseSurface, info: Mapping[str, Any]) -> str:
    """The figure's caption (reStructuredText): model, centring and the a1–a5 tests.

    Included by ``workflow/report/agreement_surface_figure.rst`` into the report.
    """
    centre = format_number(result.centre, 2)
    rule = {"grand_mean": "their pooled grand mean (the mean of all client and therapist values)",
            "midpoint": "the scale midpoint"}.get(info["centre_rule"], "the configured value")
    baseline = format_number(result.covariate_means[BASELINE], 2)
    model = {"mixed": "a therapist random intercept (REML)", "cluster": "cluster-robust SEs by therapist",
             "ols": "OLS"}[result.method]
    tests = "\n".join(f"* {SURFACE_MEANING[name].split(':')[0]}: {line}"
                      for name, line in surface_tests(result).items())
    return (
        f"Fitted {info['outcome']} post score of {result.n} clients ({info['n_therapists']} therapists) on "
        f"client (x) and therapist (y) {info['scale']} alliance, adjusted for the baseline score (at its "
        f"mean, {baseline}); x and y centred at {rule}, {centre}. Model with {model}; df: "
        f"{result.df_method}. Left: the surface, with the clients' (x, y) projected on its floor; right: "
        "contours of the same surface with the clients' (x, y). Solid: line of congruence (x = y); dashed: "
        "line of incongruence through the centre (x − c = −(y − c)). Surface parameters at the centre "
        "(Shanock et al., 2010; a5 = b3 − b5 as Humberg, Nestler & Back, 2019):\n\n"
        f"{tests}\n"
    )


def write_response_surface(scores_path: str, change_path: str, clients_path: str, settings: Mapping[str, Any],
                           instruments: Mapping[str, Any], csv_path: str, json_path: str,
                           png_path: str, caption_path: str | None = None) -> ResponseSurface:
    """Workflow step: response surface analysis of agreement and outcome: table, JSON, figure and
    the figure's caption (``caption_path``, reStructuredText, with the a1–a5 tests).

    x is the client's and y the therapist's mean alliance on ``surface.scale`` over the paired
    sessions, z the post score of ``surface.outcome`` (last administration) with its baseline
    (first administration) as covariate, not raw change (for a symptom measure lower is
    better). x and y are centred at their pooled grand mean unless ``surface.centre`` says
    otherwise (``midpoint``: the scale midpoint of Shanock et al., 2010; or a number).
    """
    from alliance.agreement.figures import plot_response_surface
    from alliance.scoring.instruments import instrument_abbreviation, scale_display

    keys = keys_from_config({"instruments": instruments})
    pairs = agreement_pairs(pd.read_parquet(scores_path), settings)
    data = surface_data(pairs, pd.read_csv(change_path), pd.read_parquet(clients_path), settings)
    result, info = fit_surface(data, settings, _centre(settings, keys))
    surface = settings["surface"]
    centre_rule = surface["centre"] if isinstance(surface["centre"], str) else "number"
    info.update(
        scale=surface["scale"], outcome=surface["outcome"], centre=result.centre,
        centre_rule=centre_rule, sessions=surface["sessions"], level=settings["level"],
        centring=("x and y centred at one value: "
                  + {"grand_mean": "their pooled grand mean (mean of all client and therapist values)",
                     "midpoint": "the scale midpoint", "number": "the configured number"}[centre_rule]),
        x=f"{settings['client_instrument']} {surface['scale']} (client), mean over paired sessions",
        y=f"{settings['therapist_instrument']} {surface['scale']} (therapist), mean over paired sessions",
        z=f"{surface['outcome']} post score (last administration)",
        covariates={BASELINE: f"{surface['outcome']} baseline (first administration), centred at its mean"},
        covariate_means=result.covariate_means.to_dict(),
        principal_axis=result.principal_axis.to_dict(),
        tests=surface_tests(result),
    )
    write_csv(surface_table(result), csv_path)
    write_json(json_safe(info), json_path)
    fig = plot_response_surface(
        result, data.loc[data[[X, Y, Z, BASELINE]].notna().all(axis=1), [X, Y]].to_numpy(dtype=float),
        labels=(f"client-rated {scale_display(settings['client_instrument'], surface['scale'], keys.get(settings['client_instrument']))}",
                f"therapist-rated {scale_display(settings['therapist_instrument'], surface['scale'], keys.get(settings['therapist_instrument']))}",
                f"{instrument_abbreviation(surface['outcome'], keys.get(surface['outcome']))} post (baseline at mean)"),
        tests=list(surface_tests(result).values()))
    save_figure(fig, png_path)
    if caption_path is not None:
        with atomic_path(caption_path) as tmp:
            tmp.write_text(surface_caption(result, info), encoding="utf-8")
    return result

"""Reliable and clinically significant change (Jacobson & Truax, 1991), and the NHS Talking
Therapies outcome definitions for the PHQ-9 and GAD-7.

Reliable change index: RCI = (x_post - x_pre) / S_diff with S_diff = sqrt(2 SE^2) and
SE = s_pre sqrt(1 - r_xx); |RCI| > 1.96 is reliable change. Clinical cut-offs (for a measure
where higher is worse; mirrored where higher is better): a = M_dys - 2 SD_dys (out of the
dysfunctional range), b = M_func + 2 SD_func (into the functional range) and
c = (SD_dys M_func + SD_func M_dys) / (SD_dys + SD_func) (nearer the functional than the
dysfunctional mean, in SD units). A client is *recovered* who starts in the clinical range,
ends outside it and changed reliably for the better.

Criterion c needs the functional population's mean and SD. The shipped keys publish them
for no instrument: the OQ-45 ships its published total cut-off (63/64, Lambert et al.) and
RCI (14); the PHQ-9 and GAD-7 ship their caseness cut-offs (10, 8) and NHS Talking
Therapies' reliable change (6, 4), because no functional-population norms were verified for
this project. So the default classification uses each key's published cut-off (the
``criterion`` recorded is ``published``), and asking for ``c`` raises an error naming the
missing norms; a key_file with ``functional:``/``dysfunctional:`` norms enables it.
"""
from __future__ import annotations

import operator
from typing import Any, Mapping

import numpy as np
import pandas as pd

from alliance.scoring.instruments import InstrumentKey

Z_95 = 1.959963984540054  # two-sided 95% normal quantile; Jacobson & Truax round it to 1.96
CATEGORIES = ("recovered", "reliably improved", "unchanged", "reliably deteriorated")
_RULES = {">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt}
_DIRECTIONS = ("higher_is_worse", "higher_is_better")


def standard_error_of_difference(sd_pre: float, reliability: float) -> float:
    """S_diff = sqrt(2) * SE, SE = sd_pre * sqrt(1 - reliability) (Jacobson & Truax, 1991)."""
    if not np.isfinite(sd_pre) or sd_pre <= 0:
        raise ValueError(f"reliable change: sd_pre must be a positive number, got {sd_pre!r}")
    if not np.isfinite(reliability) or not 0 < reliability < 1:
        raise ValueError(f"reliable change: reliability must lie strictly between 0 and 1, got {reliability!r}")
    return float(np.sqrt(2.0) * sd_pre * np.sqrt(1.0 - reliability))


def reliable_change_index(pre, post, sd_pre: float, reliability: float) -> np.ndarray:
    """Jacobson & Truax (1991) reliable change index, (post - pre) / S_diff.

    Parameters
    ----------
    pre, post
        Scores before and after (array-like of equal length, or scalars).
    sd_pre
        Standard deviation of the pre-treatment scores (of the sample or of a norm group).
    reliability
        Test-retest reliability or internal consistency of the measure.

    Returns
    -------
    numpy.ndarray
        RCI per client; |RCI| > 1.96 is reliable change at the 5% level.

    Notes
    -----
    Tested on the Dyadic Adjustment Scale data of Jacobson & Truax (1991, Table 2) against
    the independent R implementation AWKruijt/JT-RCI, and by simulation: without true change
    |RCI| > 1.96 happens in 5% of clients (tests/test_change.py).
    """
    pre, post = np.asarray(pre, dtype=float), np.asarray(post, dtype=float)
    if pre.shape != post.shape:
        raise ValueError(f"reliable change: pre and post differ in shape ({pre.shape} vs {post.shape})")
    return (post - pre) / standard_error_of_difference(sd_pre, reliability)


def reliable_change_threshold(sd_pre: float, reliability: float, z: float = Z_95) -> float:
    """Smallest raw change that is reliable: z * S_diff."""
    return z * standard_error_of_difference(sd_pre, reliability)


def clinical_cutoffs(mean_dys: float, sd_dys: float, mean_func: float | None = None,
                     sd_func: float | None = None, direction: str = "higher_is_worse") -> dict[str, float | None]:
    """Jacobson & Truax (1991) cut-offs a, b and c.

    Parameters
    ----------
    mean_dys, sd_dys
        Mean and SD of the dysfunctional (clinical) population, or of the sample before
        treatment.
    mean_func, sd_func
        Mean and SD of the functional (normal) population; without them b and c are None.
    direction
        ``"higher_is_worse"`` (symptom measures) or ``"higher_is_better"`` (the DAS, alliance).

    Returns
    -------
    dict
        ``a``: 2 SD beyond the dysfunctional mean towards health; ``b``: 2 SD from the
        functional mean towards dysfunction; ``c``: the point equally many SDs from both means,
        (sd_dys * mean_func + sd_func * mean_dys) / (sd_dys + sd_func).
    """
    _check_direction(direction)
    toward_health = -1.0 if direction == "higher_is_worse" else 1.0
    _check_positive("sd_dys", sd_dys)
    a = mean_dys + toward_health * 2 * sd_dys
    if mean_func is None or sd_func is None:
        return {"a": float(a), "b": None, "c": None}
    _check_positive("sd_func", sd_func)
    b = mean_func - toward_health * 2 * sd_func
    c = (sd_dys * mean_func + sd_func * mean_dys) / (sd_dys + sd_func)
    return {"a": float(a), "b": float(b), "c": float(c)}


def in_clinical_range(scores, cutoff: float, rule: str) -> np.ndarray:
    """True where ``score <rule> cutoff`` (e.g. rule ``">="``: PHQ-9 caseness at 10 or more)."""
    if rule not in _RULES:
        raise ValueError(f"cutoff rule must be one of {', '.join(_RULES)}, got {rule!r}")
    return _RULES[rule](np.asarray(scores, dtype=float), cutoff)


def default_rule(direction: str) -> str:
    """Clinical side of a cut-off: at or above it where higher is worse, at or below otherwise."""
    _check_direction(direction)
    return ">=" if direction == "higher_is_worse" else "<="


def classify_change(pre, post, *, direction: str, reliable_change: float | None = None,
                    sd_pre: float | None = None, reliability: float | None = None, z: float = Z_95,
                    cutoff: float | None = None, cutoff_rule: str | None = None) -> np.ndarray:
    """Classify each client: recovered / reliably improved / unchanged / reliably deteriorated.

    Change is reliable when ``|post - pre| >= reliable_change`` (a published threshold in raw
    points, e.g. 14 on the OQ-45) or, when that is not given, when ``|RCI| > z`` with RCI from
    ``sd_pre`` and ``reliability``. *Recovered*: reliably improved, in the clinical range
    before (``pre <cutoff_rule> cutoff``) and not after. Without a cut-off nobody is
    classified recovered. Missing pre or post gives ``None``.

    Parameters
    ----------
    direction
        ``"higher_is_worse"`` or ``"higher_is_better"``: which way is improvement.
    cutoff_rule
        Defaults to :func:`default_rule` (``">="`` where higher is worse).

    Notes
    -----
    Jacobson & Truax (1991); tested on their DAS data (tests/test_change.py).
    """
    _check_direction(direction)
    pre, post = np.asarray(pre, dtype=float), np.asarray(post, dtype=float)
    improved, deteriorated = reliable_improvement(pre, post, direction=direction, reliable_change=reliable_change,
                                                  sd_pre=sd_pre, reliability=reliability, z=z)
    categories = np.full(pre.shape, "unchanged", dtype=object)
    categories[improved] = "reliably improved"
    categories[deteriorated] = "reliably deteriorated"
    if cutoff is not None:
        rule = cutoff_rule or default_rule(direction)
        recovered = improved & in_clinical_range(pre, cutoff, rule) & ~in_clinical_range(post, cutoff, rule)
        categories[recovered] = "recovered"
    categories[np.isnan(pre) | np.isnan(post)] = None
    return categories


def reliable_improvement(pre, post, *, direction: str, reliable_change: float | None = None,
                         sd_pre: float | None = None, reliability: float | None = None,
                         z: float = Z_95) -> tuple[np.ndarray, np.ndarray]:
    """Boolean arrays (reliably improved, reliably deteriorated); see :func:`classify_change`."""
    _check_direction(direction)
    pre, post = np.asarray(pre, dtype=float), np.asarray(post, dtype=float)
    gain = (post - pre) if direction == "higher_is_better" else (pre - post)
    if reliable_change is not None:
        _check_positive("reliable_change", reliable_change)
        return gain >= reliable_change, -gain >= reliable_change
    if sd_pre is None or reliability is None:
        raise ValueError("reliable change: give reliable_change (raw points) or sd_pre and reliability")
    index = gain / standard_error_of_difference(sd_pre, reliability)
    return index > z, index < -z


def nhs_talking_therapies(phq9_pre, phq9_post, gad7_pre, gad7_post, *, phq9_reliable_change: float = 6,
                          gad7_reliable_change: float = 4, phq9_caseness: float = 10,
                          gad7_caseness: float = 8) -> pd.DataFrame:
    """NHS Talking Therapies (formerly IAPT) paired outcome measures for PHQ-9 and GAD-7.

    - caseness: PHQ-9 >= 10 or GAD-7 >= 8 (at or above either cut-off);
    - recovery: at caseness before, not at caseness after;
    - reliable improvement: a drop of >= 6 (PHQ-9) or >= 4 (GAD-7) on at least one measure
      and no reliable increase on the other;
    - reliable deterioration: a reliable increase on at least one and no reliable drop on the
      other;
    - reliable recovery: recovery and reliable improvement.

    Returns a DataFrame with one boolean column per definition (and ``None``/NaN inputs give
    False). Sources: NHS Talking Therapies manual and NHS Digital glossary as summarised in the
    phq9/gad7 keys (secondary).
    """
    phq_pre, phq_post = np.asarray(phq9_pre, float), np.asarray(phq9_post, float)
    gad_pre, gad_post = np.asarray(gad7_pre, float), np.asarray(gad7_post, float)
    case_pre = (phq_pre >= phq9_caseness) | (gad_pre >= gad7_caseness)
    case_post = (phq_post >= phq9_caseness) | (gad_post >= gad7_caseness)
    phq_better, gad_better = phq_pre - phq_post >= phq9_reliable_change, gad_pre - gad_post >= gad7_reliable_change
    phq_worse, gad_worse = phq_post - phq_pre >= phq9_reliable_change, gad_post - gad_pre >= gad7_reliable_change
    complete = ~(np.isnan(phq_pre) | np.isnan(phq_post) | np.isnan(gad_pre) | np.isnan(gad_post))
    improvement = (phq_better | gad_better) & ~(phq_worse | gad_worse) & complete
    deterioration = (phq_worse | gad_worse) & ~(phq_better | gad_better) & complete
    recovery = case_pre & ~case_post & complete
    return pd.DataFrame({"caseness_pre": case_pre & complete, "caseness_post": case_post & complete,
                         "recovery": recovery, "reliable_improvement": improvement,
                         "reliable_deterioration": deterioration,
                         "reliable_recovery": recovery & improvement})


def first_and_last(scores: pd.DataFrame, instrument: str, scale: str = "total",
                   respondent: str | None = None) -> pd.DataFrame:
    """Per client, the first and the last administration with a score (pre and post).

    Several raters of one session are averaged. Clients with fewer than two scored sessions
    are dropped. Columns: client, therapist, pre_session, post_session, pre, post.
    """
    rows = scores[scores["instrument"].eq(instrument) & scores["scale"].eq(scale) & scores["score"].notna()]
    if respondent is not None:
        rows = rows[rows["respondent"].eq(respondent)]
    else:
        respondents = sorted(rows["respondent"].dropna().unique())
        if len(respondents) > 1:
            raise ValueError(f"change: instrument '{instrument}' has respondents {respondents}; name one")
    if rows.empty:
        raise ValueError(f"change: no scores for instrument '{instrument}', scale '{scale}'")
    per_session = (rows.groupby(["client", "session"], sort=True)
                   .agg(score=("score", "mean"), therapist=("therapist", "first")).reset_index())
    grouped = per_session.groupby("client", sort=True)
    first, last = grouped.head(1).set_index("client"), grouped.tail(1).set_index("client")
    out = pd.DataFrame({"therapist": first["therapist"], "pre_session": first["session"],
                        "post_session": last["session"], "pre": first["score"], "post": last["score"]})
    out = out[out["post_session"] > out["pre_session"]]
    return out.reset_index()


def change_table(scores: pd.DataFrame, instrument: str, scale: str = "total", norms_source: str = "instrument",
                 *, key: InstrumentKey, respondent: str | None = None, criterion: str | None = None,
                 reliability: float | None = None, z: float = Z_95) -> pd.DataFrame:
    """Reliable and clinically significant change per client, from first to last administration.

    Parameters
    ----------
    scores
        The long scores table.
    instrument, scale, respondent
        Which scores (config entry name, scale, respondent when the instrument has several).
    norms_source
        ``"instrument"``: the key's published norms for the scale: a reliable-change threshold
        in points (``rci``, or a programme's such as NHS Talking Therapies') if published, else
        the RCI from the key's reliability and the
        sample's pre-treatment SD; the published cut-off (``cutoff``), else criterion c, b or a
        from the key's functional/dysfunctional norms. ``"sample"``: the RCI from the sample's
        pre-treatment SD and ``reliability`` (argument, e.g. this sample's alpha; else the
        key's), and criterion a from the sample's pre-treatment mean and SD (or b/c with the
        key's functional norms, when ``criterion`` asks for them).
    criterion
        ``"a"``, ``"b"`` or ``"c"`` to choose the JT cut-off (default: the published cut-off,
        else c, b, a as the norms allow).
    key
        The instrument's key (its direction and norms).
    reliability
        Overrides the reliability used for the RCI.

    Returns
    -------
    pandas.DataFrame
        One row per client with two or more administrations: client, therapist, instrument,
        respondent, scale, pre_session, post_session, pre, post, change, rci, pre_clinical,
        post_clinical, classification. ``attrs["change_parameters"]`` records every number
        used (sd_pre, reliability, s_diff, reliable_change, cutoff, rule, criterion and their
        sources).
    """
    if norms_source not in ("instrument", "sample"):
        raise ValueError(f"change: norms_source must be 'instrument' or 'sample', got {norms_source!r}")
    if scale not in key.scales:
        raise ValueError(f"change: key {key.name} has no scale '{scale}'; scales: {list(key.scales)}")
    table = first_and_last(scores, instrument, scale, respondent)
    if table.empty:
        raise ValueError(f"change: no client of instrument '{instrument}' has two scored administrations")
    params = _change_parameters(table["pre"].to_numpy(), key, scale, norms_source, criterion, reliability, z)
    pre, post = table["pre"].to_numpy(), table["post"].to_numpy()
    table.insert(1, "instrument", instrument)
    table.insert(2, "respondent", respondent if respondent is not None else
                 scores.loc[scores["instrument"].eq(instrument), "respondent"].dropna().iloc[0])
    table.insert(3, "scale", scale)
    table["change"] = post - pre
    table["rci"] = (table["change"] / params["s_diff"]) if params["s_diff"] else np.nan
    cutoff, rule = params["cutoff"], params["cutoff_rule"]
    if cutoff is not None:
        table["pre_clinical"] = in_clinical_range(pre, cutoff, rule)
        table["post_clinical"] = in_clinical_range(post, cutoff, rule)
    else:
        table["pre_clinical"] = pd.NA
        table["post_clinical"] = pd.NA
    in_points = params["s_diff"] is None  # a published threshold rather than z * S_diff
    table["classification"] = classify_change(
        pre, post, direction=key.direction, reliable_change=params["reliable_change"] if in_points else None,
        sd_pre=params["sd_pre"], reliability=params["reliability"], z=z, cutoff=cutoff, cutoff_rule=rule)
    table.attrs["change_parameters"] = params
    return table


def _change_parameters(pre: np.ndarray, key: InstrumentKey, scale: str, norms_source: str,
                       criterion: str | None, reliability: float | None, z: float) -> dict[str, Any]:
    direction = key.direction
    sd_sample = float(np.std(pre, ddof=1)) if pre.size > 1 else np.nan
    params: dict[str, Any] = {"norms_source": norms_source, "direction": direction, "z": z,
                              "n_clients": int(pre.size), "sample_pre_mean": float(np.mean(pre)),
                              "sample_pre_sd": sd_sample}
    rel_norm = key.norm(scale, "reliability")
    rel = reliability if reliability is not None else (rel_norm["value"] if rel_norm else None)
    rel_source = "argument" if reliability is not None else (rel_norm["source"] if rel_norm else None)
    rci_norm = key.norm(scale, "rci")
    programme = key.norm(scale, "programme")
    if not rci_norm and programme:  # e.g. NHS Talking Therapies' reliable change for the PHQ-9
        rci_norm = {"value": programme["reliable_change"],
                    "source": f"{programme['name']} reliable change: {programme['source']}"}
    if norms_source == "instrument" and rci_norm and reliability is None:
        params.update(reliable_change=float(rci_norm["value"]), reliable_change_source=rci_norm["source"],
                      sd_pre=None, reliability=None, s_diff=None)
    else:
        if rel is None:
            raise ValueError(f"change: no reliability for {key.name} scale '{scale}': the key publishes none; "
                             "pass reliability= (e.g. the sample's alpha)")
        s_diff = standard_error_of_difference(sd_sample, rel)
        params.update(sd_pre=sd_sample, reliability=float(rel), reliability_source=rel_source, s_diff=s_diff,
                      reliable_change=z * s_diff, reliable_change_source="z * S_diff (Jacobson & Truax, 1991)")
    params.update(_cutoff(pre, key, scale, norms_source, criterion))
    return params


def _cutoff(pre: np.ndarray, key: InstrumentKey, scale: str, norms_source: str, criterion: str | None) -> dict:
    if criterion not in (None, "a", "b", "c"):
        raise ValueError(f"change: criterion must be 'a', 'b' or 'c', got {criterion!r}")
    published = key.norm(scale, "cutoff")
    functional, dysfunctional = key.norm(scale, "functional"), key.norm(scale, "dysfunctional")
    if norms_source == "sample":
        dys = {"mean": float(np.mean(pre)), "sd": float(np.std(pre, ddof=1)), "source": "this sample before treatment"}
    else:
        dys = dysfunctional
    if criterion is None:
        if norms_source == "instrument" and published:
            return {"cutoff": float(published["value"]), "cutoff_rule": published["rule"], "criterion": "published",
                    "cutoff_source": published["source"]}
        criterion = "c" if (functional and dys) else "b" if functional else "a" if dys else None
        if criterion is None:
            return {"cutoff": None, "cutoff_rule": None, "criterion": None,
                    "cutoff_source": f"key {key.name} publishes no cut-off or norms for scale '{scale}'"}
    needs = {"a": [("dysfunctional", dys)], "b": [("functional", functional)],
             "c": [("dysfunctional", dys), ("functional", functional)]}[criterion]
    lacking = [what for what, norm in needs if not norm]
    if lacking:
        raise ValueError(f"change: criterion {criterion} needs {' and '.join(lacking)} norms, which key "
                         f"{key.name} does not publish for scale '{scale}'")
    cut = clinical_cutoffs(dys["mean"] if dys else np.nan, dys["sd"] if dys else 1.0,
                           functional["mean"] if functional else None, functional["sd"] if functional else None,
                           direction=key.direction)
    return {"cutoff": cut[criterion], "cutoff_rule": default_rule(key.direction), "criterion": criterion,
            "cutoff_source": f"Jacobson & Truax (1991) criterion {criterion}; dysfunctional: "
                             f"{dys['source'] if dys else 'none'}; "
                             f"functional: {functional['source'] if functional else 'none'}"}


def _check_direction(direction: str) -> None:
    if direction not in _DIRECTIONS:
        raise ValueError(f"direction must be one of {', '.join(_DIRECTIONS)}, got {direction!r}")


def _check_positive(name: str, value: float) -> None:
    if value is None or not np.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive number, got {value!r}")


# --- workflow steps -----------------------------------------------------------------------------

def has_change_norms(key: InstrumentKey, scale: str) -> bool:
    """Whether the key publishes what the JT classification needs for ``scale`` (an outcome
    measure): a reliable-change threshold (its own or a programme's) or a reliability."""
    return bool(key.norm(scale, "rci") or key.norm(scale, "programme") or key.norm(scale, "reliability"))


def paired_first_and_last(scores: pd.DataFrame, instruments: Mapping[str, str], scale: str = "total") -> pd.DataFrame:
    """Per client, the first and the last session at which EVERY one of ``instruments`` was
    scored (paired pre and post, as NHS Talking Therapies pairs PHQ-9 and GAD-7 scores from
    the same appointment), rather than each measure's own first and last.

    Parameters
    ----------
    instruments
        Short name -> config entry, e.g. ``{"phq9": "phq", "gad7": "gad"}``.

    Returns
    -------
    pandas.DataFrame
        client, pre_session, post_session and ``{name}_pre``, ``{name}_post`` per short name
        (several raters of one session averaged); clients with fewer than two such sessions
        are left out.
    """
    wide = []
    for name, entry in instruments.items():
        rows = scores[scores["instrument"].eq(entry) & scores["scale"].eq(scale) & scores["score"].notna()]
        wide.append(rows.groupby(["client", "session"], sort=True)["score"].mean().rename(name))
    both = pd.concat(wide, axis=1, join="inner").sort_index().reset_index()
    columns = (["client", "pre_session", "post_session"]
               + [f"{name}_{when}" for name in instruments for when in ("pre", "post")])
    if both.empty:
        return pd.DataFrame(columns=columns)
    grouped = both.groupby("client", sort=True)
    first, last = grouped.head(1).set_index("client"), grouped.tail(1).set_index("client")
    out = pd.DataFrame({"pre_session": first["session"], "post_session": last["session"]})
    for name in instruments:
        out[f"{name}_pre"], out[f"{name}_post"] = first[name], last[name]
    out = out[out["post_session"] > out["pre_session"]]
    return out.reset_index()[columns]


def programme_table(scores: pd.DataFrame, keys: Mapping[str, InstrumentKey]) -> pd.DataFrame:
    """NHS Talking Therapies outcomes per client from the configured PHQ-9 and GAD-7, on the
    first and last sessions at which both were given (:func:`paired_first_and_last`); empty
    when either is not configured. ``pre_session``/``post_session`` name those sessions."""
    entries = {key.name: entry for entry, key in keys.items()}
    columns = ["client", "phq9_pre", "phq9_post", "gad7_pre", "gad7_post", "caseness_pre", "caseness_post",
               "recovery", "reliable_improvement", "reliable_deterioration", "reliable_recovery",
               "pre_session", "post_session"]
    if "phq9" not in entries or "gad7" not in entries:
        return pd.DataFrame(columns=columns)
    both = paired_first_and_last(scores, {"phq9": entries["phq9"], "gad7": entries["gad7"]})
    definitions = {}
    for name in ("phq9", "gad7"):
        programme = keys[entries[name]].norm("total", "programme")
        definitions[f"{name}_reliable_change"] = programme["reliable_change"]
        definitions[f"{name}_caseness"] = programme["caseness"]
    outcomes = nhs_talking_therapies(both["phq9_pre"], both["phq9_post"], both["gad7_pre"], both["gad7_post"],
                                     **definitions)
    return pd.concat([both.reset_index(drop=True), outcomes.reset_index(drop=True)], axis=1)[columns]

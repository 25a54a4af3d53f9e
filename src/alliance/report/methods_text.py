"""A methods paragraph generated from what the pipeline actually did.

:func:`methods_paragraph` states the analysed N per level (therapists, clients, sessions,
observers), the instruments with their full names and in-text citations taken from their
scoring keys, each model's formula, estimation method (REML or ML), degrees-of-freedom method
and engine, and the software versions. Nothing in it is typed by hand, so the text cannot
drift from the results it describes.

Conventions: APA 7th edition in-text citations (one or two authors named, three or more as
"First et al."), numbers of 1,000 and more with a thousands comma, no sentence starting with
a numeral.

Tested in ``tests/test_methods_text.py`` on small hand-written inputs whose expected sentences
were worked out by hand.

References
----------
Bates, D., Mächler, M., Bolker, B., & Walker, S. (2015). Fitting linear mixed-effects models
using lme4. *Journal of Statistical Software*, 67(1), 1–48.
Kuznetsova, A., Brockhoff, P. B., & Christensen, R. H. B. (2017). lmerTest package: Tests in
linear mixed effects models. *Journal of Statistical Software*, 82(13), 1–26.
Mölder, F., et al. (2021). Sustainable data analysis with Snakemake. *F1000Research*, 10, 33.
Seabold, S., & Perktold, J. (2010). statsmodels: Econometric and statistical modeling with
Python. *Proceedings of the 9th Python in Science Conference*.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from alliance.report.tables import markdown_text

__all__ = ["in_text_citation", "methods_paragraph", "methods_references", "definitions_sentences",
           "early_alliance_text", "SOFTWARE_REFERENCES", "EARLY_TEXT"]

ENGINE_TEXT = {
    "alliance": ("the mixed-model engine of the alliance package, which follows lme4's profiled "
                 "likelihood (Bates et al., 2015)"),
    "statsmodels": "statsmodels' MixedLM (Seabold & Perktold, 2010)",
}
SOFTWARE_REFERENCES = {
    "lme4": ("Bates, D., Mächler, M., Bolker, B., & Walker, S. (2015). Fitting linear mixed-effects models "
             "using lme4. Journal of Statistical Software, 67(1), 1-48. https://doi.org/10.18637/jss.v067.i01"),
    "lmerTest": ("Kuznetsova, A., Brockhoff, P. B., & Christensen, R. H. B. (2017). lmerTest package: Tests in "
                 "linear mixed effects models. Journal of Statistical Software, 82(13), 1-26. "
                 "https://doi.org/10.18637/jss.v082.i13"),
    "snakemake": ("Mölder, F., Jablonski, K. P., Letcher, B., Hall, M. B., Tomkins-Tinch, C. H., Sochat, V., "
                  "Forster, J., Lee, S., Twardziok, S. O., Kanitz, A., Wilm, A., Holtgrewe, M., Rahmann, S., "
                  "Nahnsen, S., & Köster, J. (2021). Sustainable data analysis with Snakemake. F1000Research, "
                  "10, 33. https://doi.org/10.12688/f1000research.29032.2"),
    "statsmodels": ("Seabold, S., & Perktold, J. (2010). statsmodels: Econometric and statistical modeling "
                    "with Python. Proceedings of the 9th Python in Science Conference, 92-96."),
}
EARLY_TEXT = {
    "mean_1_to_k": "the mean of the alliance scores of sessions 1\u2013{k}",
    "session_k": "the alliance score at session {k}",
    "first_up_to_k": "the first alliance score in sessions 1\u2013{k}",
}
VARIANT_TEXT = {
    "post": "the client's last outcome score (post-treatment), adjusted for the first (baseline)",
    "residualised_change": ("the residual of the post-treatment score regressed on the baseline score "
                            "(residualised change)"),
    "rate_of_change": ("the client's least-squares slope of the outcome over sessions (rate of change), "
                       "adjusted for the baseline score"),
}
DEFINITION_REFERENCES = {
    "nakagawa": ("Nakagawa, S., & Schielzeth, H. (2013). A general and simple method for obtaining R2 from "
                 "generalized linear mixed-effects models. Methods in Ecology and Evolution, 4(2), 133-142. "
                 "https://doi.org/10.1111/j.2041-210x.2012.00261.x"),
    "johnson": ("Johnson, P. C. D. (2014). Extension of Nakagawa & Schielzeth's R2GLMM to random slopes models. "
                "Methods in Ecology and Evolution, 5(9), 944-946. https://doi.org/10.1111/2041-210X.12225"),
    "nakagawa2017": ("Nakagawa, S., Johnson, P. C. D., & Schielzeth, H. (2017). The coefficient of determination "
                     "R2 and intra-class correlation coefficient from generalized linear mixed-effects models "
                     "revisited and expanded. Journal of the Royal Society Interface, 14(134), 20170213. "
                     "https://doi.org/10.1098/rsif.2017.0213"),
    "baldwin_imel": ("Baldwin, S. A., & Imel, Z. E. (2013). Therapist effects: Findings and methods. In M. J. "
                     "Lambert (Ed.), Bergin and Garfield's handbook of psychotherapy and behavior change (6th ed., "
                     "pp. 258-297). Wiley."),
    "baldwin2007": ("Baldwin, S. A., Wampold, B. E., & Imel, Z. E. (2007). Untangling the alliance-outcome "
                    "correlation: Exploring the relative importance of therapist and patient variability in the "
                    "alliance. Journal of Consulting and Clinical Psychology, 75(6), 842-852. "
                    "https://doi.org/10.1037/0022-006X.75.6.842"),
    "luedtke2008": ("Lüdtke, O., Marsh, H. W., Robitzsch, A., Trautwein, U., Asparouhov, T., & Muthén, B. (2008). "
                    "The multilevel latent covariate model: A new, more reliable approach to group-level effects in "
                    "contextual studies. Psychological Methods, 13(3), 203-229. https://doi.org/10.1037/a0012869"),
    "flueckiger": ("Flückiger, C., Del Re, A. C., Wampold, B. E., & Horvath, A. O. (2018). The alliance in adult "
                   "psychotherapy: A meta-analytic synthesis. Psychotherapy, 55(4), 316-340. "
                   "https://doi.org/10.1037/pst0000172"),
    "rosenthal": "Rosenthal, R. (1991). Meta-analytic procedures for social research (Rev. ed.). Sage.",
}
METHOD_REFERENCES = {
    "mcgraw_wong": ("McGraw, K. O., & Wong, S. P. (1996). Forming inferences about some intraclass correlation "
                    "coefficients. Psychological Methods, 1(1), 30-46. https://doi.org/10.1037/1082-989X.1.1.30"),
    "koo_li": ("Koo, T. K., & Li, M. Y. (2016). A guideline of selecting and reporting intraclass correlation "
               "coefficients for reliability research. Journal of Chiropractic Medicine, 15(2), 155-163. "
               "https://doi.org/10.1016/j.jcm.2016.02.012"),
}
ICC_METHOD_TEXT = {"anova": "two-way ANOVA mean squares, every session rated by every coder",
                   "variance_components": "REML variance components of sessions crossed with coders, "
                                          "as coders rated different subsets of sessions"}
COMBINE_TEXT = {"mean": "the mean of the coders' ratings of a session was analysed",
                "designated": "one designated coder's ratings were analysed (the other coders' mean where "
                              "that coder had not rated a session)"}
# Software named in the sentence on versions, in this order, with their display names.
SOFTWARE_NAMES = (("alliance", "alliance"), ("numpy", "NumPy"), ("scipy", "SciPy"), ("pandas", "pandas"),
                  ("statsmodels", "statsmodels"), ("pingouin", "pingouin"), ("snakemake", "Snakemake"))
DF_METHODS = {"satterthwaite": "Satterthwaite's approximation (Kuznetsova et al., 2017)"}
RESPONDENT_TEXT = {"client": "clients", "therapist": "therapists", "observer": "trained observers"}

_YEAR = re.compile(r"\((\d{4}[a-z]?|n\.d\.)\)")
_SURNAME = re.compile(r"([^\s,&][^,&]*?),\s+(?:[A-Z][a-z]?\.[\s-]?)+")


# --------------------------------------------------------------------------- citations


def in_text_citation(reference: str) -> str:
    """APA 7th edition in-text citation of a full reference string.

    ``"Hatcher, R. L., & Gillaspy, J. A. (2006). Development ..."`` -> ``"Hatcher &
    Gillaspy, 2006"``; three or more authors (or a reference that already says "et al.") ->
    ``"Kroenke et al., 2001"``; a group author without initials keeps its name. A reference
    without a year in parentheses gives its text up to the first full stop, with "n.d.".

    Raises ValueError for an empty reference.
    """
    if not isinstance(reference, str) or not reference.strip():
        raise ValueError(f"in_text_citation: expected a reference string, got {reference!r}")
    match = _YEAR.search(reference)
    if match is None:
        return f"{reference.split('.')[0].strip()}, n.d."
    authors, year = reference[: match.start()].strip(), match.group(1)
    surnames = [s.strip() for s in _SURNAME.findall(authors)]
    if not surnames:  # a group author ("World Health Organization (2019)")
        return f"{authors.rstrip('.').strip()}, {year}"
    if "et al" in authors or len(surnames) >= 3:
        return f"{surnames[0]} et al., {year}"
    return f"{' & '.join(surnames)}, {year}"


def _citation_list(references: Sequence[str]) -> str:
    return "; ".join(in_text_citation(r) for r in references)


# --------------------------------------------------------------------------- sentences


def _count(n: Any, what: str) -> str:
    """``4,396 sessions``; ``1 therapist``."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"methods_paragraph: summary count for {what} = {n!r}; expected an integer >= 0")
    noun = what if n != 1 else what.removesuffix("s")
    return f"{n:,} {noun}"


def _spread_text(spread: Mapping[str, Any] | None) -> str | None:
    if not spread:
        return None
    try:
        median, low, high = spread["median"], spread["min"], spread["max"]
    except KeyError as err:
        raise ValueError(f"methods_paragraph: a spread needs min, median and max; missing {err}") from None
    return f"median {median:g}, range {low:g}\u2013{high:g}"


def _sample_sentence(summary: Mapping[str, Any]) -> str:
    for key in ("therapists", "clients", "sessions"):
        if key not in summary:
            raise ValueError(f"methods_paragraph: summary lacks {key!r}; expected the data summary "
                             "(results/data/summary.json) with therapists, clients and sessions")
    text = (f"The analysed data comprised {_count(summary['sessions'], 'sessions')} of "
            f"{_count(summary['clients'], 'clients')} seen by {_count(summary['therapists'], 'therapists')}")
    details = []
    caseload = _spread_text(summary.get("clients_per_therapist"))
    if caseload:
        details.append(f"clients per therapist: {caseload}")
    sessions = _spread_text(summary.get("sessions_per_client"))
    if sessions:
        details.append(f"sessions per client: {sessions}")
    if details:
        text += f" ({'; '.join(details)})"
    text += "."
    raters = summary.get("raters") or 0
    if raters:
        text += f" Observer ratings were made by {_count(raters, 'raters')}."
    switches = summary.get("therapist_switches") or 0
    if switches:
        text += (f" Of the clients, {switches:,} changed therapist during treatment; they were analysed "
                 "with their first therapist.")
    return text


def _instrument_phrase(instrument: Mapping[str, Any] | Any) -> str:
    if not isinstance(instrument, Mapping):  # an InstrumentKey: the same fields as attributes
        instrument = {k: getattr(instrument, k, None) for k in ("name", "full_name", "citations", "respondents")}
    name = instrument.get("full_name") or instrument.get("name")
    citations = list(instrument.get("citations") or [])
    if not name:
        raise ValueError(f"methods_paragraph: instrument {instrument!r} has neither full_name nor name")
    if not citations:
        raise ValueError(f"methods_paragraph: instrument {name!r} has no citations; its key must cite a source")
    # The primary paper comes first in a key's citations; the rest document scoring details.
    cite = in_text_citation(citations[0])
    if name.endswith(")"):  # "Patient Health Questionnaire-9 (PHQ-9)" -> "(PHQ-9; Kroenke et al., 2001)"
        phrase = f"the {name[:-1]}; {cite})"
    else:
        phrase = f"the {name} ({cite})"
    respondents = instrument.get("respondent") or instrument.get("respondents")
    if isinstance(respondents, str):
        respondents = [respondents]
    if respondents:
        who = " and ".join(RESPONDENT_TEXT.get(r, f"{r}s") for r in respondents)
        phrase += f", rated by {who}"
    return phrase


def _join(items: Sequence[str]) -> str:
    """Phrases that contain commas themselves, joined with semicolons."""
    if len(items) <= 2:
        return " and ".join(items)
    return "; ".join(items[:-1]) + "; and " + items[-1]


def _and_join(items: Sequence[str]) -> str:
    if len(items) <= 2:
        return " and ".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def _instrument_sentence(instruments: Sequence[Mapping[str, Any]]) -> str:
    if not instruments:
        return ""
    return f"Measures were {_join([_instrument_phrase(i) for i in instruments])}."


GROUP_NOUNS = {"client": "clients", "therapist": "therapists", "rater": "raters", "coder": "coders",
               "target": "rated sessions", "session": "sessions"}


def _groups_text(ngroups: Mapping[str, Any]) -> str:
    parts = []
    for group, n in ngroups.items():
        noun = GROUP_NOUNS.get(str(group).removesuffix("_id"))
        parts.append(_count(int(n), noun) if noun else f"{int(n):,} levels of {group}")
    return _and_join(parts)


def _model_sentence(index: int, model: Mapping[str, Any]) -> str:
    if model.get("status") == "not estimable":
        name = model.get("label") or model.get("name") or f"Model {index}"
        return f"{name} could not be estimated: {str(model.get('reason') or 'no reason recorded').rstrip('.')}."
    for key in ("formula", "reml"):
        if key not in model:
            raise ValueError(f"methods_paragraph: model {index} lacks {key!r}; expected the keys of fit.json")
    name = markdown_text(str(model.get("label") or model.get("name") or f"Model {index}"))
    method = "restricted maximum likelihood (REML)" if model["reml"] else "maximum likelihood (ML)"
    formula = " ".join(str(model["formula"]).split())
    text = f"{name} was specified in lme4 notation as {formula} and estimated by {method}"
    if "nobs" in model:
        text += f", using {_count(int(model['nobs']), 'observations')}"
        if model.get("ngroups"):
            text += f" ({_groups_text(model['ngroups'])})"
    text += "."
    if model.get("singular"):
        text += " A variance component was estimated at zero (boundary, singular fit)."
    if model.get("converged") is False:
        text += " The optimiser did not report convergence; its estimates are reported with that caveat."
    return text


def _engine_sentence(models: Sequence[Mapping[str, Any]]) -> str:
    engines = list(dict.fromkeys(str(m["engine"]) for m in models if m.get("engine")))
    if not engines:
        return ""
    subject = "The model was" if len(models) == 1 else "Models were"
    return f"{subject} fitted with {_join([ENGINE_TEXT.get(e, e) for e in engines])}."


def _df_sentence(models: Sequence[Mapping[str, Any]]) -> str:
    if not models:
        return ""
    methods = {str(m.get("df_method", "satterthwaite")).lower() for m in models}
    unknown = methods - set(DF_METHODS)
    if unknown:
        raise ValueError(f"methods_paragraph: df_method {sorted(unknown)}; expected one of {sorted(DF_METHODS)}")
    method = DF_METHODS[methods.pop()] if len(methods) == 1 else " and ".join(DF_METHODS[m] for m in sorted(methods))
    return (f"Tests and 95% confidence intervals of the fixed effects used t distributions with degrees of "
            f"freedom from {method}.")


def _software_sentence(versions: Mapping[str, Any]) -> str:
    named = [f"{label} {versions[key]}" for key, label in SOFTWARE_NAMES
             if versions.get(key) and versions[key] != "not installed"]
    if not versions.get("python") and not named:
        return ""
    text = "Analyses were run"
    if versions.get("python"):
        text += f" in Python {versions['python']}"
    if named:
        text += f" with {_and_join(named)}"
    if versions.get("snakemake") and versions["snakemake"] != "not installed":
        text += ", as a Snakemake workflow (Mölder et al., 2021)"
    return text + "."


def _decimal(x: float) -> str:
    """APA style for a statistic bounded by 1: no leading zero (.69, -.05)."""
    return f"{x:.2f}".replace("0.", ".", 1)


def _interrater_sentence(interrater: Sequence[Mapping[str, Any]]) -> str:
    parts = []
    for row in interrater:
        try:
            name, value, low, high = row["instrument"], row["icc"], row["ci_low"], row["ci_high"]
            sessions, coders, method = row["sessions"], row["coders"], row["method"]
        except KeyError as err:
            raise ValueError(f"methods_paragraph: an inter-rater entry lacks {err}; expected instrument, scale, "
                             "icc, ci_low, ci_high, sessions, coders, method") from None
        level = f"{100 * row.get('ci_level', 0.95):g}%"
        ci = f", {level} CI [{_decimal(low)}, {_decimal(high)}]" if np.isfinite(low) and np.isfinite(high) else ""
        label = f" ({row['interpretation']} after Koo & Li, 2016)" if row.get("interpretation") else ""
        parts.append(f"for the {name} {row.get('scale', 'total')} score, ICC(A,1) = {_decimal(value)}{ci}{label}, "
                     f"from {_count(sessions, 'sessions')} coded by two or more of {_count(coders, 'coders')} "
                     f"({ICC_METHOD_TEXT.get(method, method)})")
    if not parts:
        return ""
    combine = COMBINE_TEXT.get(interrater[0].get("combine", "mean"), "")
    return ("Inter-rater reliability of the observer ratings was estimated as the absolute-agreement intraclass "
            f"correlation of a single coder (McGraw & Wong, 1996): {'; '.join(parts)}"
            + (f"; {combine}." if combine else "."))


def early_alliance_text(early: Mapping[str, Any]) -> str:
    """``the mean of the alliance scores of sessions 1–3`` from a config's early-alliance
    definition (``method``, ``k``; ``min_sessions`` is added when above 1)."""
    method = early.get("method")
    text = EARLY_TEXT.get(method, f"the early-alliance score by method {method!r}").format(k=early.get("k"))
    minimum = early.get("min_sessions")
    if isinstance(minimum, int) and minimum > 1:
        text += f", from clients with at least {minimum} alliance scores in that window"
    return text


def _settings(model: Mapping[str, Any]) -> Mapping[str, Any]:
    return model.get("settings") or {}


def _early_sentence(models: Sequence[Mapping[str, Any]]) -> str:
    early = [m for m in models if m.get("kind") in ("early_outcome", "therapist_client") and _settings(m).get("early")]
    if not early:
        return ""
    definitions = list(dict.fromkeys(early_alliance_text(_settings(m)["early"]) for m in early))
    text = f"Early alliance was {_join(definitions)}, as configured."
    variants = list(dict.fromkeys(_settings(m).get("variant") or "post" for m in early
                                  if m.get("kind") == "early_outcome"))
    outcomes = [VARIANT_TEXT[v] for v in variants if v in VARIANT_TEXT]
    if outcomes:
        text += f" The client-level outcome was {_join(outcomes)}."
    if any(m.get("kind") == "therapist_client" for m in early):
        text += (" To separate therapist and client contributions, early alliance was split into the therapist's "
                 "mean over their clients (centred on the mean of the therapist means) and the client's deviation "
                 "from it (Baldwin et al., 2007).")
    if any(m.get("kind") == "therapist_client" and (m.get("latent_mean") or {}).get("between") for m in early):
        text += (" Because a mean over few clients measures the therapist's mean alliance unreliably and so pulls the "
                 "therapist-level slope towards the client-level one, the therapist-level and contextual (therapist "
                 "minus client) slopes were also estimated with the therapist mean as a latent variable in a "
                 "two-level model fitted by maximum likelihood (Lüdtke et al., 2008), with df bounded by the number "
                 "of therapists.")
    return text


def _session_sentence(models: Sequence[Mapping[str, Any]]) -> str:
    session = [m for m in models if m.get("kind") in ("within_between", "reverse", "trait_state")]
    if not session:
        return ""
    text = ("In the session-level models each time-varying score was split into the client's mean over their "
            "sessions, centred on the mean of the client means (between-client part), and the session's "
            "deviation from the client's mean (within-client part, person-mean centring)")
    if any(_settings(m).get("detrend") for m in session):
        text += "; where stated, the within-client part was the residual from the client's own linear trend over sessions"
    text += "."
    lagged = [m for m in session if m.get("kind") != "trait_state" and _settings(m).get("lagged")]
    if lagged:
        text += (" In the lagged models the within-client part at the previous observed session (lag 1; missing when "
                 "that session was not observed) predicted the score at the current session.")
    if any(_settings(m).get("lagged_response") for m in session):
        text += " Where stated, the response's own previous score was added as a predictor."
    return text


def _r2_sentence(models: Sequence[Mapping[str, Any]]) -> str:
    if not any(m.get("formula") for m in models):
        return ""
    return ("Marginal and conditional R\u00b2 are the shares of the outcome variance explained by the fixed effects "
            "and by fixed and random effects together (Nakagawa & Schielzeth, 2013; random slopes as Johnson, 2014). "
            "The therapists' share is the therapist variance divided by the sum of the random-effect and residual "
            "variances, conditional on the fixed effects (the adjusted ICC of Nakagawa et al., 2017).")


def _icc_sentence(models: Sequence[Mapping[str, Any]]) -> str:
    parts = []
    for m in models:
        icc = m.get("therapist_icc")
        if not icc:
            continue
        low, high = icc["ci_low"], icc["ci_high"]
        parts.append(f"{100 * icc['icc']:.1f}% (95% CI {100 * low:.1f}\u2013{100 * high:.1f}%) in "
                     f"{m.get('label') or 'a model'}" + (", its therapist variance estimated at 0"
                                                            if icc.get("singular") else ""))
    if not parts:
        return ""
    return ("The unconditional therapist ICC of each model's outcome was estimated from a null model with random "
            "intercepts of therapists (and of clients for session-level outcomes) by REML, with a profile-likelihood "
            f"95% CI (compare Baldwin & Imel, 2013, about 5%): {_join(parts)}.")


def _levels_sentence(models: Sequence[Mapping[str, Any]]) -> str:
    if not any(m.get("formula") for m in models):
        return ""
    text = ("Effects were compared with the meta-analytic benchmark (Flückiger et al., 2018) only at the client "
            "level, as r = t/\u221a(t\u00b2 + df) (Rosenthal, 1991) with df = clients \u2212 fixed-effect "
            "coefficients and a Fisher-z CI; within-client effects were standardised by the within-client SDs of "
            "predictor and outcome, with the coefficient's CI scaled alike.")
    if any(m.get("df_notes") for m in models):
        text += (" The df of therapist-level terms were bounded by the number of therapists (therapists \u2212 "
                 "therapist-level predictors \u2212 1) where that was smaller than Satterthwaite's.")
    return text


def definitions_sentences(models: Sequence[Mapping[str, Any]]) -> list[str]:
    """Sentences stating every definition the models use: early alliance (from the config),
    the client-level outcome, the therapist/client split, centring and lags, R², the
    therapists' share, the unconditional therapist ICC and the effect sizes by level."""
    # Only the pipeline's own models (fit.json names their kind) have these definitions.
    estimated = [m for m in models if m.get("status") != "not estimable" and m.get("kind")]
    return [s for s in (_early_sentence(estimated), _session_sentence(estimated), _r2_sentence(estimated),
                        _icc_sentence(estimated), _levels_sentence(estimated)) if s]


def methods_paragraph(summary: Mapping[str, Any], models: Sequence[Mapping[str, Any]],
                      instruments: Sequence[Mapping[str, Any]], versions: Mapping[str, Any],
                      interrater: Sequence[Mapping[str, Any]] = ()) -> str:
    """Generate the methods paragraph of the analysis.

    Parameters
    ----------
    summary : dict
        The data summary (``results/data/summary.json``, :func:`alliance.data.summary.sample_sizes`):
        ``therapists``, ``clients``, ``sessions``; optionally ``raters``,
        ``clients_per_therapist`` and ``sessions_per_client`` (each ``min``, ``median``,
        ``max``) and ``therapist_switches``.
    models : list of dict
        One per model, the keys of ``fit.json``: ``formula``, ``reml``; optionally
        ``label`` (e.g. "The early-alliance model"), ``engine`` (``alliance`` or
        ``statsmodels``), ``nobs``, ``ngroups``, ``singular``, ``converged``,
        ``df_method`` (default ``satterthwaite``); for the definitions: ``kind``, ``settings``
        (``early``, ``variant``, ``lagged``, ``lagged_response``, ``detrend``), ``therapist_icc``
        and ``df_notes`` (:func:`definitions_sentences`).
    instruments : list of dict
        One per instrument as its scoring key has it: ``full_name`` (or ``name``),
        ``citations`` (full references, primary first) and ``respondent`` or
        ``respondents``. :class:`alliance.scoring.instruments.InstrumentKey` objects work too.
    versions : dict
        Package versions (:func:`alliance.report.provenance.package_versions`): ``python``,
        ``alliance``, ``numpy``, ``scipy``, ``pandas``, ``statsmodels``, ``snakemake``...
    interrater : list of dict, optional
        One per observer instrument (``results/reliability/interrater.csv``, ICC(A,1) of a
        scale): ``instrument`` (name as in the text), ``scale``, ``icc``, ``ci_low``,
        ``ci_high``, ``sessions`` (sessions in the ICC), ``coders``, ``method``
        (``anova`` or ``variance_components``), optionally ``ci_level`` (default 0.95),
        ``interpretation`` and ``combine`` (``mean`` or ``designated``).

    Returns
    -------
    str
        One paragraph, sentences in the order sample, measures, models, definitions, engine,
        inference, software.

    Raises
    ------
    ValueError
        A required key is missing or a count is not a non-negative integer (the message names
        it).
    """
    sentences = [_sample_sentence(summary), _instrument_sentence(instruments), _interrater_sentence(interrater)]
    sentences += [_model_sentence(i, m) for i, m in enumerate(models, start=1)]
    sentences += definitions_sentences(models)
    sentences += [_engine_sentence(models), _df_sentence(models), _software_sentence(versions)]
    return " ".join(s for s in sentences if s)


def methods_references(models: Sequence[Mapping[str, Any]], instruments: Sequence[Mapping[str, Any]],
                       versions: Mapping[str, Any], interrater: Sequence[Mapping[str, Any]] = ()) -> list[str]:
    """The full references cited by :func:`methods_paragraph`, sorted alphabetically."""
    references = []
    if interrater:
        references.append(METHOD_REFERENCES["mcgraw_wong"])
        if any(row.get("interpretation") for row in interrater):
            references.append(METHOD_REFERENCES["koo_li"])
    for instrument in instruments:
        citations = instrument.get("citations") if isinstance(instrument, Mapping) else instrument.citations
        if citations:
            references.append(citations[0])
    engines = {m.get("engine") for m in models}
    if "alliance" in engines:
        references.append(SOFTWARE_REFERENCES["lme4"])
    if "statsmodels" in engines:
        references.append(SOFTWARE_REFERENCES["statsmodels"])
    if models:
        references.append(SOFTWARE_REFERENCES["lmerTest"])
    estimated = [m for m in models if m.get("status") != "not estimable" and m.get("kind")]
    if any(m.get("formula") for m in estimated):
        references += [DEFINITION_REFERENCES[k] for k in ("nakagawa", "johnson", "nakagawa2017", "flueckiger",
                                                          "rosenthal")]
    if any(m.get("therapist_icc") for m in estimated):
        references.append(DEFINITION_REFERENCES["baldwin_imel"])
    if any(m.get("kind") == "therapist_client" for m in estimated):
        references.append(DEFINITION_REFERENCES["baldwin2007"])
        if any((m.get("latent_mean") or {}).get("between") for m in estimated):
            references.append(DEFINITION_REFERENCES["luedtke2008"])
    if versions.get("snakemake") and versions["snakemake"] != "not installed":
        references.append(SOFTWARE_REFERENCES["snakemake"])
    return sorted(dict.fromkeys(references))

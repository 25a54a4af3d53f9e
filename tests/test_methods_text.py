"""Tests for alliance.methods_text: the generated methods paragraph.

References used here (none is the code under test): APA 7th edition in-text citation rules
(one or two authors named, three or more as "First et al."; group authors by name;
"n.d." without a date), applied by hand to the reference strings below; the expected sentences
were written by hand from the small input dictionaries.
"""

from __future__ import annotations

import re

import pytest

from alliance.scoring.instruments import available_instruments, load_key
from alliance.report.methods_text import in_text_citation, methods_paragraph, methods_references

WAI_SR = {
    "name": "wai_sr",
    "full_name": "Working Alliance Inventory - Short Revised",
    "citations": ["Hatcher, R. L., & Gillaspy, J. A. (2006). Development and validation of a revised short "
                  "version of the Working Alliance Inventory. Psychotherapy Research, 16(1), 12-25.",
                  "Horvath, A. O., & Greenberg, L. S. (1989). Development and validation of the Working "
                  "Alliance Inventory. Journal of Counseling Psychology, 36(2), 223-233."],
    "respondents": ["client"],
}
PHQ9 = {
    "name": "phq9",
    "full_name": "Patient Health Questionnaire-9 (PHQ-9)",
    "citations": ["Kroenke, K., Spitzer, R. L., & Williams, J. B. W. (2001). The PHQ-9: Validity of a brief "
                  "depression severity measure. Journal of General Internal Medicine, 16(9), 606-613."],
    "respondent": "client",
}
WAI_O = {
    "full_name": "Working Alliance Inventory - Observer Short",
    "citations": ["Tichenor, V., & Hill, C. E. (1989). A comparison of six measures of working alliance. "
                  "Psychotherapy, 26(2), 195-199."],
    "respondents": ["observer"],
}
SUMMARY = {
    "therapists": 40, "clients": 480, "sessions": 4396, "raters": 3,
    "sessions_per_client": {"min": 1, "median": 9.0, "mean": 9.16, "max": 20},
    "clients_per_therapist": {"min": 3, "median": 11.5, "mean": 12.0, "max": 25},
    "therapist_switches": 2,
}
EARLY = {"label": "The early-alliance model", "formula": "post ~ early_alliance + baseline + (1 | therapist)",
         "reml": True, "engine": "alliance", "nobs": 471, "ngroups": {"therapist": 40}, "converged": True,
         "singular": False}
SESSION = {"formula": "symptoms ~ session + a_cw_lag + a_cm +\n  (1 + session | client) + (1 | therapist)",
           "reml": False, "engine": "alliance", "nobs": 3916, "ngroups": {"client": 480, "therapist_id": 40},
           "converged": False, "singular": True}
VERSIONS = {"python": "3.11.9", "alliance": "0.1.0", "numpy": "2.4.6", "scipy": "1.17.1", "pandas": "2.3.3",
            "statsmodels": "0.15.0", "pingouin": "not installed", "snakemake": "9.27.1", "pyarrow": "26.0.1"}


@pytest.mark.parametrize("reference, expected", [
    ("Hatcher, R. L., & Gillaspy, J. A. (2006). Development and validation.", "Hatcher & Gillaspy, 2006"),
    ("Kroenke, K., Spitzer, R. L., & Williams, J. B. W. (2001). The PHQ-9.", "Kroenke et al., 2001"),
    ("Cohen, J. (1988). Statistical power analysis (2nd ed.). Erlbaum.", "Cohen, 1988"),
    ("Arrieta, J., et al. (2017). Journal of Clinical Psychology.", "Arrieta et al., 2017"),
    ("Mächler, M.-L., & Del Re, A. C. (2010b). Title.", "Mächler & Del Re, 2010b"),
    ("World Health Organization. (2019). ICD-11.", "World Health Organization, 2019"),
    ("OQ Measures. Scoring and interpreting the Outcome Questionnaire-45.", "OQ Measures, n.d."),
])
def test_in_text_citations_follow_apa(reference, expected):
    assert in_text_citation(reference) == expected


def test_every_shipped_key_gives_a_citation_with_a_year():
    for name in available_instruments():
        try:
            key = load_key(name)
        except ValueError:  # licence-holder keys need the holder's file
            continue
        cite = in_text_citation(key.citations[0])
        assert re.fullmatch(r".+, \d{4}[a-z]?", cite), (name, cite)


def test_paragraph_states_the_sample_per_level():
    text = methods_paragraph(SUMMARY, [EARLY], [WAI_SR, PHQ9], VERSIONS)
    assert text.startswith(
        "The analysed data comprised 4,396 sessions of 480 clients seen by 40 therapists (clients per "
        "therapist: median 11.5, range 3\u201325; sessions per client: median 9, range 1\u201320). "
        "Observer ratings were made by 3 raters. Of the clients, 2 changed therapist during treatment; "
        "they were analysed with their first therapist. ")


def test_paragraph_names_instruments_with_citations():
    text = methods_paragraph(SUMMARY, [EARLY], [WAI_SR, PHQ9, WAI_O], VERSIONS)
    assert ("Measures were the Working Alliance Inventory - Short Revised (Hatcher & Gillaspy, 2006), rated by "
            "clients; the Patient Health Questionnaire-9 (PHQ-9; Kroenke et al., 2001), rated by clients; and the "
            "Working Alliance Inventory - Observer Short (Tichenor & Hill, 1989), rated by trained observers.") in text
    assert "Horvath" not in text  # only the primary (first) citation is cited in the text


def test_paragraph_states_models_estimation_df_and_software():
    text = methods_paragraph(SUMMARY, [EARLY, SESSION], [WAI_SR], VERSIONS)
    assert ("The early-alliance model was specified in lme4 notation as post ~ early_alliance + baseline + "
            "(1 | therapist) and estimated by restricted maximum likelihood (REML), using 471 observations "
            "(40 therapists).") in text
    assert ("Model 2 was specified in lme4 notation as symptoms ~ session + a_cw_lag + a_cm + (1 + session | "
            "client) + (1 | therapist) and estimated by maximum likelihood (ML), using 3,916 observations "
            "(480 clients and 40 therapists). A variance component was estimated at zero (boundary, singular "
            "fit). The optimiser did not report convergence") in text
    assert ("Models were fitted with the mixed-model engine of the alliance package, which follows lme4's "
            "profiled likelihood (Bates et al., 2015).") in text
    assert "degrees of freedom from Satterthwaite's approximation (Kuznetsova et al., 2017)." in text
    assert text.endswith(
        "Analyses were run in Python 3.11.9 with alliance 0.1.0, NumPy 2.4.6, SciPy 1.17.1, pandas 2.3.3, "
        "statsmodels 0.15.0 and Snakemake 9.27.1, as a Snakemake workflow (Mölder et al., 2021).")
    assert "pingouin" not in text and "pyarrow" not in text


def test_single_model_and_minimal_summary():
    text = methods_paragraph({"therapists": 1, "clients": 1, "sessions": 1}, [{"formula": "y ~ x + (1 | g)",
                                                                          "reml": True}], [], {})
    assert text == ("The analysed data comprised 1 session of 1 client seen by 1 therapist. Model 1 was specified "
                    "in lme4 notation as y ~ x + (1 | g) and estimated by restricted maximum likelihood (REML). "
                    "Tests and 95% confidence intervals of the fixed effects used t distributions with degrees of "
                    "freedom from Satterthwaite's approximation (Kuznetsova et al., 2017).")


def test_references_list_what_the_paragraph_cites():
    refs = methods_references([EARLY], [PHQ9, WAI_SR], VERSIONS)
    assert [r.split(",")[0] for r in refs] == ["Bates", "Hatcher", "Kroenke", "Kuznetsova", "Mölder"]


@pytest.mark.parametrize("summary, models, instruments, message", [
    ({"therapists": 40, "clients": 480}, [], [], "summary lacks 'sessions'"),
    ({**SUMMARY, "clients": 480.5}, [], [], "count for clients = 480.5"),
    (SUMMARY, [{"reml": True}], [], "model 1 lacks 'formula'"),
    (SUMMARY, [], [{"full_name": "X", "citations": []}], "'X' has no citations"),
    (SUMMARY, [{**EARLY, "df_method": "kenward-roger"}], [], r"df_method \['kenward-roger'\]"),
])
def test_bad_input_is_refused(summary, models, instruments, message):
    with pytest.raises(ValueError, match=message):
        methods_paragraph(summary, models, instruments, VERSIONS)


def test_instrument_keys_can_be_passed_as_loaded():
    key = load_key("phq9")
    text = methods_paragraph(SUMMARY, [], [key], {})
    assert "the Patient Health Questionnaire-9 (PHQ-9; Kroenke et al., 2001), rated by clients." in text
    assert methods_references([], [key], {}) == [key.citations[0]]


INTERRATER = {"instrument": "WAI-O", "scale": "total", "icc": 0.6924, "ci_low": 0.6051, "ci_high": 0.7679,
              "sessions": 319, "coders": 4, "method": "variance_components", "interpretation": "moderate to good",
              "combine": "mean"}


def test_interrater_sentence_reports_agreement_icc_design_and_combination():
    text = methods_paragraph({"therapists": 1, "clients": 1, "sessions": 1}, [], [], {}, [INTERRATER])
    assert ("Inter-rater reliability of the observer ratings was estimated as the absolute-agreement intraclass "
            "correlation of a single coder (McGraw & Wong, 1996): for the WAI-O total score, ICC(A,1) = .69, "
            "95% CI [.61, .77] (moderate to good after Koo & Li, 2016), from 319 sessions coded by two or more "
            "of 4 coders (REML variance components of sessions crossed with coders, as coders rated different "
            "subsets of sessions); the mean of the coders' ratings of a session was analysed.") in text
    designated = methods_paragraph({"therapists": 1, "clients": 1, "sessions": 1}, [], [], {},
                                   [{**INTERRATER, "combine": "designated", "method": "anova"}])
    assert "every session rated by every coder" in designated and "one designated coder's ratings" in designated
    assert "90% CI [.61, .77]" in methods_paragraph(SUMMARY, [], [], VERSIONS, [{**INTERRATER, "ci_level": 0.9}])
    refs = methods_references([], [], {}, [INTERRATER])
    assert [r.split(",")[0] for r in refs] == ["Koo", "McGraw"]
    with pytest.raises(ValueError, match="inter-rater entry lacks 'coders'"):
        methods_paragraph(SUMMARY, [], [], VERSIONS, [{k: v for k, v in INTERRATER.items() if k != "coders"}])


# --------------------------------------------------------------------------- definitions (issue 15)
PIPELINE_MODELS = [
    {"label": "Model 1 (early)", "formula": "`post ~ early_alliance + baseline + (1 | therapist)`", "reml": True,
     "kind": "early_outcome", "settings": {"early": {"method": "mean_1_to_k", "k": 3, "min_sessions": 2},
                                           "variant": "post", "lagged": True, "detrend": False},
     "therapist_icc": {"icc": 0.0521, "ci_low": 0.0061, "ci_high": 0.1257, "singular": False}},
    {"label": "Model 2 (split)", "formula": "`post ~ early_alliance_tm + early_alliance_cd + (1 | therapist)`",
     "reml": True, "kind": "therapist_client", "settings": {"early": {"method": "session_k", "k": 2}},
     "df_notes": ["df of early_alliance_tm bounded by the number of therapists: 38"],
     "therapist_icc": {"icc": 0.0, "ci_low": 0.0, "ci_high": 0.08, "singular": True}},
    {"label": "Model 3 (within)", "formula": "`symptoms ~ session + a_cw_lag + a_cm + (1 | client)`", "reml": True,
     "kind": "within_between", "settings": {"lagged": True, "lagged_response": False, "detrend": False}},
]


def test_definitions_state_early_alliance_centring_lags_r2_share_and_icc():
    text = methods_paragraph(SUMMARY, PIPELINE_MODELS, [], {})
    assert ("Early alliance was the mean of the alliance scores of sessions 1\u20133, from clients with at least 2 "
            "alliance scores in that window and the alliance score at session 2, as configured.") in text
    assert "The client-level outcome was the client's last outcome score (post-treatment), adjusted for the first" in text
    assert "therapist's mean over their clients (centred on the mean of the therapist means)" in text
    assert "deviation from the client's mean (within-client part, person-mean centring)" in text
    assert "previous observed session (lag 1;" in text and "linear trend" not in text
    assert "(Nakagawa & Schielzeth, 2013; random slopes as Johnson, 2014)" in text
    assert "conditional on the fixed effects (the adjusted ICC of Nakagawa et al., 2017)" in text
    assert "5.2% (95% CI 0.6\u201312.6%) in Model 1 (early)" in text
    assert "0.0% (95% CI 0.0\u20138.0%) in Model 2 (split), its therapist variance estimated at 0" in text
    assert "df = clients \u2212 fixed-effect coefficients" in text and "bounded by the number of therapists" in text
    references = methods_references(PIPELINE_MODELS, [], {})
    assert any(r.startswith("Nakagawa, S., & Schielzeth, H. (2013)") for r in references)
    assert any(r.startswith("Baldwin, S. A., & Imel, Z. E. (2013)") for r in references)
    # A model not from the pipeline (no kind) gets none of these sentences.
    plain = methods_paragraph(SUMMARY, [{k: v for k, v in m.items() if k != "kind"} for m in PIPELINE_MODELS], [], {})
    assert "Early alliance was" not in plain and "R\u00b2" not in plain


def test_latent_mean_correction_is_stated_with_its_citation():
    latent = {"between": {"estimate": -0.06, "df": 37.0}, "n_therapists": 40}
    models = [PIPELINE_MODELS[0], {**PIPELINE_MODELS[1], "latent_mean": latent}]
    text = methods_paragraph(SUMMARY, models, [], {})
    assert "therapist mean as a latent variable in a two-level model fitted by maximum likelihood (Lüdtke et al., 2008)" in text
    assert any(r.startswith("Lüdtke, O., Marsh, H. W.") for r in methods_references(models, [], {}))
    without = methods_paragraph(SUMMARY, PIPELINE_MODELS, [], {})
    assert "Lüdtke" not in without and not any("Lüdtke" in r for r in methods_references(PIPELINE_MODELS, [], {}))

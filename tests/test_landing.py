"""The landing page's text (alliance.landing): what it says, and that config text cannot break it."""

from __future__ import annotations

import pandas as pd

from alliance.landing import landing_page, main_model

CONFIG = {"models": {"fits": {"rev": {"kind": "reverse"}, "main": {"kind": "early_outcome"},
                              "other": {"kind": "early_outcome"}}},
          "instruments": {}}
SUMMARY = {"clients": 1200, "therapists": 60, "sessions": 14000, "raters": 0}
FIT = {"label": "Main {{ model }} *x*", "nobs": 1180, "singular": False,
       "therapist_icc": {"icc": 0.052, "ci_low": 0.021, "ci_high": 0.0934, "n_therapists": 60},
       "alliance_effects": [{"term": "early_alliance", "level": "client", "estimate": 0.21, "ci_low": 0.15,
                             "ci_high": 0.265, "n": 1180, "n_unit": "clients"},
                            {"term": "early_alliance", "level": "within", "estimate": 0.5, "ci_low": 0.4,
                             "ci_high": 0.6, "n": 9, "n_unit": "sessions"}]}
FIXED = pd.DataFrame({"term": ["(Intercept)", "early_alliance"], "estimate": [1.0, -0.1234],
                      "se": [0.5, 0.0123], "p": [0.04, 0.0000001], "ci_low": [0.0, -0.1476],
                      "ci_high": [2.0, -0.0993]})


def page(fits=None):
    fits = fits or {"rev": {"nobs": 5}, "main": FIT, "other": FIT}
    return landing_page(CONFIG, SUMMARY, fits, {"main": FIXED, "other": FIXED}, None, "Described.")


def test_main_model_is_the_first_estimated_early_alliance_model():
    assert main_model(CONFIG, {"rev": {}, "main": FIT, "other": FIT}) == "main"
    assert main_model(CONFIG, {"main": {"status": "not estimable"}, "other": FIT}) == "other"
    assert main_model(CONFIG, {"rev": {}}) is None


def test_the_page_states_n_estimate_share_and_benchmark():
    text = page()
    assert "1,200 clients, 60 therapists, 14,000 client sessions." in text
    # SE 0.0123: two significant digits need 3 decimals; true minus signs; p below .001
    assert "*b* = −0.123, 95% CI [−0.148, −0.099], *SE* = 0.012, *p* < .001" in text
    assert "5.2% of the outcome variance (unconditional therapist ICC, 95% CI 2.1–9.3%, 60 therapists" in text
    # only the client-level effect stands beside the meta-analytic benchmark
    assert "*r* = .21 [.15, .27] (1,180 clients" in text and "*r* = .28 [.26, .30]" in text
    assert ".50" not in text
    assert text.rstrip().endswith("Described.")


def test_config_text_cannot_open_jinja_or_rst_markup():
    text = page()
    assert "{{" not in text and "Main (( model )) \\*x\\*" in text


def test_without_a_main_model_the_page_says_so():
    assert "No client-level early-alliance model" in page({"rev": {"nobs": 5}})

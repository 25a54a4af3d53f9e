"""What the figures draw beyond the points, against lme4 (tests/data/figures/reference.R):

* the caterpillar's intervals: conditional SDs of the therapist conditional modes, lme4's
  ``ranef(m, condVar = TRUE)`` (``postVar``), for a client-level model and for a session-level
  model with a client intercept and slope nested in therapists;
* the early-alliance scatter's model-implied line and its 95% band: x0'beta and x0' V x0 with the
  other model-matrix columns at their means, V = ``vcov(m)``.

The data (tests/data/figures/caterpillar_data.csv, make_data.py) have therapists with 2 to 36
clients, so the intervals differ in width as they do in a study.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from alliance import lmm
from alliance.models.uncertainty import conditional_sd, implied_line

DATA = Path(__file__).parent / "data" / "figures"


@pytest.fixture(scope="module")
def data():
    return pd.read_csv(DATA / "caterpillar_data.csv")


@pytest.fixture(scope="module")
def reference():
    return pd.read_csv(DATA / "ref_condvar.csv")


@pytest.mark.parametrize("model, formula, rtol", [
    ("client", "y ~ x + grp + (1 | therapist)", 1e-6),
    # the optimiser's end point differs from lme4's by ~1e-6 in theta; the SDs follow it
    ("session", "y ~ x + grp + session + (1 | therapist) + (1 + session | client)", 1e-4),
])
def test_conditional_sd_is_lme4s_condvar(data, reference, model, formula, rtol):
    rows = data[data["session"] == 1] if model == "client" else data
    fit = lmm.fit(formula, rows)
    got = conditional_sd(fit, "therapist")
    ref = reference[reference["model"] == model].set_index("therapist")
    assert list(got.columns) == ["(Intercept)"]
    np.testing.assert_allclose(got["(Intercept)"].to_numpy(), ref.loc[got.index, "cond_sd"].to_numpy(), rtol=rtol)
    # the modes themselves, so that mode +- 1.96 SD is lme4's interval
    np.testing.assert_allclose(fit.ranef["therapist"]["(Intercept)"].to_numpy(), ref.loc[got.index, "mode"].to_numpy(),
                               rtol=rtol, atol=1e-6)


def test_fewer_clients_give_wider_intervals(data):
    fit = lmm.fit("y ~ x + grp + (1 | therapist)", data[data["session"] == 1])
    sd = conditional_sd(fit, "therapist")["(Intercept)"]
    n = data[data["session"] == 1].groupby("therapist").size().reindex(sd.index)
    assert sd[n.idxmin()] > sd[n.idxmax()]


def test_conditional_sd_names_an_unknown_factor(data):
    fit = lmm.fit("y ~ x + (1 | therapist)", data[data["session"] == 1])
    with pytest.raises(ValueError, match="no grouping factor 'client'"):
        conditional_sd(fit, "client")


def test_implied_line_and_band_are_lme4s(data):
    ref = pd.read_csv(DATA / "ref_line.csv")
    fit = lmm.fit("y ~ x + grp + (1 | therapist)", data[data["session"] == 1])
    got = implied_line(fit, "x", ref["x"])
    np.testing.assert_allclose(got["fit"], ref["fit"], rtol=1e-7)
    np.testing.assert_allclose(got["se"], ref["se"], rtol=1e-6)
    crit = (got["ci_high"] - got["fit"]) / got["se"]
    from scipy import stats
    assert crit.to_numpy() == pytest.approx(stats.t.ppf(0.975, fit.fixed_effects.loc["x", "df"]))
    # the slope of the line is the coefficient, whatever the other terms
    slope = np.diff(got["fit"]) / np.diff(got["x"])
    assert slope == pytest.approx(fit.fixed_effects.loc["x", "estimate"])


def test_implied_line_names_an_unknown_term(data):
    fit = lmm.fit("y ~ x + (1 | therapist)", data[data["session"] == 1])
    with pytest.raises(ValueError, match="no fixed effect 'early_alliance'"):
        implied_line(fit, "early_alliance", [0, 1])

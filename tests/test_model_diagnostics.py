"""Model diagnostics (alliance.models.diagnostics): against lme4 1.1-31 / performance 0.10.2
reference numbers (tests/data/diagnostics/ref_diagnostics.R), by recovery of one injected
outlying therapist, and the workflow step's files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from alliance import lmm
from alliance.models import diagnostics as D
from alliance.models.diagnostic_figures import diagnostics_figure
from alliance.models.steps import (
    default_targets,
    diagnostic_sentences,
    diagnostics_influence,
    write_model_diagnostics,
)
from alliance.report.style import close

HERE = Path(__file__).parent / "data" / "diagnostics"
REFERENCE = json.loads((HERE / "diagnostics_reference.json").read_text())
DATA = {"client_level": "client_level.csv", "session_level": "session_level.csv"}


@pytest.fixture(scope="module", params=sorted(DATA))
def reference_fit(request):
    ref = REFERENCE[request.param]
    data = pd.read_csv(HERE / DATA[request.param])
    result = lmm.fit(ref["formula"], data)
    loo = D.leave_one_group_out(result, data)
    influence = D.group_influence(result, loo, data, list(ref["fixef"]))
    return ref, data, result, loo, influence


def test_residuals_fitted_and_modes_match_lme4(reference_fit):
    ref, _, result, _, _ = reference_fit
    frame = D.residual_frame(result)
    np.testing.assert_allclose(frame["fitted"], ref["fitted"], rtol=1e-6)
    np.testing.assert_allclose(frame["residual"], ref["residuals"], rtol=0, atol=1e-6 * ref["sigma"])
    np.testing.assert_allclose(frame["standardised"], np.asarray(ref["residuals"]) / ref["sigma"], atol=1e-6)
    for block in ref["ranef"]:
        modes = result.ranef[block["group"]].reindex(block["levels"])
        for term in block["terms"]:
            np.testing.assert_allclose(modes[term], block["values"][term], rtol=0, atol=1e-6 * ref["sigma"])


def test_conditional_variances_match_lme4_condvar(reference_fit):
    """LmmResult.cond_var (added for the diagnostics) against ranef(condVar = TRUE)."""
    ref, _, result, _, _ = reference_fit
    cond = result.cond_var()
    for block in ref["ranef"]:
        position = result.ranef[block["group"]].index.get_indexer(block["levels"])
        assert cond[block["group"]].shape == (len(block["levels"]), len(block["terms"]), len(block["terms"]))
        for j, _term in enumerate(block["terms"]):
            np.testing.assert_allclose(np.sqrt(cond[block["group"]][position, j, j]), block["cond_sd"][j], rtol=1e-5)


def _cond_var_by_dense_inverse(result, name):
    """condVar from the dense inverse of the whole posterior precision (the definition)."""
    from alliance.lmm.design import factor_lambda

    precision, offsets = result._posterior_precision()
    names = [f.name for f in result._structure.factors]
    f = names.index(name)
    q = result._structure.factors[f].q
    inverse = np.linalg.inv(precision.toarray())
    idx = offsets[f] + np.arange((offsets[f + 1] - offsets[f]) // q)[:, None] * q + np.arange(q)
    blocks = inverse[idx[:, :, None], idx[:, None, :]]
    lam = factor_lambda(result._structure, f, result.theta)
    return result.sigma**2 * np.einsum("ab,lbc,dc->lad", lam, blocks, lam)


def _three_designs():
    rng = np.random.default_rng(7)
    therapist = np.repeat(np.arange(12), 40)
    client = np.repeat(np.arange(96), 5)
    rater = rng.integers(0, 9, len(client))
    session = np.tile(np.arange(5), 96).astype(float)
    y = (rng.normal(size=12)[therapist] + rng.normal(size=96)[client] + 0.3 * rng.normal(size=96)[client] * session
         + rng.normal(size=9)[rater] + rng.normal(size=len(client)))
    data = pd.DataFrame({"y": y, "session": session, "client": client, "therapist": therapist, "rater": rater})
    return data, ["y ~ session + (1 + session | client) + (1 | therapist)",  # nested, slopes
                  "y ~ session + (1 | client) + (1 | rater)",  # crossed
                  "y ~ session + (1 | client) + (1 | therapist) + (1 | rater)"]  # three factors


@pytest.mark.parametrize("formula", _three_designs()[1])
@pytest.mark.parametrize("whole_lu, dense_bound", [(4000, 4000), (0, 4000), (0, 0)])
def test_conditional_variances_equal_the_dense_inverse(formula, whole_lu, dense_bound, monkeypatch):
    """The routes of cond_var against the definition (the dense inverse of the whole
    precision), for nested, crossed and three-factor designs: the whole matrix's sparse LU
    (small fits, up to WHOLE_LU_UP_TO), the Schur-complement and block routes (forced with the
    bound 0), and with the dense bound 0 the crossed Schur complement through the sparse LU.
    Tolerance 1e-10: the routes differ only in the order of exact algebra."""
    from alliance.lmm import result as R

    monkeypatch.setattr(R, "WHOLE_LU_UP_TO", whole_lu)
    monkeypatch.setattr(R, "DENSE_INVERSE", dense_bound)
    data, _ = _three_designs()
    fit = lmm.fit(formula, data)
    for name in fit.ranef:
        got = fit.cond_var([name])[name]
        np.testing.assert_allclose(got, _cond_var_by_dense_inverse(fit, name), rtol=1e-10, atol=1e-14)
    with pytest.raises(ValueError, match="no grouping factor 'clinic'"):
        fit.cond_var(["clinic"])


def test_residual_and_random_effect_tests_match_r(reference_fit):
    ref, _, result, _, _ = reference_fit
    checks = D.residual_checks(result)
    assert result.nobs - result.npar == ref["residual_df"]
    np.testing.assert_allclose(checks["breusch_pagan_p"], ref["breusch_pagan_p"], rtol=1e-5)
    np.testing.assert_allclose(checks["shapiro_p"], ref["shapiro_residuals_p"], rtol=1e-5)
    found = {(c["group"], c["term"]): c for c in D.random_effect_checks(result)}
    for block in ref["ranef"]:
        for term, p in zip(block["terms"], block["shapiro_p"]):
            assert found[(block["group"], term)]["tested"]
            np.testing.assert_allclose(found[(block["group"], term)]["shapiro_p"], p, rtol=1e-5)


def test_qq_points_are_qqnorm_and_qqline(reference_fit):
    ref, _, result, _, _ = reference_fit
    qq = D.qq_points(result.residuals)
    np.testing.assert_allclose(qq["theoretical"], ref["qq_theoretical"], rtol=1e-12)
    np.testing.assert_allclose(qq["sample"], np.sort(ref["residuals"]), atol=1e-6 * ref["sigma"])
    np.testing.assert_allclose([qq.attrs["intercept"], qq.attrs["slope"]],
                               [ref["qqline"]["intercept"], ref["qqline"]["slope"]], rtol=1e-5, atol=1e-6)


def test_leave_one_therapist_out_matches_lme4_refits(reference_fit):
    """The refits of the rows, which a study of this size gets (at most ROW_REFITS_UP_TO rows);
    the next test holds the per-therapist cross-products to the same references."""
    ref, _, _, loo, influence = reference_fit
    _assert_loo_matches_lme4(ref, loo, influence)


def _assert_loo_matches_lme4(ref, loo, influence):
    assert sorted(loo["group"].unique()) == [r["therapist"] for r in ref["loo"]]
    assert (loo["error"] == "").all()
    for r in ref["loo"]:
        mine = loo.loc[loo["group"] == r["therapist"]].set_index("term")
        terms = list(r["estimate"])
        np.testing.assert_allclose(mine.loc[terms, "estimate"], [r["estimate"][t] for t in terms], rtol=1e-6)
        np.testing.assert_allclose(mine.loc[terms, "se"], [r["se"][t] for t in terms], rtol=1e-5)
        rows = influence.loc[influence["therapist"] == r["therapist"]].set_index("term")
        np.testing.assert_allclose(rows["cooks_distance"].iloc[0], r["cooks_distance"], rtol=1e-5)
        np.testing.assert_allclose(rows.loc[terms, "dfbetas"], [r["dfbetas"][t] for t in terms], rtol=1e-5, atol=1e-6)


def test_therapist_block_refits_match_lme4_refits(reference_fit):
    """Refits from per-therapist cross-products (alliance.lmm.reweight; a study above
    ROW_REFITS_UP_TO rows gets them, forced here with blocks=True) against the same lme4 refits.
    The client-level model, (1 | therapist), takes them; the session-level one, with a client
    slope too, refits the rows all the same."""
    ref, data, result, loo_rows, _ = reference_fit
    levels = sorted(pd.unique(data["therapist"]).tolist(), key=str)
    blocks = D._group_blocks(result, data, "therapist", levels)
    assert (blocks is not None) == (ref["formula"].count("|") == 1), ref["formula"]
    loo = D.leave_one_group_out(result, data, blocks=True)
    _assert_loo_matches_lme4(ref, loo, D.group_influence(result, loo, data, list(ref["fixef"])))
    if blocks is not None:  # a different route: equal to the optimisers' tolerance, not in bytes
        assert not loo["estimate"].equals(loo_rows["estimate"])


def test_influence_ranks_follow_cooks_distance(reference_fit):
    _, data, result, _, influence = reference_fit
    per = influence.drop_duplicates("therapist")
    assert per["rank"].tolist() == list(range(1, data["therapist"].nunique() + 1))
    assert per["cooks_distance"].is_monotonic_decreasing
    term = influence["term"].iloc[0]
    row = influence.loc[influence["term"] == term].iloc[0]
    se_full = result.fixed_effects.at[term, "se"]
    assert row["change_in_se"] == pytest.approx((row["estimate"] - row["estimate_full"]) / se_full)


# --------------------------------------------------------------------------------------
# Recovery: one injected outlying therapist is found; clean data raise no flag
# --------------------------------------------------------------------------------------
def simulate(seed: int, outlier: str | None = None, n_therapists: int = 30, n_clients: int = 8) -> pd.DataFrame:
    """Client-level data, post = 20 - early alliance + therapist effect + noise; the outlier's
    clients span the alliance range with the opposite, steep slope (high leverage)."""
    rng = np.random.default_rng(seed)
    therapist = np.repeat([f"T{k:02d}" for k in range(n_therapists)], n_clients)
    alliance = rng.normal(5, 1, len(therapist))
    post = 20 - alliance + rng.normal(0, 1.5, n_therapists).repeat(n_clients) + rng.normal(0, 3, len(therapist))
    data = pd.DataFrame({"client": [f"C{i:03d}" for i in range(len(therapist))], "therapist": therapist,
                         "early_alliance": alliance, "post": post})
    if outlier is not None:
        rows = data["therapist"] == outlier
        spread = np.linspace(1.0, 9.0, int(rows.sum()))
        data.loc[rows, "early_alliance"] = spread
        data.loc[rows, "post"] = 15 + 2.5 * (spread - 5) + rng.normal(0, 1, int(rows.sum()))
    return data


FORMULA = "post ~ early_alliance + (1 | therapist)"


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_clean_data_raise_no_flag(seed):
    data = simulate(seed)
    diag = D.diagnose(lmm.fit(FORMULA, data), data, ["early_alliance"], "clean")
    assert diag.flags == []
    assert diag.summary == "clean: no problems found."
    assert not diag.influence["flagged"].any()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_injected_outlying_therapist_is_flagged(seed):
    data = simulate(seed, outlier="T07")
    diag = D.diagnose(lmm.fit(FORMULA, data), data, ["early_alliance"], "outlier",
                      term_labels={"early_alliance": "early alliance"})
    table = diag.influence
    top = table.iloc[0]
    assert top["therapist"] == "T07" and top["rank"] == 1 and top["flagged"]
    assert abs(top["change_in_se"]) > 1
    assert table["change_in_se"].abs().idxmax() == table.index[0]
    checks = [f["check"] for f in diag.flags]
    assert "influential_therapist" in checks
    sentence = diag.summary
    assert sentence.startswith("outlier: ") and "ranked 1" in sentence and "early alliance" in sentence
    assert "T07" not in sentence  # therapists by rank, never by id


def test_skewed_residuals_and_spread_raise_their_flags():
    rng = np.random.default_rng(5)
    data = simulate(3)
    skewed = data.assign(post=20 - data["early_alliance"] + rng.exponential(4, len(data)) ** 1.5)
    diag = D.diagnose(lmm.fit(FORMULA, skewed), skewed, ["early_alliance"], "skewed", influence=False)
    assert "residual_shape" in [f["check"] for f in diag.flags]
    fanned = data.assign(post=10 + 3 * data["early_alliance"]
                         + rng.normal(0, 1, len(data)) * (data["early_alliance"] - 1).clip(0.2) ** 2)
    diag = D.diagnose(lmm.fit(FORMULA, fanned), fanned, ["early_alliance"], "fanned", influence=False)
    assert diag.residual["spread_ratio"] >= D.SPREAD_RATIO_LIMIT
    assert "heteroscedasticity" in [f["check"] for f in diag.flags]
    assert diag.influence is None and diag.influence_summary == {"computed": False}


def test_figure_shows_therapists_by_rank_only():
    data = simulate(1, outlier="T07")
    diag = D.diagnose(lmm.fit(FORMULA, data), data, ["early_alliance"], "outlier")
    fig = diagnostics_figure(diag, "Model diagnostics: outlier")
    texts = [t.get_text() for t in fig.findobj(lambda a: hasattr(a, "get_text"))]
    assert len(fig.axes) == 4
    assert not any(t.startswith("T") and t[1:3].isdigit() for s in texts for t in s.split())
    close(fig)


# --------------------------------------------------------------------------------------
# Workflow step
# --------------------------------------------------------------------------------------
def _config(influence: str | None = None) -> dict:
    measure = {"instrument": "phq9", "respondent": "client", "scale": "total"}
    config = {"models": {"fits": {"early": {"kind": "early_outcome", "outcome": measure,
                                            "alliance": {**measure, "instrument": "wai_sr"}}}},
              "scoring": {}}
    if influence is not None:
        config["models"]["diagnostics"] = {"influence": influence}
    return config


def _fitted_model(tmp_path: Path, data: pd.DataFrame) -> tuple[Path, Path]:
    data_path, fit_path = tmp_path / "early.parquet", tmp_path / "fit.json"
    data.to_parquet(data_path)
    fit_path.write_text(json.dumps({"model": "early", "label": "Early alliance", "formula": FORMULA,
                                    "reml": True, "engine": "alliance"}))
    return data_path, fit_path


def test_step_writes_json_table_and_figure(tmp_path):
    data_path, fit_path = _fitted_model(tmp_path, simulate(0, outlier="T07"))
    out = [tmp_path / "diagnostics.json", tmp_path / "influence.csv", tmp_path / "diagnostics_early.png"]
    write_model_diagnostics(data_path, fit_path, _config(), *out)
    record = json.loads(out[0].read_text())
    assert record["summary"].startswith("Early alliance: leaving out the therapist ranked 1")
    assert record["influence"]["flagged"][0]["therapist"] == "T07"
    assert record["rules"]["residual_skew_limit"] == D.RESIDUAL_SKEW_LIMIT
    table = pd.read_csv(out[1])
    assert list(table.columns) == D.INFLUENCE_COLUMNS and len(table) == 30
    assert table.loc[0, "therapist"] == "T07" and table.loc[0, "rank"] == 1
    assert out[2].stat().st_size > 10_000
    # the same inputs give the same bytes
    first = [p.read_bytes() for p in out]
    write_model_diagnostics(data_path, fit_path, _config(), *out)
    assert [p.read_bytes() for p in out] == first


def test_step_records_a_model_that_was_not_estimable(tmp_path):
    fit_path = tmp_path / "fit.json"
    fit_path.write_text(json.dumps({"status": "not estimable", "reason": "model early: too few clients",
                                    "model": "early", "label": "Early alliance"}))
    out = [tmp_path / "diagnostics.json", tmp_path / "influence.csv", tmp_path / "fig.png"]
    write_model_diagnostics(tmp_path / "none.parquet", fit_path, _config(), *out)
    record = json.loads(out[0].read_text())
    assert record["status"] == "not estimable" and record["flags"] == []
    assert pd.read_csv(out[1]).empty and out[2].exists()
    assert diagnostic_sentences([out[0]], all_models=True) == []


def test_diagnostic_sentences_lists_models_with_problems(tmp_path):
    ok, off = tmp_path / "ok.json", tmp_path / "off.json"
    ok.write_text(json.dumps({"summary": "A: no problems found.", "flags": []}))
    off.write_text(json.dumps({"summary": "B: the residuals are skewed.", "flags": [{"check": "residual_shape"}]}))
    assert diagnostic_sentences([ok, off]) == ["B: the residuals are skewed."]
    assert diagnostic_sentences([ok, off], all_models=True) == ["A: no problems found.", "B: the residuals are skewed."]


def test_influence_setting_and_targets():
    assert diagnostics_influence(_config(), "early_outcome")
    assert not diagnostics_influence(_config(), "within_between")
    assert diagnostics_influence(_config("all"), "within_between")
    assert not diagnostics_influence(_config("none"), "early_outcome")
    with pytest.raises(ValueError, match="models: diagnostics: influence"):
        diagnostics_influence(_config("sometimes"), "early_outcome")
    targets = default_targets(_config())
    assert {"results/models/early/diagnostics.json", "results/models/early/influence.csv",
            "results/figures/diagnostics_early.png"} <= set(targets)

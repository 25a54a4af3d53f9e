"""Tests of alliance.model_workflow (the models' workflow steps) and of the models on the example.

References and tolerances
-------------------------
* lme4 1.1-31 / lmerTest 3.1-3 fits in tests/data/models/ (ref_lme4.R there), reached through
  the declared-model path (config -> scores table -> data -> fit -> files): objective 1e-6
  relative, fixed effects 1e-4 relative, SEs and Satterthwaite df 1e-3 relative.
* r-equivalent of a specification: r = t / sqrt(t^2 + df) from lmerTest's t and df, 1e-3.
* Bootstrap batches: identical (bit for bit) to one undivided run of the same replicates.
* Truth scale of the recovery study: the pipeline's WAI-SR total / 12 equals the simulator's
  observed score (mean of the answered items) to 1e-12; the truth per total point is the
  generator's effect / 12 (truth.json's per_wai_total_point).
* The bundled example: the 95% CIs of the within- and between-client alliance effects of the
  declared within/between model cover the generator's truth (parameter recovery).
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from alliance.models import steps as W
from alliance import models as M
from alliance.config import validate_config
from alliance.errors import ConfigError
from conftest import EXAMPLE, example_config

DATA = Path(__file__).parent / "data" / "lme4"  # one folder per study, lme4 fits from ref_lme4.R
FIXED_COLUMNS = ["term", "estimate", "se", "df", "t", "p", "ci_low", "ci_high", "std_estimate"]
RANDOM_COLUMNS = ["group", "term1", "term2", "variance", "sd", "corr"]
FIT_KEYS = {"engine", "formula", "reml", "objective", "loglik", "aic", "bic", "nobs", "ngroups", "converged",
            "singular", "warnings", "r2_marginal", "r2_conditional", "therapist_share"}
#: fit.json as run_model writes it: also the ML refit's statistics (the model tables' AIC/BIC)
RUN_FIT_KEYS = FIT_KEYS | {"loglik_ml", "aic_ml", "bic_ml", "ml_refit", "ml_warnings"}
PHQ9 = {"instrument": "phq9", "scale": "total"}
WAI = {"instrument": "wai_sr", "respondent": "client", "scale": "total"}
REF_NAMES = {"client_id": "client", "therapist_id": "therapist"}


def scores_from_sessions(sessions: pd.DataFrame) -> pd.DataFrame:
    """The reference sessions.csv as the long scores table of docs/data_contract.md."""
    base = {"client": sessions["client_id"], "therapist": sessions["therapist_id"], "session": sessions["session"],
            "rater": None, "items_answered": 12, "prorated": False}
    parts = [pd.DataFrame({**base, "instrument": "wai_sr", "respondent": "client", "scale": "total",
                           "score": sessions["alliance"]}),
             pd.DataFrame({**base, "instrument": "phq9", "respondent": "client", "scale": "total",
                           "score": sessions["symptoms"]})]
    return pd.concat(parts, ignore_index=True)


def reference(name: str):
    folder = DATA / name
    return (scores_from_sessions(pd.read_csv(folder / "sessions.csv")),
            json.loads((folder / "lme4_reference.json").read_text()))


def config_with(models: dict) -> dict:
    """The example config with its models section replaced, validated (defaults filled)."""
    config = example_config()
    config["models"] = models
    return validate_config(config)


def run_model(scores_path: Path, name: str, config: dict, outdir: Path, fitted_path: Path):
    """A declared model as the workflow fits it: the model_data step writes every dataset of the
    config (beside the scores table), then run_model fits the model's own."""
    return W.run_model(write_datasets(scores_path, config)[name], name, config, outdir, fitted_path)


def run_specification(scores_path: Path, spec: str, config: dict, out_json: Path):
    """A multiverse specification as the workflow fits it (model_data step, then the fit)."""
    datasets = write_datasets(scores_path, config)
    return W.run_specification(datasets.get(spec, scores_path.parent / "missing.parquet"), spec, config, out_json)


def write_datasets(scores_path: Path, config: dict) -> dict[str, Path]:
    folder = scores_path.parent / "datasets"
    models = {n: folder / "models" / f"{n}.parquet" for n in W.declared_models(config)}
    specs = {s: folder / "specifications" / f"{s}.parquet" for s in W.specification_ids(config)}
    W.write_model_datasets(scores_path, None, config, list(models.values()), list(specs.values()))
    return {**models, **specs}


FITS = {
    "early": {"kind": "early_outcome", "outcome": PHQ9, "alliance": WAI, "early": {"method": "mean_1_to_k", "k": 3}},
    "split": {"kind": "therapist_client", "outcome": PHQ9, "alliance": WAI},
    "session": {"kind": "within_between", "outcome": PHQ9, "alliance": WAI, "lagged": False},
}


@pytest.fixture(scope="module")
def small():
    return reference("small")


@pytest.fixture(scope="module")
def fitted_dir(small, tmp_path_factory):
    """run_model on the small reference study for the early and therapist-client models."""
    scores, _ = small
    root = tmp_path_factory.mktemp("models")
    scores.to_parquet(root / "scores.parquet")
    config = config_with({"fits": FITS, "bootstrap": {"replicates": 6, "batches": 3}})
    for name in ("early", "split"):
        run_model(root / "scores.parquet", name, config, root / "models" / name, root / "interim" / f"{name}.parquet")
    return root, config


def assert_fixed_match(fixed: pd.DataFrame, ref: dict, check_df: bool = True) -> None:
    for term, row in ref["fixed"].items():
        fe = fixed.loc[term]
        assert fe["estimate"] == pytest.approx(row["Estimate"], rel=1e-4), term
        assert fe["se"] == pytest.approx(row["Std. Error"], rel=1e-3), term
        if check_df:
            assert fe["df"] == pytest.approx(row["df"], rel=1e-3), term


# --------------------------------------------------------------------------------------
# Declared models against lme4, through the files the workflow writes
# --------------------------------------------------------------------------------------
def test_run_model_writes_the_contract_and_matches_lme4(fitted_dir, small):
    root, _ = fitted_dir
    _, ref = small
    folder = root / "models" / "early"
    fixed = pd.read_csv(folder / "fixed_effects.csv")
    assert fixed.columns.tolist() == FIXED_COLUMNS
    assert pd.read_csv(folder / "random_effects.csv").columns.tolist() == RANDOM_COLUMNS
    info = json.loads((folder / "fit.json").read_text())
    assert RUN_FIT_KEYS <= set(info)
    assert info["aic_ml"] == pytest.approx(-2 * info["loglik_ml"] + 2 * (len(fixed) + 2), rel=1e-12)
    assert info["formula"] == "post ~ early_alliance + baseline + (1 | therapist)"
    assert info["objective"] == pytest.approx(ref["early_alliance_outcome"]["objective"], rel=1e-6)
    assert_fixed_match(fixed.set_index("term"), ref["early_alliance_outcome"])
    assert info["model"] == "early" and info["kind"] == "early_outcome"
    assert info["settings"]["early"] == {"method": "mean_1_to_k", "k": 3, "min_sessions": 1}
    effects = pd.read_csv(folder / "therapist_effects.csv")
    assert effects.columns.tolist() == ["rank", "(Intercept)", "(Intercept)_cond_sd", "n_clients"]
    assert (effects["(Intercept)_cond_sd"] > 0).all()  # lme4's condVar: tests/test_figure_statistics.py
    assert effects["n_clients"].sum() == 480 and effects["(Intercept)"].is_monotonic_increasing
    data = pd.read_parquet(root / "interim" / "early.parquet")
    assert len(data) == 480 and {"early_alliance", "baseline", "post"} <= set(data.columns)


def test_declared_session_model_matches_lme4(small):
    scores, ref = small
    config = config_with({"fits": FITS})
    spec = W.model_spec(config, "session")
    fitted = W.fit_declared_model(spec, scores, None)
    assert fitted.formula == "symptoms ~ session + a_cw + a_cm + (1 + session | client) + (1 | therapist)"
    assert fitted.result.objective == pytest.approx(ref["three_level"]["objective"], rel=1e-6)
    assert_fixed_match(fitted.result.fixed_effects, ref["three_level"])
    assert fitted.summary.r_equivalents["term"].tolist() == ["a_cw", "a_cm"]


def test_engine_and_random_part_come_from_the_config(small):
    """engine: statsmodels (MixedLM cross-check) on the two-level model lme4 fitted."""
    scores, ref = small
    config = config_with({"fits": {"two": {**FITS["session"], "random": "(1 + session | client)",
                                           "engine": "statsmodels"}}})
    fitted = W.fit_declared_model(W.model_spec(config, "two"), scores, None)
    assert fitted.result.engine == "statsmodels" and fitted.summary.fit["engine"] == "statsmodels"
    assert fitted.formula == "symptoms ~ session + a_cw + a_cm + (1 + session | client)"
    for term, row in ref["two_level_ri_rs"]["fixed"].items():
        assert fitted.result.fixed_effects.loc[term, "estimate"] == pytest.approx(row["Estimate"], rel=1e-4), term
    assert math.isnan(fitted.summary.fit["therapist_share"])


def test_therapist_client_model_carries_the_slope_contrast(fitted_dir):
    root, _ = fitted_dir
    info = json.loads((root / "models" / "split" / "fit.json").read_text())
    fixed = pd.read_csv(root / "models" / "split" / "fixed_effects.csv").set_index("term")
    (contrast,) = info["contrasts"]
    b = fixed["estimate"]
    assert contrast["estimate"] == pytest.approx(b["early_alliance_tm"] - b["early_alliance_cd"], rel=1e-12)
    assert [r["term"] for r in info["r_equivalents"]] == ["early_alliance_tm", "early_alliance_cd"]


def test_therapist_client_model_carries_the_latent_mean_slopes(fitted_dir):
    """fit.json's latent_mean is fit_latent_mean_slopes (tested against lavaan in
    tests/test_latent_means.py) on the model's rows, with its numeric covariates."""
    from alliance.models import fit_latent_mean_slopes

    root, _ = fitted_dir
    info = json.loads((root / "models" / "split" / "fit.json").read_text())
    latent = info["latent_mean"]
    data = pd.read_parquet(root / "interim" / "split.parquet")
    rows = data.dropna(subset=["post", "early_alliance", "baseline"])
    direct = fit_latent_mean_slopes(rows, "post", "early_alliance", ["baseline"])
    assert latent["covariates"] == ["baseline"] and latent["n_clients"] == info["nobs"]
    assert latent["n_therapists"] == info["ngroups"]["therapist"]
    for key in ("between", "within", "contextual"):
        assert latent[key]["estimate"] == pytest.approx(direct.effect(key)["estimate"], abs=1e-12)
    assert latent["between"]["df"] == latent["n_therapists"] - 2 - 1


def test_fit_warnings_are_logged_and_written(tmp_path, caplog):
    scores, ref = reference("boundary")
    assert ref["early_alliance_outcome"]["singular"]
    scores.to_parquet(tmp_path / "scores.parquet")
    config = config_with({"fits": {"early": FITS["early"]}})
    with caplog.at_level(logging.WARNING, logger="alliance"):
        run_model(tmp_path / "scores.parquet", "early", config, tmp_path / "early", tmp_path / "early.parquet")
    info = json.loads((tmp_path / "early" / "fit.json").read_text())
    assert info["singular"] is True
    assert any("singular" in w for w in info["warnings"])
    logged = [r.getMessage() for r in caplog.records]
    assert all(any(w in m for m in logged) for w in info["warnings"])


# --------------------------------------------------------------------------------------
# Config: defaults, refusals
# --------------------------------------------------------------------------------------
def test_model_spec_fills_defaults_and_refuses_misfits():
    config = config_with({"fits": {**FITS, "k2": {"kind": "early_outcome", "outcome": PHQ9, "alliance": WAI,
                                                  "early": {"k": 2}}}})
    spec = W.model_spec(config, "split")
    assert spec["early"] == config["scoring"]["early_alliance"]
    assert spec["outcome"] == ("phq9", None, "total") and spec["alliance"] == ("wai_sr", "client", "total")
    assert spec["engine"] == "alliance" and spec["reml"] is True and spec["variant"] == "post"
    assert W.model_spec(config, "k2")["early"] == {**config["scoring"]["early_alliance"], "k": 2}
    with pytest.raises(ValueError, match="'nope' is not declared"):
        W.model_spec(config, "nope")
    bad = config_with({"fits": {"early": {**FITS["early"], "random": "(1 | client)"}}})
    with pytest.raises(ValueError, match="random applies to session-level models only"):
        W.model_spec(bad, "early")


def test_schema_names_unknown_keys_and_fills_defaults():
    with pytest.raises(ConfigError) as err:
        config_with({"fits": {"session": {**FITS["session"], "lagd": True}}, "bootstrap": {"replicate": 5}})
    text = str(err.value)
    assert "at models/fits/session: 'lagd' is not a known key (did you mean 'lagged'?)" in text
    assert "at models/bootstrap: 'replicate' is not a known key (did you mean 'replicates'?)" in text
    with pytest.raises(ConfigError, match="does not match"):
        config_with({"multiverse": {"enabled": True, "covariate_sets": {"a__b": []}}})
    config = config_with({"fits": FITS})
    assert config["models"]["bootstrap"] == {"models": None, "replicates": 1000, "batches": 10,
                                             "stages": "therapists", "level": 0.95}
    assert config["models"]["fits"]["session"]["lagged_response"] is False


def test_benefit_direction_orients_like_the_benchmark():
    assert W.benefit_direction("higher_is_better", "higher_is_worse") == "higher_is_worse"  # alliance -> PHQ-9
    assert W.benefit_direction("higher_is_worse", "higher_is_better") == "higher_is_worse"  # PHQ-9 -> alliance
    assert W.benefit_direction("higher_is_better", "higher_is_better") == "higher_is_better"
    with pytest.raises(ValueError, match="direction 'up'"):
        W.benefit_direction("up", "higher_is_worse")


def test_default_targets_follow_the_config():
    config = validate_config(example_config())
    targets = W.default_targets(config)
    for name in W.declared_models(config):
        assert f"results/models/{name}/fit.json" in targets
    assert "results/sensitivity/specification_curve.png" in targets
    assert "results/figures/alliance_forest.png" in targets
    assert [t for t in targets if t.endswith("bootstrap.csv")] == ["results/models/early_phq9_post/bootstrap.csv"]
    assert W.default_targets(config_with({})) == []


# --------------------------------------------------------------------------------------
# Tables and the forest plot
# --------------------------------------------------------------------------------------
def test_tables_and_forest_plot(fitted_dir, tmp_path):
    root, _ = fitted_dir
    fits = [root / "models" / n / "fit.json" for n in ("early", "split")]
    reverse = tmp_path / "reverse" / "fit.json"
    reverse.parent.mkdir()
    reverse.write_text(json.dumps({"model": "reverse", "kind": "reverse", "r_equivalents": [
        {"term": "s_cm", "t": 1.0, "df": 10.0, "r": 0.3, "r_benefit": -0.3, "benefit_ci_low": -0.5, "benefit_ci_high": 0.1}]}))
    combined = W.write_model_tables(fits, tmp_path / "fixed.csv", tmp_path / "fit.csv", tmp_path / "tables.md")
    assert combined.groupby("model").size().to_dict() == {"early": 3, "split": 4}
    fit_table = pd.read_csv(tmp_path / "fit.csv")
    assert fit_table["n_clients"].tolist() == [480, 480]
    for row in fit_table.itertuples():
        info = json.loads((root / "models" / row.model / "fit.json").read_text())
        assert row.n_warnings == len(info["warnings"])
    markdown = (tmp_path / "tables.md").read_text()
    assert "Table 1" in markdown
    assert "Unconditional therapist ICC of the outcome (post ~ 1 + (1 \\| therapist))" in markdown
    effects = W.write_forest_plot([*fits, reverse], tmp_path / "forest.png", tmp_path / "effects.csv")
    assert effects["term"].tolist() == ["early_alliance", "early_alliance_tm", "early_alliance_cd"]
    assert effects["level"].tolist() == ["client", "therapist", "client"]
    assert effects["n"].tolist() == [480, 40, 480]
    assert effects["n_unit"].tolist() == ["clients", "therapists", "clients"]
    assert (tmp_path / "forest.png").stat().st_size > 10_000
    table = pd.read_csv(tmp_path / "effects.csv")
    client = table["level"] == "client"
    assert table.loc[client, "benchmark_r"].eq(0.278).all() and table.loc[~client, "benchmark_r"].isna().all()
    # Client level: r = t / sqrt(t^2 + df), df = 480 clients - coefficients (3 and 4), Fisher-z CI.
    for row, n_coef in zip(table.loc[client].itertuples(), (3, 4)):
        fixed = pd.read_csv(root / "models" / row.model / "fixed_effects.csv").set_index("term")
        t, df = fixed.loc[row.term, "t"], 480 - n_coef
        r = t / math.sqrt(t * t + df)
        half = 1.959963984540054 / math.sqrt(df - 1)
        assert row.df == df and row.estimate == pytest.approx(-r, rel=1e-12)  # PHQ-9: lower is better
        assert (row.ci_low, row.ci_high) == pytest.approx(sorted((-math.tanh(math.atanh(r) - half),
                                                                  -math.tanh(math.atanh(r) + half))), rel=1e-12)


def test_levels_of_the_effects_and_the_therapist_icc_match_r(small, fitted_dir, tmp_path):
    """Within-client effect size from the reference data, therapist df against lmerTest, ICCs
    against lme4's profiled REML criterion (tests/data/models_r/ref_icc.R)."""
    scores, _ = small
    root, config = fitted_dir
    ref = json.loads((Path(__file__).parent / "data" / "models_r" / "icc_reference.json").read_text())
    scores.to_parquet(tmp_path / "scores.parquet")
    run_model(tmp_path / "scores.parquet", "session", config, tmp_path / "session", tmp_path / "session.parquet")
    session = json.loads((tmp_path / "session" / "fit.json").read_text())
    effects = {e["term"]: e for e in session["alliance_effects"]}
    assert {t: e["level"] for t, e in effects.items()} == {"a_cw": "within", "a_cm": "client"}
    sessions = pd.read_csv(DATA / "small" / "sessions.csv")
    centred = sessions[["alliance", "symptoms"]] - sessions.groupby("client_id")[["alliance", "symptoms"]].transform("mean")
    k = centred["alliance"].std(ddof=1) / centred["symptoms"].std(ddof=1)
    fixed = pd.read_csv(tmp_path / "session" / "fixed_effects.csv").set_index("term")
    within = effects["a_cw"]
    assert within["effect_size"] == "within_std_b" and within["n"] == 4396 and within["n_unit"] == "observations"
    assert within["estimate"] == pytest.approx(-fixed.loc["a_cw", "estimate"] * k, rel=1e-9)
    assert (within["ci_low"], within["ci_high"]) == pytest.approx(
        sorted((-fixed.loc["a_cw", "ci_low"] * k, -fixed.loc["a_cw", "ci_high"] * k)), rel=1e-9)
    assert effects["a_cm"]["df"] == 480 - 4 and effects["a_cm"]["n"] == 480
    # Therapist level: lmerTest's df (37.3) is below 40 - 1 - 1 = 38, so it is kept.
    split = json.loads((root / "models" / "split" / "fit.json").read_text())
    tm = {e["term"]: e for e in split["alliance_effects"]}["early_alliance_tm"]
    assert tm["df"] == pytest.approx(ref["therapist_client"]["fixed"]["early_alliance_tm"]["df"], rel=1e-3)
    assert split["therapist_df_bounds"] == [] and split["df_notes"] == []
    # Unconditional therapist ICC: two levels (client-level model), three levels (session model).
    early = json.loads((root / "models" / "early" / "fit.json").read_text())["therapist_icc"]
    for got, want in ((early, ref["two_level"]), (session["therapist_icc"], ref["three_level"])):
        assert got["icc"] == pytest.approx(want["icc"], rel=1e-4)
        assert got["ci_low"] == pytest.approx(want["ci_low"], rel=1e-4)
        assert got["ci_high"] == pytest.approx(want["ci_high"], rel=1e-4)
        assert got["n_therapists"] == 40 and got["nobs"] == want["nobs"]
    assert early["levels"] == 2 and session["therapist_icc"]["levels"] == 3
    out = W.write_therapist_icc([root / "models" / "early" / "fit.json", tmp_path / "session" / "fit.json"],
                                tmp_path / "icc.csv")
    assert out["icc"].tolist() == pytest.approx([ref["two_level"]["icc"], ref["three_level"]["icc"]], rel=1e-4)


# --------------------------------------------------------------------------------------
# Multiverse
# --------------------------------------------------------------------------------------
def test_specifications_run_as_jobs_and_gather_into_the_curve(small, tmp_path):
    scores, ref = small
    scores.to_parquet(tmp_path / "scores.parquet")
    config = config_with({"multiverse": {
        "enabled": True, "early": {"mean_1_to_3": {"method": "mean_1_to_k", "k": 3}, "s2": {"method": "session_k", "k": 2}},
        "outcomes": {"phq9": PHQ9}, "respondents": {"client": WAI}, "covariate_sets": {"none": []}}})
    ids = W.specification_ids(config)
    assert ids == ["mean_1_to_3__phq9__client__none", "s2__phq9__client__none"]
    paths = []
    for spec in ids:
        paths.append(tmp_path / f"{spec}.json")
        run_specification(tmp_path / "scores.parquet", spec, config, paths[-1])
    first = json.loads(paths[0].read_text())
    row = ref["early_alliance_outcome"]["fixed"]["early_alliance"]
    assert first["b"] == pytest.approx(row["Estimate"], rel=1e-4)
    t, df = row["t value"], row["df"]
    assert first["r_benefit"] == pytest.approx(-t / math.sqrt(t * t + df), rel=1e-3)
    curve = W.write_specification_curve(paths, tmp_path / "curve.csv", tmp_path / "curve.png")
    table = pd.read_csv(tmp_path / "curve.csv")
    assert table["rank"].tolist() == [1, 2] and table["estimate"].is_monotonic_increasing
    assert set(table["early"]) == {"mean_1_to_3", "s2"}
    assert curve.attrs["share_significant"] in (0.0, 0.5, 1.0)
    with pytest.raises(ValueError, match="not in the multiverse"):
        run_specification(tmp_path / "scores.parquet", "x__y__z__w", config, tmp_path / "x.json")


# --------------------------------------------------------------------------------------
# Cluster bootstrap in batches
# --------------------------------------------------------------------------------------
def test_bootstrap_batches_give_the_undivided_run(fitted_dir, tmp_path):
    root, config = fitted_dir
    fit_path, data_path = root / "models" / "early" / "fit.json", root / "interim" / "early.parquet"
    assert [list(r) for r in W.bootstrap_batches(config)] == [[0, 1], [2, 3], [4, 5]]
    paths = []
    for batch in range(3):
        paths.append(tmp_path / f"batch_{batch}.csv")
        W.run_bootstrap_batch(data_path, fit_path, batch, config, paths[-1])
    batches = pd.concat([pd.read_csv(p, float_precision="round_trip") for p in paths], ignore_index=True)
    info = json.loads(fit_path.read_text())
    whole = M.cluster_bootstrap(pd.read_parquet(data_path), info["formula"], config["study"]["seed"], range(6))
    np.testing.assert_array_equal(batches["estimate"].to_numpy(), whole["estimate"].to_numpy())
    out = W.gather_bootstrap(paths, root / "models" / "early" / "fixed_effects.csv", config, tmp_path / "boot.csv")
    assert out["term"].tolist() == ["(Intercept)", "early_alliance", "baseline"]
    assert (out["n_replicates"] == 6).all() and (out["ci_low"] <= out["ci_high"]).all()
    with pytest.raises(ValueError, match="4 replicates in the batches, expected 6"):
        W.gather_bootstrap(paths[:2], root / "models" / "early" / "fixed_effects.csv", config, tmp_path / "b.csv")
    with pytest.raises(ValueError, match="batches must be between 1 and replicates"):
        W.bootstrap_batches(config_with({"bootstrap": {"replicates": 2, "batches": 3}}))


def test_only_early_outcome_models_are_bootstrapped():
    config = config_with({"fits": FITS, "bootstrap": {"replicates": 10, "batches": 2}})
    assert W.bootstrap_models(config) == ["early"]
    with pytest.raises(ValueError, match="'session' is of kind 'within_between'"):
        W.bootstrap_models(config_with({"fits": FITS, "bootstrap": {"models": ["session"], "replicates": 10}}))
    assert W.bootstrap_models(config_with({"fits": FITS, "bootstrap": {"replicates": 0}})) == []


# --------------------------------------------------------------------------------------
# Parameter recovery
# --------------------------------------------------------------------------------------
def test_simulated_scores_put_the_truth_on_the_wai_total_scale():
    from alliance.simulate import SimulationDesign, simulate_study

    study = simulate_study(SimulationDesign(n_therapists=5, n_clients=30), seed=3)
    scores = W.simulated_scores(study.client_forms)
    wai = scores[(scores["instrument"] == "wai_sr") & (scores["scale"] == "total")].reset_index(drop=True)
    items = study.client_forms[[f"wai{n}" for n in range(1, 13)]].astype("float64")
    answered = items.notna().sum(axis=1)
    scored = answered >= 11
    observed = items[scored].mean(axis=1).to_numpy()  # the simulator's A
    got = wai.set_index(["client", "session"])["score"]
    keys = pd.MultiIndex.from_frame(study.client_forms.loc[scored, ["client_id", "session"]].astype({"client_id": str}))
    np.testing.assert_allclose(got.reindex(keys).to_numpy() / 12, observed, rtol=1e-12)
    effects, per_point = study.truth["effects"], study.truth["per_wai_total_point"]
    assert per_point["b_within"] == pytest.approx(effects["b_within"] / 12, rel=1e-12)
    assert per_point["b_between"] == pytest.approx(effects["b_between"] / 12, rel=1e-12)


def test_recovery_batch_and_summary(tmp_path):
    config = config_with({"recovery": {"studies": 2, "batches": 1, "n_therapists": 8, "n_clients": 60}})
    rows = W.run_recovery_batch(config, 0, tmp_path / "batch_0.csv")
    assert len(rows) == 4 and (rows["error"] == "").all()
    assert set(rows["truth"].round(12)) == {round(-1.2 / 12, 12), round(-2.0 / 12, 12)}
    assert (rows["covered"] == ((rows["ci_low"] <= rows["truth"]) & (rows["truth"] <= rows["ci_high"]))).all()
    table = W.summarise_recovery([tmp_path / "batch_0.csv"], config, tmp_path / "recovery.csv", tmp_path / "recovery.md")
    assert table["term"].tolist() == ["a_cw_lag", "a_cm"] and (table["n_studies"] == 2).all()
    sub = rows[rows["term"] == "a_cm"]
    assert table.set_index("term").loc["a_cm", "relative_bias"] == pytest.approx(
        (sub["estimate"].mean() - sub["truth"].iloc[0]) / sub["truth"].iloc[0], rel=1e-12)
    assert "relative bias" in (tmp_path / "recovery.md").read_text()
    with pytest.raises(ValueError, match="recovery batch 1 is not one of 0..0"):
        W.run_recovery_batch(config, 1, tmp_path / "x.csv")


def test_recovery_summary_quotes_the_committed_dynamic_benchmark(tmp_path):
    """The summary quotes the marked table of benchmarks/dynamic_recovery.md, says where it comes
    from, says so when the file is absent (an installed package), and refuses a file without markers."""
    committed = W.dynamic_benchmark()
    assert len(committed) == 1 and committed[0].endswith("benchmarks/dynamic_recovery.md")
    text = Path(committed[0]).read_text()
    table_start = text.index("<!-- recovery-table -->")
    quoted = W._dynamic_benchmark_section(committed)
    assert any("RI-CLPM" in line and line.startswith("|") for line in quoted)
    assert all(line in text[table_start:] for line in quoted if line.startswith("|"))
    assert "not rerun by this target" in "\n".join(quoted)
    assert "not part of this installation" in "\n".join(W._dynamic_benchmark_section([]))
    assert W._dynamic_benchmark_section(None) == []
    bare = tmp_path / "bare.md"
    bare.write_text("| a |\n")
    with pytest.raises(ValueError, match="recovery-table"):
        W._dynamic_benchmark_section(bare)


def test_every_run_writes_the_dynamic_benchmark_table_for_the_report(tmp_path):
    """results/validation/dynamic_recovery.md (a default target, so the report shows the
    recovery of the dynamic model without the slow recovery target): the committed table's rows
    as they are in the benchmark file; without the file, a sentence saying where it is."""
    out = tmp_path / "dynamic_recovery.md"
    W.write_dynamic_benchmark(W.dynamic_benchmark(), out)
    text = out.read_text()
    committed = Path(W.dynamic_benchmark()[0]).read_text()
    rows = [line for line in text.splitlines() if line.startswith("| dynamics |")]
    assert len(rows) == 3 and all(row in committed for row in rows)
    assert any("RI-CLPM" in row for row in rows) and text.startswith("## ")
    W.write_dynamic_benchmark([], out)
    assert "not part of this installation" in out.read_text() and "|" not in out.read_text()


# --------------------------------------------------------------------------------------
# The workflow on the bundled example (tests/conftest.py runs it once)
# --------------------------------------------------------------------------------------
def test_example_run_writes_every_model_file(example_run):
    config = validate_config(example_config())
    results = example_run / "results"
    for name in W.declared_models(config):
        folder = results / "models" / name
        assert pd.read_csv(folder / "fixed_effects.csv").columns.tolist() == FIXED_COLUMNS, name
        assert pd.read_csv(folder / "random_effects.csv").columns.tolist() == RANDOM_COLUMNS, name
        assert RUN_FIT_KEYS <= set(json.loads((folder / "fit.json").read_text())), name
    for rel in ("figures/alliance_forest.png", "figures/trajectories.png", "figures/early_alliance_scatter.png",
                "figures/therapist_caterpillar.png", "sensitivity/specification_curve.png",
                "tables/model_tables.md", "tables/alliance_effects.csv"):
        assert (results / rel).stat().st_size > 0, rel
    curve = pd.read_csv(results / "sensitivity" / "specification_curve.csv")
    assert len(curve) == len(W.specification_ids(config)) == 16
    boot = pd.read_csv(results / "models" / "early_phq9_post" / "bootstrap.csv")
    assert (boot["n_replicates"] == config["models"]["bootstrap"]["replicates"]).all()
    fit_table = pd.read_csv(results / "tables" / "model_fit.csv")
    assert fit_table["model"].tolist() == W.declared_models(config)


def test_example_forest_puts_only_client_level_effects_beside_the_benchmark(example_run):
    """Issue 15: client rows (df from the clients) beside the benchmark; within-client and
    therapist rows in their own panels; every row names the N its interval rests on; the
    therapist ICC table has one row per estimated model; no SE shown as 0.00."""
    results = example_run / "results"
    effects = pd.read_csv(results / "tables" / "alliance_effects.csv")
    assert set(effects["level"]) <= set(M.EFFECT_LEVELS) and (effects["level"] == "client").any()
    beside = effects.loc[effects["benchmark_r"].notna()]
    assert (beside["level"] == "client").all() and (beside["n_unit"] == "clients").all()
    assert effects.loc[effects["level"] != "client", "benchmark_r"].isna().all()
    fit = pd.read_csv(results / "tables" / "model_fit.csv").set_index("model")
    for row in beside.itertuples():
        fixed = pd.read_csv(results / "models" / row.model / "fixed_effects.csv")
        assert row.n == fit.loc[row.model, "n_clients"] and row.df == row.n - len(fixed)
    assert (effects.loc[effects["level"] == "within", "n_unit"] == "observations").all()
    assert (effects.loc[effects["level"] == "therapist", "n_unit"] == "therapists").all()
    icc = pd.read_csv(results / "tables" / "therapist_icc.csv")
    assert icc["model"].tolist() == [m for m in fit.index if fit.loc[m, "formula"] == fit.loc[m, "formula"]]
    assert ((icc["ci_low"] <= icc["icc"]) & (icc["icc"] <= icc["ci_high"])).all()
    assert fit["therapist_icc"].notna().all()
    assert " (0.00)" not in (results / "tables" / "model_tables.md").read_text()


def test_example_alliance_effects_cover_the_generator_truth(example_run):
    """Parameter recovery on the bundled example: truth.json's effects per WAI-SR total point."""
    config = validate_config(example_config())
    truth = json.loads((EXAMPLE / "truth.json").read_text())["per_wai_total_point"]
    (name,) = [n for n in W.declared_models(config) if W.model_spec(config, n)["kind"] == "within_between"]
    spec = W.model_spec(config, name)
    assert spec["lagged"] and not spec["lagged_response"] and not spec["detrend"]
    assert spec["alliance"] == ("wai_sr", "client", "total") and spec["outcome"][0] == "phq9"
    fixed = pd.read_csv(example_run / "results" / "models" / name / "fixed_effects.csv").set_index("term")
    for term, parameter in W.RECOVERY_TERMS.items():
        assert fixed.loc[term, "ci_low"] <= truth[parameter] <= fixed.loc[term, "ci_high"], term


# --------------------------------------------------------------------------------------
# Models and specifications that cannot be estimated are recorded, not fatal
# --------------------------------------------------------------------------------------
def test_check_estimable_names_what_is_missing_in_counts():
    data = pd.DataFrame({"post": [1.0, 2.0, 3.0, 4.0], "early_alliance": [np.nan] * 4,
                         "baseline": [1.0, 2.0, 2.5, 3.0], "therapist": ["a", "a", "b", "b"]})
    formula = "post ~ early_alliance + baseline + (1 | therapist)"
    with pytest.raises(M.NotEstimableError, match=r"4 row\(s\); variable\(s\) \['early_alliance'\] have no non-missing"):
        M.check_estimable(formula, data)
    data["early_alliance"] = [1.0, 2.0, 5.0, np.nan]
    with pytest.raises(M.NotEstimableError, match=r"3 complete row\(s\) for 3 fixed effect\(s\)"):
        M.check_estimable(formula, data)
    data["early_alliance"] = [1.0, 2.0, 5.0, 4.0]
    one = data.assign(therapist="a", post=[1.0, 2.0, 3.0, 5.0])
    with pytest.raises(M.NotEstimableError, match="grouping factor 'therapist' has 1 level"):
        M.check_estimable("post ~ early_alliance + (1 | therapist)", one)
    assert M.check_estimable("post ~ early_alliance + (1 | therapist)", data) == 4
    assert issubclass(M.NotEstimableError, ValueError)


def test_model_that_cannot_be_estimated_writes_its_status(small, tmp_path, caplog):
    scores, _ = small
    scores.to_parquet(tmp_path / "scores.parquet")
    never = {"kind": "early_outcome", "outcome": PHQ9, "alliance": WAI, "early": {"method": "session_k", "k": 99}}
    observer = {"kind": "early_outcome", "outcome": PHQ9, "alliance": {**WAI, "respondent": "observer"}}
    config = config_with({"fits": {**FITS, "never": never, "observer": observer},
                          "bootstrap": {"models": ["never"], "replicates": 4, "batches": 2}})
    with caplog.at_level(logging.WARNING, logger="alliance.models.steps"):
        for name in ("early", "never", "observer"):
            run_model(tmp_path / "scores.parquet", name, config, tmp_path / name, tmp_path / f"{name}.parquet")
    info = json.loads((tmp_path / "never" / "fit.json").read_text())
    assert info["status"] == "not estimable" and info["kind"] == "early_outcome" and info["nobs"] == 0
    # an early window up to session 99 also holds every post score, which is then set aside
    assert info["reason"].startswith("model never: no rows left") and "['post', 'early_alliance']" in info["reason"]
    assert "respondent 'observer'" in json.loads((tmp_path / "observer" / "fit.json").read_text())["reason"]
    assert "recorded as not estimable" in caplog.text
    fixed = pd.read_csv(tmp_path / "never" / "fixed_effects.csv")
    assert fixed.columns.tolist() == FIXED_COLUMNS and fixed.empty
    random = pd.read_csv(tmp_path / "never" / "random_effects.csv")
    assert random.columns.tolist() == RANDOM_COLUMNS and random.empty
    assert "status" not in json.loads((tmp_path / "early" / "fit.json").read_text())
    # Tables keep the estimated model and list the other with its reason; the forest plot skips it.
    fits = [tmp_path / n / "fit.json" for n in ("early", "never")]
    combined = W.write_model_tables(fits, tmp_path / "fixed.csv", tmp_path / "fit.csv", tmp_path / "tables.md")
    assert set(combined["model"]) == {"early"}
    table = pd.read_csv(tmp_path / "fit.csv", keep_default_na=False)
    assert table["status"].tolist() == ["estimated", "not estimable"]
    assert table["reason"].iloc[0] == "" and table["reason"].iloc[1] == info["reason"]
    assert f"Not estimable: {info['reason']}" in (tmp_path / "tables.md").read_text()
    effects = W.write_forest_plot(fits, tmp_path / "forest.png", tmp_path / "effects.csv")
    assert set(effects["model"]) == {"early"}
    # The bootstrap of the model records the status instead of failing.
    batches = [tmp_path / f"batch_{b}.csv" for b in range(2)]
    for b, path in enumerate(batches):
        W.run_bootstrap_batch(tmp_path / "never.parquet", tmp_path / "never" / "fit.json", b, config, path)
    boot = W.gather_bootstrap(batches, tmp_path / "never" / "fixed_effects.csv", config, tmp_path / "boot.csv")
    assert boot["status"].tolist() == ["not estimable"] and boot["reason"].iloc[0] == info["reason"]


def test_specification_that_cannot_be_estimated_is_listed_on_the_curve(small, tmp_path):
    scores, _ = small
    scores.to_parquet(tmp_path / "scores.parquet")
    config = config_with({"multiverse": {
        "enabled": True, "early": {"s2": {"method": "session_k", "k": 2}, "s99": {"method": "session_k", "k": 99}},
        "outcomes": {"phq9": PHQ9}, "respondents": {"client": WAI}, "covariate_sets": {"none": []}}})
    paths = []
    for spec in W.specification_ids(config):
        paths.append(tmp_path / f"{spec}.json")
        run_specification(tmp_path / "scores.parquet", spec, config, paths[-1])
    record = json.loads(paths[1].read_text())
    assert record["status"] == "not estimable" and record["early"] == "s99"
    assert record["reason"].startswith("specification s99__phq9__client__none: no rows left")
    curve = W.write_specification_curve(paths, tmp_path / "curve.csv", tmp_path / "curve.png")
    table = pd.read_csv(tmp_path / "curve.csv", keep_default_na=False)
    assert table["spec"].tolist() == ["s2__phq9__client__none", "s99__phq9__client__none"]
    assert table["status"].tolist() == ["estimated", "not estimable"]
    assert table["rank"].tolist() == ["1", ""] and table["estimate"].iloc[1] == ""
    assert table["reason"].iloc[1] == record["reason"]
    assert curve.attrs["median_estimate"] == pytest.approx(json.loads(paths[0].read_text())["r_benefit"])
    assert (tmp_path / "curve.png").stat().st_size > 10_000
    # Only not-estimable specifications: the figure is the footnote alone.
    W.write_specification_curve(paths[1:], tmp_path / "only.csv", tmp_path / "only.png")
    assert pd.read_csv(tmp_path / "only.csv")["status"].tolist() == ["not estimable"]


# --------------------------------------------------------------------------------------
# The analysis datasets, built in one pass (the model_data step)
# --------------------------------------------------------------------------------------
DATASET_MODELS = {
    **FITS,
    "adjusted": {"kind": "early_outcome", "outcome": PHQ9, "alliance": WAI, "variant": "post",
                 "score_covariates": {"phq9_early_change": {"instrument": "phq9", "scale": "total",
                                                            "statistic": "change"}}},
    "rate": {**FITS["early"], "variant": "rate_of_change"},
    "never": {"kind": "early_outcome", "outcome": PHQ9, "alliance": {**WAI, "respondent": "observer"}},
}
DATASET_MULTIVERSE = {
    "enabled": True, "early": {"mean_1_to_3": {"method": "mean_1_to_k", "k": 3}, "s2": {"method": "session_k", "k": 2}},
    "outcomes": {"phq9": PHQ9}, "respondents": {"client": WAI}, "covariate_sets": {"none": []}}


def test_datasets_in_one_pass_are_those_each_model_builds_alone(small, tmp_path, monkeypatch):
    """model_datasets equals prepare_model_data run per model and specification (exactly, with
    attrs), computes the growth-model slopes once per outcome and window, and writes the same
    bytes twice; a fit from the dataset file is the fit from the scores table (bit for bit)."""
    from alliance.models import data as D

    scores, _ = small
    scores.to_parquet(tmp_path / "scores.parquet")
    config = config_with({"fits": DATASET_MODELS, "multiverse": DATASET_MULTIVERSE})
    calls = []
    counted = D.growth_slopes

    def counting(series, after_session=None, **kw):
        calls.append(after_session)
        return counted(series, after_session, **kw)

    monkeypatch.setattr(D, "growth_slopes", counting)
    datasets = W.model_datasets(config, W.read_scores(tmp_path / "scores.parquet", ["phq9", "wai_sr"]), None)
    # windows 3 (models, mean_1_to_3) and 2 (s2): one growth fit each, not one per client-level dataset
    assert sorted(calls) == [2, 3]
    monkeypatch.setattr(D, "growth_slopes", counted)
    for group, specs in W._dataset_specs(config).items():
        assert list(datasets[group]) == list(specs)
        for name, spec in specs.items():
            got = datasets[group][name]
            if name == "never":
                assert got.empty and "respondent 'observer'" in got.attrs["not_estimable"]
                continue
            alone = W.prepare_model_data(spec, scores, None)
            pd.testing.assert_frame_equal(got, alone, check_exact=True)
            assert got.attrs == alone.attrs
    assert datasets["models"]["rate"] is datasets["models"]["early"]  # equal settings, one frame
    digests = []
    for run in ("a", "b"):
        (tmp_path / run).mkdir()
        (tmp_path / run / "scores.parquet").write_bytes((tmp_path / "scores.parquet").read_bytes())
        files = write_datasets(tmp_path / run / "scores.parquet", config)
        digests.append({name: path.read_bytes() for name, path in files.items()})
    assert digests[0] == digests[1]
    assert pd.read_parquet(files["adjusted"]).attrs == datasets["models"]["adjusted"].attrs
    spec = W.model_spec(config, "adjusted")
    from_scores = W.fit_declared_model(spec, scores, None)
    from_file = W.fit_prepared_model(spec, pd.read_parquet(files["adjusted"]))
    pd.testing.assert_frame_equal(from_file.summary.fixed_effects, from_scores.summary.fixed_effects, check_exact=True)
    assert from_file.summary.fit == from_scores.summary.fit


def test_model_data_reads_only_the_columns_and_instruments_it_uses(small, tmp_path):
    scores, _ = small
    extra = scores.assign(instrument="gad7", comment="free text").iloc[:10]
    pd.concat([scores.assign(comment=""), extra], ignore_index=True).to_parquet(tmp_path / "scores.parquet")
    read = W.read_scores(tmp_path / "scores.parquet", ["phq9", "wai_sr"])
    assert read.columns.tolist() == M.SCORE_COLUMNS and len(read) == len(scores)
    assert read["instrument"].tolist() == scores["instrument"].tolist()  # the table's order
    scores.drop(columns="scale").to_parquet(tmp_path / "no_scale.parquet")
    with pytest.raises(ValueError, match=r"scores: missing column\(s\) \['scale'\]"):
        W.read_scores(tmp_path / "no_scale.parquet", ["phq9"])


def test_a_genuine_error_still_stops_the_model(small, tmp_path):
    scores, _ = small
    scores.drop(columns="therapist").to_parquet(tmp_path / "scores.parquet")
    config = config_with({"fits": FITS})
    with pytest.raises(ValueError) as err:
        run_model(tmp_path / "scores.parquet", "early", config, tmp_path / "early", tmp_path / "early.parquet")
    assert not isinstance(err.value, M.NotEstimableError)
    assert not (tmp_path / "early" / "fit.json").exists()


@pytest.mark.slow
def test_workflow_records_an_impossible_cell_and_model_and_reaches_the_report(tmp_path):
    """The example with a multiverse cell at a session the observers never rated (they rated
    2, 5 and 8) and a declared model on it: both are recorded, the run reaches the report."""
    from conftest import make_workdir, run_snakemake

    config = example_config()
    multiverse = config["models"]["multiverse"]
    multiverse["early"]["session_4"] = {"method": "session_k", "k": 4}
    multiverse["respondents"]["observer"] = {"instrument": "wai_o", "respondent": "observer", "scale": "total"}
    # one outcome and covariate set: the impossible cells are about early definitions x respondents
    multiverse["outcomes"] = {"phq9": multiverse["outcomes"]["phq9"]}
    multiverse["covariate_sets"] = {"arm": ["arm"]}
    config["models"]["diagnostics"] = {"influence": "none"}
    config["interrater"]["alpha_n_boot"] = 0
    config.setdefault("scoring", {})["reliability_bootstrap"] = 0
    config["models"]["fits"]["impossible"] = {
        "kind": "early_outcome", "label": "Impossible", "outcome": PHQ9, "variant": "post",
        "alliance": {"instrument": "wai_o", "respondent": "observer", "scale": "total"},
        "early": {"method": "session_k", "k": 4}}
    config["models"]["bootstrap"] = {"models": ["early_phq9_post", "impossible"], "replicates": 20, "batches": 2}
    for section in ("ruptures", "agreement"):  # not what this test is about; they cost run time
        config[section]["enabled"] = False
    workdir = make_workdir(tmp_path, config)
    run_snakemake(workdir)
    results = workdir / "results"
    info = json.loads((results / "models" / "impossible" / "fit.json").read_text())
    assert info["status"] == "not estimable" and "['early_alliance']" in info["reason"]
    assert pd.read_csv(results / "models" / "impossible" / "fixed_effects.csv").empty
    spec = json.loads((results / "sensitivity" / "specifications" / "session_4__phq9__observer__arm.json").read_text())
    assert spec["status"] == "not estimable"
    curve = pd.read_csv(results / "sensitivity" / "specification_curve.csv", keep_default_na=False)
    impossible = curve[curve["status"] == "not estimable"]
    # The observers rated sessions 2, 5 and 8, so session 3 or 4 alone gives them no early
    # alliance (the mean of sessions 1..3 does); the example's therapists never rated session 4.
    pairs = set(zip(impossible["early"], impossible["respondent"]))
    assert pairs == {("session_3", "observer"), ("session_4", "observer"), ("session_4", "therapist")}
    assert len(curve) == 3 * 3 and len(impossible) == 3
    assert (impossible["reason"] != "").all() and (impossible["rank"] == "").all()
    fit_table = pd.read_csv(results / "tables" / "model_fit.csv", keep_default_na=False)
    assert fit_table.set_index("model").loc["impossible", "status"] == "not estimable"
    assert "Not estimable: model impossible" in (results / "tables" / "model_tables.md").read_text()
    boot = pd.read_csv(results / "models" / "impossible" / "bootstrap.csv")
    assert boot["status"].tolist() == ["not estimable"]
    methods = next(results.rglob("methods.md")).read_text()
    assert "(Impossible) could not be estimated" in methods
    run_snakemake(workdir, "--report", "report.html")
    assert (workdir / "report.html").stat().st_size > 100_000

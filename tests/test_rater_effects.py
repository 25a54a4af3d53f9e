"""Tests of alliance.rater_effects (rater leniency, pairwise agreement) and its figures.

References (tests/data/rater_effects/, README there; ``ref_rater_effects.R`` wrote the JSON
files with R 4.2.2, lme4 1.1-31, psych 2.2.9):

- lme4 ``ranef`` (conditional modes) and ``condVar`` of ``lmer(rating ~ 1 + (1|target) +
  (1|rater), REML = TRUE)`` on three incomplete observer designs (120 sessions × 6 coders,
  its integer-rounded copy, and a 90 × 5 design where lme4's fit is singular);
- an independent R implementation (loops, ``sd``, ``cor``, ``psych::ICC``) of the mean
  deviations and the pairwise statistics;
- the published example of Bland & Altman (1986, Table 1);
- :func:`alliance.interrater.intraclass.icc` for the pair's ICC(A,1);
- recovery of known leniencies in simulated designs.

Tolerances: with lme4's variance components passed in, conditional modes 1e-4 absolute and
conditional SDs 1e-3 relative (the algebra is exact: the observed differences are ~1e-14);
with our own REML fit, whose variances match lme4 to ~1e-3 relative (test_reliability),
modes 5e-4 absolute and SDs 5e-3 relative (observed ~1e-7); descriptive statistics from
the R loops 1e-10 absolute.
"""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from alliance.interrater.rater_effects import (
    LENIENCY_COLUMNS,
    PAIR_COLUMNS,
    paired_ratings,
    pairwise_rater_agreement,
    rater_leniency,
)

DATA = Path(__file__).parent / "data" / "rater_effects"
DESIGNS = ["observer_unbalanced", "observer_integer", "observer_boundary"]


def ratings(name: str) -> pd.DataFrame:
    return pd.read_csv(DATA / name / "ratings.csv")


def reference(name: str) -> dict:
    return json.loads((DATA / name / "rater_effects_reference.json").read_text())


def simulate(seed: int, n_targets: int, leniency, sd_target: float = 0.7,
             sd_resid: float = 0.45, mean: float = 4.0, labels=None) -> pd.DataFrame:
    """Crossed design: each target rated by 2 or 3 distinct raters drawn at random."""
    rng = np.random.default_rng(seed)
    leniency = np.asarray(leniency, dtype=float)
    n_raters = len(leniency)
    per_target = rng.choice([2, 3], size=n_targets)
    drawn = np.argpartition(rng.random((n_targets, n_raters)), 3, axis=1)[:, :3]
    keep = np.arange(3)[None, :] < per_target[:, None]
    t = np.broadcast_to(np.arange(n_targets)[:, None], (n_targets, 3))[keep]
    r = drawn[keep]
    y = (mean + rng.normal(0, sd_target, n_targets)[t] + leniency[r]
         + rng.normal(0, sd_resid, len(t)))
    labels = [f"R{i:03d}" for i in range(n_raters)] if labels is None else labels
    return pd.DataFrame({"target": t, "rater": np.asarray(labels)[r], "rating": y})


# ----------------------------------------------------------------------------------------
# Rater leniency against lme4
# ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", DESIGNS)
def test_leniency_algebra_matches_lme4_given_its_components(name):
    ref = reference(name)
    out = rater_leniency(ratings(name), "target", "rater", "rating", components=ref["varcomp"])
    want = ref["raters"]
    assert list(out.columns) == LENIENCY_COLUMNS
    assert out["rater"].tolist() == want["rater"]
    assert out["n_ratings"].tolist() == want["n_ratings"]
    np.testing.assert_allclose(out["leniency"], want["leniency"], rtol=0, atol=1e-4)
    np.testing.assert_allclose(out["se"], want["cond_sd"], rtol=1e-3, atol=1e-12)
    # The GLS intercept at these components is lme4's fixef.
    assert out.attrs["intercept"] == pytest.approx(ref["intercept"], abs=1e-8)


@pytest.mark.parametrize("name", ["observer_unbalanced", "observer_integer"])
def test_leniency_with_own_reml_fit_matches_lme4(name):
    ref = reference(name)
    out = rater_leniency(ratings(name), "target", "rater", "rating")
    np.testing.assert_allclose(out["leniency"], ref["raters"]["leniency"], rtol=0, atol=5e-4)
    np.testing.assert_allclose(out["se"], ref["raters"]["cond_sd"], rtol=5e-3)
    assert out.attrs["variance_rater"] == pytest.approx(ref["varcomp"]["rater"], rel=1e-3)
    # Raters are clearly ranked in this design: R1 severe, R3 lenient (lme4 agrees).
    assert out.loc[out["leniency"].idxmin(), "rater"] == "R1"
    assert out.loc[out["leniency"].idxmax(), "rater"] == "R3"


def test_singular_fit_gives_zero_modes_as_lme4():
    ref = reference("observer_boundary")
    assert ref["singular"] and ref["varcomp"]["rater"] == 0
    out = rater_leniency(ratings("observer_boundary"), "target", "rater", "rating")
    np.testing.assert_allclose(out["leniency"], 0.0, atol=1e-6)
    np.testing.assert_allclose(out["se"], 0.0, atol=1e-6)
    np.testing.assert_allclose(out["ci_high"] - out["ci_low"], 0.0, atol=1e-5)


def test_interval_is_normal_around_the_mode():
    out = rater_leniency(ratings("observer_unbalanced"), "target", "rater", "rating",
                         ci_level=0.9)
    half = 1.6448536269514722 * out["se"]  # qnorm(0.95)
    np.testing.assert_allclose(out["ci_low"], out["leniency"] - half, rtol=1e-12)
    np.testing.assert_allclose(out["ci_high"], out["leniency"] + half, rtol=1e-12)


@pytest.mark.parametrize("name", DESIGNS)
def test_mean_deviation_matches_r_loops(name):
    want = reference(name)["raters"]
    out = rater_leniency(ratings(name), "target", "rater", "rating")
    np.testing.assert_allclose(out["mean_deviation"], want["mean_deviation"], atol=1e-10)
    assert out["n_shared_targets"].tolist() == want["n_shared_targets"]


def test_mean_deviation_by_hand_and_rater_sharing_no_target():
    # s1: A 4, B 6 -> A -2, B +2; s2: A 5, B 4, C 6 -> A 5-5 = 0, B 4-5.5 = -1.5, C 6-4.5 = 1.5;
    # s3: A 3 alone; s4: D 2 alone; s5: B 5, C 5 -> 0, 0.
    d = pd.DataFrame({"target": ["s1", "s1", "s2", "s2", "s2", "s3", "s4", "s5", "s5"],
                      "rater": ["A", "B", "A", "B", "C", "A", "D", "B", "C"],
                      "rating": [4, 6, 5, 4, 6, 3, 2, 5, 5]})
    out = rater_leniency(d, "target", "rater", "rating",
                         components={"target": 1.0, "rater": 0.5, "residual": 1.0})
    assert out["rater"].tolist() == ["A", "B", "C", "D"]
    np.testing.assert_allclose(out["mean_deviation"][:3], [-1.0, 0.5 / 3, 0.75])
    assert np.isnan(out["mean_deviation"][3])
    assert out["n_shared_targets"].tolist() == [2, 3, 2, 0]
    assert out["n_ratings"].tolist() == [3, 3, 2, 1]


def test_leniency_does_not_depend_on_row_order():
    d = ratings("observer_unbalanced")
    a = rater_leniency(d, "target", "rater", "rating")
    b = rater_leniency(d.sample(frac=1, random_state=3), "target", "rater", "rating")
    pd.testing.assert_frame_equal(a, b, rtol=1e-8)


# ----------------------------------------------------------------------------------------
# Rater leniency: recovery of known leniencies
# ----------------------------------------------------------------------------------------
def test_recovers_known_leniencies():
    true = np.random.default_rng(7).normal(0, 0.3, 30)
    out = rater_leniency(simulate(11, 6000, true), "target", "rater", "rating")
    # The intercept absorbs the raters' mean: compare deviations from the mean.
    truth = true - true.mean()
    mode = out["leniency"].to_numpy() - out["leniency"].mean()
    z = (mode - truth) / out["se"].to_numpy()
    assert out["se"].between(0.02, 0.035).all()  # ~500 ratings each, residual SD 0.45
    assert np.max(np.abs(z)) < 4
    assert np.mean(np.abs(z) < 1.96) >= 0.8
    # With co-raters drawn uniformly, E[mean deviation] = K/(K-1) (b_r - mean b); its SE is
    # about 0.027 here, so 0.15 is > 5 SE.
    np.testing.assert_allclose(out["mean_deviation"], 30 / 29 * truth, atol=0.15)


def test_large_design_is_fast_and_recovers_leniency():
    true = np.random.default_rng(8).normal(0, 0.25, 100)
    d = simulate(12, 100_000, true)
    assert len(d) > 240_000
    start = time.perf_counter()
    out = rater_leniency(d, "target", "rater", "rating")
    elapsed = time.perf_counter() - start
    assert elapsed < 30, f"rater_leniency took {elapsed:.1f} s on {len(d)} ratings"  # ~1.6 s
    assert len(out) == 100
    z = (out["leniency"] - out["leniency"].mean() - (true - true.mean())) / out["se"]
    assert np.max(np.abs(z)) < 4.5


# ----------------------------------------------------------------------------------------
# Pairwise agreement
# ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", DESIGNS)
def test_pairwise_agreement_matches_r(name):
    want = pd.DataFrame(reference(name)["pairs"])
    out = pairwise_rater_agreement(ratings(name), "target", "rater", "rating", min_shared=2)
    assert list(out.columns) == PAIR_COLUMNS
    assert out[["rater_a", "rater_b", "n_shared"]].values.tolist() == \
        want[["rater_a", "rater_b", "n_shared"]].values.tolist()
    for col in PAIR_COLUMNS[3:]:
        np.testing.assert_allclose(out[col], want[col], rtol=0, atol=1e-10, err_msg=col)


def test_exact_agreement_is_seen_in_integer_ratings():
    out = pairwise_rater_agreement(ratings("observer_integer"), "target", "rater", "rating",
                                   min_shared=2)
    assert (out["exact_agreement"] > 0).sum() >= 10
    assert out["exact_agreement"].between(0, 1).all()


def test_min_shared_filters_pairs():
    d = ratings("observer_unbalanced")
    want = pd.DataFrame(reference("observer_unbalanced")["pairs"])
    out = pairwise_rater_agreement(d, "target", "rater", "rating")  # default 10
    assert len(out) == int((want["n_shared"] >= 10).sum())
    assert (out["n_shared"] >= 10).all()
    assert pairwise_rater_agreement(d, "target", "rater", "rating", min_shared=1000).empty


def test_pair_icc_equals_reliability_icc_on_the_pair_design():
    from alliance.interrater.intraclass import icc

    d = ratings("observer_unbalanced")
    pair = paired_ratings(d, "target", "rater", "rating")
    pair = pair[(pair["rater_a"] == "R1") & (pair["rater_b"] == "R2")]
    long = pd.concat([
        pair[["target", "rating_a"]].rename(columns={"rating_a": "rating"}).assign(rater="R1"),
        pair[["target", "rating_b"]].rename(columns={"rating_b": "rating"}).assign(rater="R2"),
    ])
    table = icc(long, "target", "rater", "rating")
    expected = table.loc[table["mcgraw_wong"] == "ICC(A,1)", "icc"].item()
    got = pairwise_rater_agreement(d, "target", "rater", "rating")
    got = got.loc[(got["rater_a"] == "R1") & (got["rater_b"] == "R2"), "icc_a1"].item()
    assert got == pytest.approx(expected, abs=1e-10)


def test_bland_altman_1986_published_example_as_two_raters():
    # Table 1: PEFR by the Wright and the mini Wright meter (first readings), 17 subjects;
    # published mean difference -2.1, SD 38.8, r = 0.94 (rounded).
    wright = [494, 395, 516, 434, 476, 557, 413, 442, 650, 433, 417, 656, 267, 478, 178, 423, 427]
    mini = [512, 430, 520, 428, 500, 600, 364, 380, 658, 445, 432, 626, 260, 477, 259, 350, 451]
    d = pd.DataFrame({"target": list(range(17)) * 2, "rater": ["mini"] * 17 + ["wright"] * 17,
                      "rating": mini + wright})
    row = pairwise_rater_agreement(d, "target", "rater", "rating").iloc[0]
    assert (row["rater_a"], row["rater_b"], row["n_shared"]) == ("mini", "wright", 17)
    assert row["mean_difference"] == pytest.approx(2.1, abs=0.05)  # mini - wright
    assert row["sd_difference"] == pytest.approx(38.8, abs=0.05)
    assert row["pearson_r"] == pytest.approx(0.94, abs=0.005)
    assert row["loa_low"] == pytest.approx(row["mean_difference"] - 1.96 * row["sd_difference"])
    assert row["loa_high"] == pytest.approx(2.1 + 1.96 * 38.8, abs=0.1)


def test_constant_rater_gives_nan_correlation():
    d = pd.DataFrame({"target": [1, 2, 3, 1, 2, 3], "rater": ["a"] * 3 + ["b"] * 3,
                      "rating": [4, 4, 4, 3, 5, 4]})
    row = pairwise_rater_agreement(d, "target", "rater", "rating", min_shared=3).iloc[0]
    assert np.isnan(row["pearson_r"])
    assert row["exact_agreement"] == pytest.approx(1 / 3)


# ----------------------------------------------------------------------------------------
# Input checks
# ----------------------------------------------------------------------------------------
GOOD = pd.DataFrame({"t": [1, 1, 2, 2, 3, 3], "r": ["a", "b"] * 3, "y": [1.0, 2, 3, 4, 5, 7]})


@pytest.mark.parametrize("func", [rater_leniency, pairwise_rater_agreement])
@pytest.mark.parametrize("change, match", [
    (lambda d: d.drop(columns="y"), r"column\(s\) not in data: rating='y'"),
    (lambda d: d.assign(y=["1", "x", 3, 4, 5, 6]), r"column 'y' must hold finite numbers; row 1: value is a text of 1 character \(letters\)$"),
    (lambda d: d.assign(y=[1, np.inf, 3, 4, 5, 6]), r"column 'y' must hold finite numbers"),
    (lambda d: d.assign(r=["a", None, "a", "b", "a", "b"]),
     r"column 'r' has a missing id in row 1"),
    (lambda d: d.assign(r=["a", "a", "a", "b", "a", "b"]), r"duplicate \(t, r\) pair"),
    (lambda d: d.assign(r="a", t=range(6)), r"column 'r' has 1 distinct rater"),
])
def test_bad_input_raises(func, change, match):
    with pytest.raises(ValueError, match=match):
        func(change(GOOD.copy()), "t", "r", "y")


@pytest.mark.parametrize("components, match", [
    ({"target": 1.0, "rater": -0.1, "residual": 1.0}, "rater >= 0"),
    ({"target": 1.0, "rater": 0.1, "residual": 0.0}, "residual > 0"),
    ({"target": 1.0, "residual": 1.0}, r"missing \['rater'\]"),
    ({"target": "big", "rater": 1.0, "residual": 1.0}, "must be numbers"),
])
def test_bad_components_raise(components, match):
    with pytest.raises(ValueError, match=match):
        rater_leniency(GOOD, "t", "r", "y", components=components)


@pytest.mark.parametrize("level", [0, 1, 1.5, "0.95"])
def test_bad_ci_level_raises(level):
    with pytest.raises(ValueError, match="ci_level"):
        rater_leniency(GOOD, "t", "r", "y", ci_level=level)


@pytest.mark.parametrize("min_shared", [1, 2.5, True])
def test_bad_min_shared_raises(min_shared):
    with pytest.raises(ValueError, match="min_shared"):
        pairwise_rater_agreement(GOOD, "t", "r", "y", min_shared=min_shared)


def test_missing_ratings_are_dropped_with_warning():
    d = pd.concat([ratings("observer_unbalanced"),
                   pd.DataFrame({"target": ["S999"], "rater": ["R1"], "rating": [np.nan]})])
    with pytest.warns(UserWarning, match="1 rating\\(s\\) missing"):
        out = rater_leniency(d, "target", "rater", "rating")
    np.testing.assert_allclose(out["leniency"],
                               reference("observer_unbalanced")["raters"]["leniency"], atol=5e-4)


# ----------------------------------------------------------------------------------------
# Figures
# ----------------------------------------------------------------------------------------
def visible_axes(fig):
    return [ax for ax in fig.axes if ax.get_visible()]


def two_rater_design() -> pd.DataFrame:
    """40 sessions both rated by two coders (pseudonyms as the workflow passes them), on an
    integer 1-7 scale."""
    rng = np.random.default_rng(5)
    session = rng.normal(4.0, 0.9, 40)
    coders = {"R-1a2b3c4d5e6f": 0.3, "R-0f9e8d7c6b5a": -0.1}
    rows = [pd.DataFrame({"target": np.arange(40), "rater": name,
                          "rating": np.clip(np.round(session + shift + rng.normal(0, 0.5, 40)),
                                            1, 7)})
            for name, shift in coders.items()]
    return pd.concat(rows, ignore_index=True)


@pytest.mark.parametrize("data", [ratings("observer_unbalanced"), two_rater_design()],
                         ids=["fixture", "two_raters"])
def test_leniency_figure(data):
    from matplotlib.figure import Figure

    from alliance.report.style import close
    from alliance.interrater.figures import LENIENCY_TITLE, plot_rater_leniency

    table = rater_leniency(data, "target", "rater", "rating")
    start = time.perf_counter()
    fig = plot_rater_leniency(table, scale_label="WAI-O total")
    elapsed = time.perf_counter() - start
    try:
        assert isinstance(fig, Figure)
        (ax,) = visible_axes(fig)
        assert ax.get_title() == LENIENCY_TITLE == \
            "Rater leniency (conditional modes of the rater effect)"
        assert "WAI-O total" in ax.get_xlabel() and ax.get_ylabel() == "rater"
        ticks = [t.get_text() for t in ax.get_yticklabels()]
        # ordered by leniency, named "Coder k" by the rater's place in sorted id order, never by id
        order = sorted(table["rater"], key=str)
        assert ticks == [f"Coder {order.index(r) + 1}" for r in table.sort_values("leniency")["rater"]]
        assert not any(str(r) in " ".join(ticks) for r in table["rater"])
        notes = [t.get_text() for t in ax.texts]
        assert notes == [f"n = {n}" for n in table.sort_values("leniency")["n_ratings"]]
        assert elapsed < 5
    finally:
        close(fig)


def test_pairwise_figure_on_fixture():
    from alliance.report.style import close
    from alliance.interrater.figures import plot_pairwise_agreement

    d = ratings("observer_integer")
    n_pairs = len(pairwise_rater_agreement(d, "target", "rater", "rating", min_shared=10))
    assert n_pairs > 12
    start = time.perf_counter()
    fig = plot_pairwise_agreement(d, "target", "rater", "rating", max_pairs=12, min_shared=10)
    elapsed = time.perf_counter() - start
    try:
        axes = visible_axes(fig)
        assert len(axes) == 12
        top = pairwise_rater_agreement(d, "target", "rater", "rating").sort_values(
            "n_shared", ascending=False, kind="stable").iloc[0]
        coder = {r: f"Coder {k}" for k, r in enumerate(sorted(d["rater"].unique(), key=str), start=1)}
        assert axes[0].get_title().startswith(f"{coder[top['rater_a']]} vs {coder[top['rater_b']]}\n"
                                              f"n = {top['n_shared']}, r = ")
        for ax in axes:
            assert ax.get_xlabel().startswith("rating, ") and ax.get_ylabel().startswith("rating, ")
        assert elapsed < 5
    finally:
        close(fig)
    small = plot_pairwise_agreement(d, "target", "rater", "rating", max_pairs=3)
    try:
        assert len(visible_axes(small)) == 3
    finally:
        close(small)


def test_pairwise_figure_two_raters_and_jitter_is_reproducible():
    from alliance.report.style import close
    from alliance.interrater.figures import plot_pairwise_agreement

    d = two_rater_design()
    figs = [plot_pairwise_agreement(d, "target", "rater", "rating", scale_label="WAI-O")
            for _ in range(2)]
    try:
        (ax,) = visible_axes(figs[0])
        assert "n = 40" in ax.get_title()
        assert ax.get_xlabel() == "WAI-O, Coder 1"
        points = [visible_axes(f)[0].collections[0].get_offsets() for f in figs]
        np.testing.assert_array_equal(points[0], points[1])
        jitter = np.asarray(points[0]) - np.round(points[0])
        assert 0 < np.max(np.abs(jitter)) <= 0.12  # integer data jittered, a little
    finally:
        for f in figs:
            close(f)


def test_pairwise_figure_without_eligible_pairs_raises():
    from alliance.interrater.figures import plot_pairwise_agreement

    with pytest.raises(ValueError, match="min_shared=50"):
        plot_pairwise_agreement(ratings("observer_unbalanced"), "target", "rater", "rating",
                                min_shared=50)


def test_leniency_figure_refuses_wrong_table():
    from alliance.interrater.figures import plot_rater_leniency

    with pytest.raises(ValueError, match=r"missing column\(s\) \['leniency'"):
        plot_rater_leniency(pd.DataFrame({"rater": ["a"], "n_ratings": [3]}))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match="no rows"):
            plot_rater_leniency(pd.DataFrame(columns=LENIENCY_COLUMNS))

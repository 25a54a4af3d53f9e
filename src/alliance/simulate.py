"""Seeded generator of realistic alliance–outcome studies with a known ground truth.

A simulated study looks like what survey tools export from a practice-research network:
clients nested in therapists with unequal caseloads, a varying number of sessions with dropout,
item-level client WAI-SR (Hatcher & Gillaspy, 2006) every session, a therapist-rated short WAI
at a few sessions, observer ratings of a subset of sessions by 2–4 coders from a small pool (an
incomplete design), PHQ-9 and GAD-7 every session, the OQ-45 at the first and last session,
missing items, skipped administrations, rupture–repair dips in some clients' alliance, and a
few clients who change therapist.

The data-generating model is the within/between-client lagged model of the alliance–outcome
literature (Falkenström, Granström & Holmqvist, 2013; centring as in Curran & Bauer, 2011):

    PHQ_t = b0 + b_time*t + b_within*(A_lag(t) - Abar_client)
            + b_between*(Abar_client - mean_over_clients(Abar_client))
            + u_therapist + u0_client + u1_client*t + e_t,

where A is the *observed* WAI-SR score (mean of the answered items, 1–5), so that the truth is
defined on the scale the pipeline measures. ``truth.json`` records every parameter, these
definitions, the injected rupture episodes (after Gumz et al., 2012: a drop of at least 2
within-client SDs, a V-shaped return when repaired), the observer variance components (so the
ICCs of Shrout & Fleiss, 1979 are known) and the therapist switches.

Everything is vectorised over sessions (no Python loop over clients): one million sessions take
a few seconds. Each component draws from its own child of ``numpy.random.SeedSequence(seed)``,
so the same seed gives the same study, byte for byte once written.

Tested by parameter recovery (tests/test_simulate.py): the within- and between-client effects
are recovered by a client-fixed-effects regression and a between-client regression, the
WAI-SR's Cronbach alpha lies in .80–.95, coder leniencies are recovered from the incomplete
observer design.
"""

from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.signal import lfilter

from alliance import __version__
from alliance.outputs import write_csv, write_json, write_parquet

WAI_SUBSCALES = {"task": (1, 2, 10, 12), "bond": (3, 5, 7, 9), "goal": (4, 6, 8, 11)}
N_WAI, N_PHQ, N_GAD, N_OQ = 12, 9, 7, 45
PHQ_MAX_ITEM, GAD_MAX_ITEM, OQ_MAX_ITEM = 3, 3, 4
OQ_REVERSE_KEYED = (1, 12, 13, 20, 21, 24, 31, 37, 43)
AGE_BANDS = ("18-25", "26-35", "36-45", "46-55", "56-65", "66+")
AGE_BAND_SHARES = (0.22, 0.28, 0.20, 0.15, 0.10, 0.05)
GENDERS = ("female", "male", "diverse")
GENDER_SHARES = (0.62, 0.36, 0.02)
# Minimum sessions for a client to carry an injected rupture: two sessions before it to set the
# pre-rupture level, and three after it for a repair of up to three sessions to show.
RUPTURE_MIN_SESSIONS = 6
SWITCH_MIN_SESSIONS = 4
ITEM_DTYPE = "Int16"  # nullable (missing items), and no overflow when items are summed
STREAMS = ("ids", "caseload", "sessions", "days", "switches", "alliance", "ruptures", "wai",
           "outcome", "symptom_items", "therapist_forms", "observers", "missing", "clients", "dynamics")
TABLES = ("client_forms", "therapist_forms", "observer_ratings", "clients")
FORMATS = ("csv", "parquet")
ALLIANCE_CARRY = ("observed", "latent")


@dataclass(frozen=True)
class SimulationDesign:
    """The study's design: who is seen how often, what is administered when.

    Defaults give about 5,000 client sessions for 400 clients in 40 therapists.
    """

    n_therapists: int = 40
    n_clients: int = 400
    caseload_sd_log: float = 0.6  # SD of the log caseload weights: larger = more unequal
    median_planned_sessions: float = 14.0
    planned_sessions_sd_log: float = 0.2
    min_planned_sessions: int = 4
    max_sessions: int = 20
    dropout_hazard: float = 0.02  # per attended session, constant (geometric dropout)
    therapist_form_sessions: tuple[int, ...] = (1, 3, 6)
    observer_client_share: float = 0.3
    observer_sessions: tuple[int, ...] = (2, 5, 8)
    n_coders: int = 4
    coders_per_session: tuple[int, int] = (2, 4)  # inclusive range, drawn per coded session
    item_missing_share: float = 0.02
    skipped_administration_share: float = 0.03  # per instrument and session, from session 2
    rupture_client_share: float = 0.2  # of the clients with >= 6 sessions
    n_therapist_switches: int = 2
    # The scoring rule that defines the observed WAI-SR score A (config/instruments/wai_sr.yaml):
    # mean of the answered items when at most this many of the 12 are missing, else no score.
    wai_max_missing_items: int = 1
    arms: tuple[str, str] = ("CBT", "PDT")


@dataclass(frozen=True)
class SimulationEffects:
    """The population parameters of the data-generating model (see the module docstring).

    Alliance parameters are on the latent 1–5 WAI-SR scale; outcome parameters on the PHQ-9
    total (0–27) per point of observed WAI-SR mean score; observer parameters on the mean of
    the 12 observer items (1–7).
    """

    # outcome (PHQ-9 total)
    b0: float = 16.0
    b_time: float = -0.45
    b_within: float = -1.2
    b_between: float = -2.0
    sd_therapist: float = 1.0
    sd_client_int: float = 3.0
    sd_client_slope: float = 0.25
    sd_resid: float = 2.5
    # session-to-session dynamics (issue 15); all 0 leaves the model above as it is
    symptom_ar: float = 0.0  # d_t = symptom_ar*d_(t-1) + b_within*(A_lag - L_lag) + e_t (within-client deviation)
    symptom_to_alliance: float = 0.0  # alliance at t per PHQ-9 point of the symptom deviation at t-1
    # What the alliance's session-to-session carry-over acts on when symptoms feed the alliance
    # (symptom_to_alliance != 0): "observed", the observed WAI-SR score (a session's deviation of
    # the item mean from the latent alliance carries over like the rest of the state, so the
    # observed score's within part is the AR(1)-with-cross-lag of the RI-CLPM); "latent", the
    # latent alliance only (the items' deviation is measurement error that does not carry: the
    # observed within part is then ARMA(1,1), outside the RI-CLPM's class). See DEFINITIONS["dynamics"].
    alliance_carry: str = "observed"
    sudden_gain_share: float = 0.0  # share of clients with an early sudden gain
    sudden_gain_size: float = 0.0  # PHQ-9 points of the lasting drop at the gain session
    sudden_gain_sessions: tuple[int, int] = (2, 3)  # uniform session of the gain, inclusive
    # latent client alliance
    alliance_mean: float = 3.8
    alliance_sd_between: float = 0.45  # client trait
    alliance_sd_therapist: float = 0.15  # therapists differ in the alliances they form
    alliance_sd_within: float = 0.3  # stationary SD of the AR(1) session fluctuations
    alliance_ar1: float = 0.5
    alliance_growth: float = 0.02  # per session
    wai_subscale_sd: float = 0.12  # session-level subscale factor (one factor per subscale)
    wai_item_sd: float = 0.55
    wai_item_offset_sd: float = 0.15
    # rupture-repair
    rupture_depth_sd: tuple[float, float] = (2.0, 3.0)  # uniform, in rupture_depth_unit SDs
    # "latent": alliance_sd_within (the bundled example's unit); "observed": the observed
    # within-client SD of the scores (observed_within_sd, the yardstick of sd_basis "client");
    # "observed_change": the observed SD of a session-to-session change (observed_change_sd,
    # the yardstick of the detector's default sd_basis "client_change"), for detection studies.
    # Sources of the rupture settings: see _draw_ruptures.
    rupture_depth_unit: str = "latent"
    repair_probability: float = 0.6
    sessions_to_repair: tuple[int, int] = (1, 3)  # inclusive range
    unrepaired_residual: float = 0.7  # share of the dip that persists when not repaired
    # therapist-rated short WAI
    therapist_form_mean: float = 3.9
    therapist_form_loading: float = 0.35  # on the client's latent session alliance
    therapist_form_sd_leniency: float = 0.25
    therapist_form_sd_client: float = 0.25
    therapist_form_sd_session: float = 0.2
    # observer-rated WAI (mean of 12 items, 1-7)
    observer_mean: float = 4.2
    observer_var_target: float = 0.5
    observer_var_rater: float = 0.06
    observer_var_resid: float = 0.15
    observer_corr_alliance: float = 0.6  # of the session's true score with the client's latent alliance
    observer_item_sd: float = 0.4
    # other symptom measures, linear in the latent PHQ-9 total
    gad_intercept: float = 1.0
    gad_slope: float = 0.7
    gad_sd_resid: float = 3.0
    oq_intercept: float = 20.0
    oq_slope: float = 3.5
    oq_sd_resid: float = 15.0
    symptom_item_weight_sd: float = 0.3  # SD of the log item weights when totals are split


@dataclass
class Study:
    """A simulated study: the four raw tables and the ground truth (JSON-serialisable)."""

    client_forms: pd.DataFrame
    therapist_forms: pd.DataFrame
    observer_ratings: pd.DataFrame
    clients: pd.DataFrame
    truth: dict


@dataclass(frozen=True)
class _Sessions:
    """Long-format index of all client sessions, sorted by client then session."""

    client: np.ndarray  # client index per session row
    session: np.ndarray  # 1-based session number
    n_sessions: np.ndarray  # per client
    start: np.ndarray  # first row of each client

    @classmethod
    def from_counts(cls, n_sessions: np.ndarray) -> _Sessions:
        client = np.repeat(np.arange(len(n_sessions)), n_sessions)
        start = np.concatenate([[0], np.cumsum(n_sessions)[:-1]])
        session = np.arange(len(client)) - start[client] + 1
        return cls(client, session, n_sessions, start)

    @property
    def is_last(self) -> np.ndarray:
        return self.session == self.n_sessions[self.client]

    def client_mean(self, values: np.ndarray) -> np.ndarray:
        """Per-client mean of the non-missing values (NaN for a client with none)."""
        present = ~np.isnan(values)
        n_clients = len(self.n_sessions)
        sums = np.bincount(self.client[present], values[present], minlength=n_clients)
        counts = np.bincount(self.client[present], minlength=n_clients)
        with np.errstate(invalid="ignore", divide="ignore"):
            return sums / counts

    def lag_rows(self) -> np.ndarray:
        """Row of the previous session; session 1 points to itself."""
        rows = np.arange(len(self.client))
        return np.where(self.session > 1, rows - 1, rows)


# --------------------------------------------------------------------------- checks


def _check_share(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"SimulationDesign/Effects.{name} = {value!r}; expected a share between 0 and 1")


def _check_positive(name: str, value: float, allow_zero: bool = True) -> None:
    if value < 0 or (value == 0 and not allow_zero) or not math.isfinite(value):
        expected = "a finite number >= 0" if allow_zero else "a finite number > 0"
        raise ValueError(f"SimulationDesign/Effects.{name} = {value!r}; expected {expected}")


def _check_design(design: SimulationDesign) -> None:
    if not isinstance(design, SimulationDesign):
        raise ValueError(f"design must be a SimulationDesign, got {type(design).__name__}")
    if design.n_therapists < 1 or design.n_clients < design.n_therapists:
        raise ValueError(
            f"SimulationDesign: n_therapists = {design.n_therapists}, n_clients = {design.n_clients}; "
            "expected at least one therapist and at least one client per therapist")
    for name in ("observer_client_share", "item_missing_share", "skipped_administration_share",
                 "rupture_client_share"):
        _check_share(name, getattr(design, name))
    for name in ("caseload_sd_log", "planned_sessions_sd_log"):
        _check_positive(name, getattr(design, name))
    _check_positive("median_planned_sessions", design.median_planned_sessions, allow_zero=False)
    if not 1 <= design.min_planned_sessions <= design.max_sessions:
        raise ValueError(
            f"SimulationDesign: min_planned_sessions = {design.min_planned_sessions}, max_sessions = "
            f"{design.max_sessions}; expected 1 <= min_planned_sessions <= max_sessions")
    if not 0.0 <= design.dropout_hazard < 1.0:
        raise ValueError(f"SimulationDesign.dropout_hazard = {design.dropout_hazard!r}; expected 0 <= hazard < 1")
    lo, hi = design.coders_per_session
    if not 1 <= lo <= hi <= design.n_coders:
        raise ValueError(
            f"SimulationDesign.coders_per_session = {design.coders_per_session!r} with n_coders = "
            f"{design.n_coders}; expected 1 <= min <= max <= n_coders")
    for name in ("therapist_form_sessions", "observer_sessions"):
        if any(int(s) != s or s < 1 for s in getattr(design, name)):
            raise ValueError(f"SimulationDesign.{name} = {getattr(design, name)!r}; expected session numbers >= 1")
    if design.n_therapist_switches < 0 or (design.n_therapist_switches > 0 and design.n_therapists < 2):
        raise ValueError(
            f"SimulationDesign.n_therapist_switches = {design.n_therapist_switches} with "
            f"{design.n_therapists} therapist(s); expected >= 0, and at least 2 therapists to switch between")
    if not 0 <= design.wai_max_missing_items < N_WAI:
        raise ValueError(f"SimulationDesign.wai_max_missing_items = {design.wai_max_missing_items!r}; "
                         f"expected 0..{N_WAI - 1}")
    if len(design.arms) != 2 or design.arms[0] == design.arms[1]:
        raise ValueError(f"SimulationDesign.arms = {design.arms!r}; expected two distinct arm labels")


def _check_effects(effects: SimulationEffects) -> None:
    if not isinstance(effects, SimulationEffects):
        raise ValueError(f"effects must be a SimulationEffects, got {type(effects).__name__}")
    for f in fields(effects):
        value = getattr(effects, f.name)
        if f.name.startswith(("sd_", "observer_var_")) or "_sd" in f.name:
            values = value if isinstance(value, tuple) else (value,)
            for v in values:
                _check_positive(f.name, v)
    if not -1.0 < effects.alliance_ar1 < 1.0:
        raise ValueError(f"SimulationEffects.alliance_ar1 = {effects.alliance_ar1!r}; expected -1 < ar1 < 1")
    for name in ("repair_probability", "unrepaired_residual"):
        _check_share(name, getattr(effects, name))
    if not -1.0 <= effects.observer_corr_alliance <= 1.0:
        raise ValueError(
            f"SimulationEffects.observer_corr_alliance = {effects.observer_corr_alliance!r}; expected -1..1")
    lo, hi = effects.sessions_to_repair
    if not 1 <= lo <= hi <= RUPTURE_MIN_SESSIONS - 3:
        raise ValueError(
            f"SimulationEffects.sessions_to_repair = {effects.sessions_to_repair!r}; expected 1 <= min <= max <= 3")
    if effects.alliance_carry not in ALLIANCE_CARRY:
        raise ValueError(f"SimulationEffects.alliance_carry = {effects.alliance_carry!r}; expected one of "
                         f"{', '.join(ALLIANCE_CARRY)}")
    if not -1.0 < effects.symptom_ar < 1.0:
        raise ValueError(f"SimulationEffects.symptom_ar = {effects.symptom_ar!r}; expected -1 < symptom_ar < 1")
    _check_share("sudden_gain_share", effects.sudden_gain_share)
    lo_g, hi_g = effects.sudden_gain_sessions
    if not 1 <= lo_g <= hi_g:
        raise ValueError(f"SimulationEffects.sudden_gain_sessions = {effects.sudden_gain_sessions!r}; "
                         "expected 1 <= first <= last")
    lo_d, hi_d = effects.rupture_depth_sd
    if not 0 < lo_d <= hi_d:
        raise ValueError(f"SimulationEffects.rupture_depth_sd = {effects.rupture_depth_sd!r}; expected 0 < min <= max")


def _check_seed(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed = {seed!r}; expected a non-negative integer")
    return int(seed)


# --------------------------------------------------------------------------- structure


def _streams(seed: int) -> dict[str, np.random.Generator]:
    """One independent generator per component, so changing one part leaves the others alone."""
    children = np.random.SeedSequence(seed).spawn(len(STREAMS))
    return {name: np.random.default_rng(child) for name, child in zip(STREAMS, children)}


def _export_ids(rng: np.random.Generator, prefix: str, n: int, min_width: int) -> np.ndarray:
    """Distinct, non-consecutive zero-padded ids like a survey export's (``P0417``, ``TH12``)."""
    width = max(min_width, len(str(2 * n)))
    numbers = np.sort(rng.choice(10**width - 1, size=n, replace=False) + 1)
    return np.array([f"{prefix}{k:0{width}d}" for k in numbers], dtype=object)


def _coder_ids(n: int) -> np.ndarray:
    """``coder_A``, ``coder_B``, ...; fixed-width letters beyond 26 coders (``coder_AA``...), so
    that sorting the ids keeps the coders' order."""
    width = 1
    while 26**width < n:
        width += 1

    def letters(k: int) -> str:
        out = ""
        for _ in range(width):
            k, r = divmod(k, 26)
            out = chr(65 + r) + out
        return out

    return np.array([f"coder_{letters(k)}" for k in range(n)], dtype=object)


def _assign_caseloads(rng: np.random.Generator, design: SimulationDesign) -> np.ndarray:
    """Therapist index of each client: one client each, the rest by lognormal weights."""
    weights = np.exp(rng.normal(0.0, design.caseload_sd_log, design.n_therapists))
    extra = rng.choice(design.n_therapists, size=design.n_clients - design.n_therapists, p=weights / weights.sum())
    therapist = np.concatenate([np.arange(design.n_therapists), extra])
    return rng.permutation(therapist)


def _draw_session_counts(rng: np.random.Generator, design: SimulationDesign) -> np.ndarray:
    """Planned course length (lognormal), cut short by a constant per-session dropout hazard."""
    planned = design.median_planned_sessions * np.exp(rng.normal(0.0, design.planned_sessions_sd_log, design.n_clients))
    planned = np.clip(np.rint(planned), design.min_planned_sessions, design.max_sessions).astype(np.int64)
    if design.dropout_hazard == 0:
        return planned
    last_before_dropout = rng.geometric(design.dropout_hazard, design.n_clients)
    return np.minimum(planned, last_before_dropout)


def _cumsum_within(values: np.ndarray, s: _Sessions) -> np.ndarray:
    total = np.cumsum(values)
    before = np.concatenate([[0], total])[s.start]
    return total - before[s.client]


def _days_since_intake(rng: np.random.Generator, s: _Sessions) -> np.ndarray:
    """Weekly sessions with jitter and occasional missed weeks; session 1 within 2 weeks of intake."""
    n = len(s.client)
    step = np.maximum(2, np.rint(7 + rng.normal(0.0, 1.5, n))) + 7 * (rng.random(n) < 0.08) * rng.integers(1, 3, n)
    first = rng.integers(0, 15, n)
    increments = np.where(s.session == 1, first, step).astype(np.int64)
    return _cumsum_within(increments, s)


def _switch_therapists(rng: np.random.Generator, design: SimulationDesign, s: _Sessions,
                       primary: np.ndarray) -> tuple[np.ndarray, list[tuple[int, int, int, int]]]:
    """Therapist per session; a few clients move to another therapist from a mid-course session."""
    therapist = primary[s.client].copy()
    eligible = np.flatnonzero(s.n_sessions >= SWITCH_MIN_SESSIONS)
    k = design.n_therapist_switches
    if k > len(eligible):
        raise ValueError(
            f"SimulationDesign.n_therapist_switches = {k}, but only {len(eligible)} clients have "
            f">= {SWITCH_MIN_SESSIONS} sessions; expected at most that many switches")
    movers = np.sort(rng.choice(eligible, size=k, replace=False))
    switches = []
    for c in movers:  # loop over the handful of movers only
        first_new = int(rng.integers(2, s.n_sessions[c]))  # at least 2 sessions with the new therapist
        new = int((primary[c] + rng.integers(1, design.n_therapists)) % design.n_therapists)
        rows = s.start[c] + np.arange(first_new - 1, s.n_sessions[c])
        therapist[rows] = new
        switches.append((int(c), int(primary[c]), new, first_new))
    return therapist, switches


# --------------------------------------------------------------------------- alliance


def _ar1_fluctuations(rng: np.random.Generator, s: _Sessions, phi: float, sd: float) -> np.ndarray:
    """Stationary AR(1) series per client with marginal SD ``sd`` (filtered on a padded grid)."""
    n_clients, width = len(s.n_sessions), int(s.n_sessions.max())
    shocks = rng.normal(0.0, sd * math.sqrt(1 - phi**2), (n_clients, width))
    shocks[:, 0] = rng.normal(0.0, sd, n_clients)
    series = lfilter([1.0], [1.0, -phi], shocks, axis=1)
    return series[s.client, s.session - 1]


@functools.lru_cache(maxsize=16)
def _rupture_free_observed(effects: SimulationEffects) -> tuple[np.ndarray, np.ndarray]:
    """Observed WAI-SR scores (mean of the 12 items) of 2,000 rupture-free clients of 14
    sessions, drawn with the generator's own alliance and item model (trait with therapist
    part, growth, AR(1) fluctuation, subscale factors, item offsets and noise, rounding and
    clipping) from a fixed seed of their own, so the result is deterministic and no stream of
    a simulated study is touched. Returns (client index, score), sorted by client and session."""
    rng = np.random.default_rng(20261205)
    n_clients, n_sessions = 2000, 14
    s = _Sessions.from_counts(np.full(n_clients, n_sessions))
    level_sd = math.sqrt(effects.alliance_sd_between**2 + effects.alliance_sd_therapist**2)
    trait = rng.normal(effects.alliance_mean, level_sd, n_clients)
    latent = (trait[s.client] + effects.alliance_growth * (s.session - 1)
              + _ar1_fluctuations(rng, s, effects.alliance_ar1, effects.alliance_sd_within))
    offsets = rng.normal(0.0, effects.wai_item_offset_sd, N_WAI)
    score = _ordinal_items(rng, latent, offsets, effects.wai_item_sd, 1, 5, effects.wai_subscale_sd).mean(axis=1)
    return s.client, score


def observed_within_sd(effects: SimulationEffects) -> float:
    """The SD of a client's observed WAI-SR score around its own mean, for a client without a
    rupture: what the detector's ``sd_basis="client"`` yardstick (the client's own SD of its
    sessions) estimates, and the dips' unit with ``rupture_depth_unit="observed"``.

    Computed by simulation, not by formula, because rounding the items and clipping them to 1-5
    shrink it (by about 10% at the defaults, where many clients are near the ceiling); see
    :func:`_rupture_free_observed`. Returns the pooled within-client SD,
    sqrt(sum of within-client squares / (N - K)).
    """
    client, score = _rupture_free_observed(effects)
    n_clients = int(client.max()) + 1
    means = np.bincount(client, weights=score, minlength=n_clients) / np.bincount(client, minlength=n_clients)
    return float(math.sqrt(np.sum((score - means[client]) ** 2) / (len(score) - n_clients)))


def observed_change_sd(effects: SimulationEffects) -> float:
    """The SD of a session-to-session change of a client's observed WAI-SR score, for a client
    without a rupture: sqrt of the pooled mean squared successive difference (von Neumann et
    al., 1941), what the rupture detector's default yardstick (``sd_basis="client_change"``)
    estimates, and the dips' unit with ``rupture_depth_unit="observed_change"``. About 1.2
    times :func:`observed_within_sd` at the defaults (sqrt(2 (1 - r1)) with the observed
    lag-1 autocorrelation r1 near .3). Same simulated clients as :func:`observed_within_sd`.
    """
    client, score = _rupture_free_observed(effects)
    same = client[1:] == client[:-1]
    return float(math.sqrt(np.mean((score[1:][same] - score[:-1][same]) ** 2)))


RUPTURE_DEPTH_UNITS = ("latent", "observed", "observed_change")


def rupture_sd_unit(effects: SimulationEffects) -> float:
    """The SD in which injected dips are sized (``effects.rupture_depth_unit``): ``latent``,
    the SD of the latent AR(1) fluctuation; ``observed``, :func:`observed_within_sd`;
    ``observed_change``, :func:`observed_change_sd` (the default detector's yardstick)."""
    if effects.rupture_depth_unit == "observed_change":
        return observed_change_sd(effects)
    if effects.rupture_depth_unit == "observed":
        return observed_within_sd(effects)
    if effects.rupture_depth_unit == "latent":
        return effects.alliance_sd_within
    raise ValueError(f"rupture_depth_unit must be one of {RUPTURE_DEPTH_UNITS}, got {effects.rupture_depth_unit!r}")


def _draw_ruptures(rng: np.random.Generator, design: SimulationDesign, effects: SimulationEffects,
                   s: _Sessions) -> dict[str, np.ndarray]:
    """Rupture episodes: client, session, depth (in ``rupture_depth_unit`` SDs), repaired,
    sessions to repair.

    One episode in ``rupture_client_share`` (20%) of the clients with at least
    RUPTURE_MIN_SESSIONS sessions, at a session drawn uniformly from 3 to n - 3; depth uniform
    on ``rupture_depth_sd`` (2-3 SD); repaired with ``repair_probability`` (.6) within 1-3
    sessions, else a lasting partial dip. Where these come from: session-by-session
    self-reported alliance shows a rupture (a drop of >= 1-2 of the client's SDs) in about
    half of the clients once noise-level drops count too (46% of clients, McLaughlin et al.,
    2014; local rupture-repair patterns in 50% of cases, Stevens et al., 2007; counts vary
    several-fold with the criterion, Gumz et al., 2012), so the true share is below that: 20%
    with one episode each, at the conservative end. Post-session rupture questionnaires and
    observer coding find some rupture in a sizeable share of sessions, patients reporting
    fewer than therapists and observers (Eubanks, Muran & Safran, 2018); most are minor
    tensions that do not move a WAI total by 2 SD, which is what is injected here (about one
    episode per 70 sessions at the defaults). Depth: the
    rupture criteria define a rupture as a drop of at least 2 SD of the client's own
    variation (Stiles et al., 2004; Gumz et al., 2012, stricter criterion), so injected dips
    are 2-3 such SDs; to be the SD the detector uses, the unit must be ``observed_change``
    for the default detector. Repair: most ruptures found in session-by-session self-report
    are followed by a return (McLaughlin et al., 2014; Stiles et al., 2004, V-shape); the
    1-3 session return matches the detector's default repair window of 3 sessions.
    """
    eligible = np.flatnonzero(s.n_sessions >= RUPTURE_MIN_SESSIONS)
    k = int(round(design.rupture_client_share * len(eligible)))
    client = np.sort(rng.choice(eligible, size=k, replace=False))
    n = s.n_sessions[client]
    session = 3 + np.floor(rng.random(k) * (n - 5)).astype(np.int64)  # uniform on 3 .. n-3
    depth = rng.uniform(*effects.rupture_depth_sd, k)
    repaired = rng.random(k) < effects.repair_probability
    lo, hi = effects.sessions_to_repair
    to_repair = rng.integers(lo, hi + 1, k)
    return {"client": client, "session": session, "depth_sd": depth, "repaired": repaired,
            "sessions_to_repair": to_repair}


def _rupture_offsets(ruptures: dict[str, np.ndarray], effects: SimulationEffects, s: _Sessions) -> np.ndarray:
    """Dip in latent alliance of ``depth_sd`` observed within-client SDs
    (:func:`observed_within_sd`, the yardstick the detector uses): V-shaped return over
    ``sessions_to_repair`` when repaired, a lasting partial dip (``unrepaired_residual``) when not."""
    n_clients = len(s.n_sessions)
    at = np.full(n_clients, np.nan)
    depth = np.zeros(n_clients)
    repaired = np.zeros(n_clients, bool)
    span = np.ones(n_clients)
    c = ruptures["client"]
    at[c], depth[c] = ruptures["session"], ruptures["depth_sd"] * rupture_sd_unit(effects)
    repaired[c], span[c] = ruptures["repaired"], ruptures["sessions_to_repair"]
    j = s.session - at[s.client]  # sessions since the rupture; NaN for clients without one
    d, k = depth[s.client], span[s.client]
    with np.errstate(invalid="ignore"):
        v_shape = np.where((j >= 0) & (j < k), -d * (1 - j / k), 0.0)
        lasting = np.where(j == 0, -d, np.where(j > 0, -d * effects.unrepaired_residual, 0.0))
    return np.where(np.isnan(j), 0.0, np.where(repaired[s.client], v_shape, lasting))


def _latent_alliance(rngs: dict, design: SimulationDesign, effects: SimulationEffects, s: _Sessions,
                     therapist: np.ndarray,
                     feedback: np.ndarray | float = 0.0) -> tuple[np.ndarray, np.ndarray, dict, dict]:
    """Latent alliance per session, and the client's level at that session (trait + therapist
    part + growth: the latent alliance without fluctuation, rupture and feedback)."""
    rng = rngs["alliance"]
    trait = rng.normal(effects.alliance_mean, effects.alliance_sd_between, len(s.n_sessions))
    therapist_part = rng.normal(0.0, effects.alliance_sd_therapist, design.n_therapists)
    fluctuation = _ar1_fluctuations(rng, s, effects.alliance_ar1, effects.alliance_sd_within)
    ruptures = _draw_ruptures(rngs["ruptures"], design, effects, s)
    level = trait[s.client] + therapist_part[therapist] + effects.alliance_growth * (s.session - 1)
    latent = level + fluctuation + _rupture_offsets(ruptures, effects, s) + feedback
    realised = {"alliance_sd_between": float(np.std(trait, ddof=1)),
                "alliance_sd_therapist": float(np.std(therapist_part, ddof=1)) if design.n_therapists > 1 else 0.0}
    return latent, level, ruptures, realised


def _subscale_of_items() -> np.ndarray:
    index = np.empty(N_WAI, dtype=np.int64)
    for k, items in enumerate(WAI_SUBSCALES.values()):
        index[np.array(items) - 1] = k
    return index


def _ordinal_items(rng: np.random.Generator, latent: np.ndarray, item_offsets: np.ndarray, item_sd: float,
                   lo: int, hi: int, subscale_sd: float = 0.0) -> np.ndarray:
    """Graded responses: latent + item offset + subscale factor + item noise, cut at the
    midpoints between categories (equally spaced thresholds) and clipped to ``lo..hi``."""
    n, n_items = len(latent), len(item_offsets)
    continuous = latent[:, None] + item_offsets[None, :] + rng.normal(0.0, item_sd, (n, n_items))
    if subscale_sd > 0:
        continuous += rng.normal(0.0, subscale_sd, (n, len(WAI_SUBSCALES)))[:, _subscale_of_items()]
    return np.clip(np.rint(continuous), lo, hi)


def _mask_items(rng: np.random.Generator, items: np.ndarray, share: float) -> np.ndarray:
    """Missing items completely at random; every administration keeps at least one item."""
    missing = rng.random(items.shape) < share
    missing[missing.all(axis=1), 0] = False
    return np.where(missing, np.nan, items)


def _prorated_mean(items: np.ndarray) -> np.ndarray:
    answered = (~np.isnan(items)).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(answered > 0, np.nansum(items, axis=1) / answered, np.nan)


def _skipped(rng: np.random.Generator, s: _Sessions, share: float) -> np.ndarray:
    """Skipped administrations (completely at random); the intake administration is never skipped."""
    return (rng.random(len(s.client)) < share) & (s.session > 1)


# --------------------------------------------------------------------------- outcomes


def _split_total(rng: np.random.Generator, totals: np.ndarray, n_items: int, max_item: int,
                 log_weights: np.ndarray) -> np.ndarray:
    """Items in ``0..max_item`` summing to ``totals``: the total's points go to item "slots"
    (``max_item`` per item) drawn without replacement with item-specific weights (an
    exponential race, equivalent to Gumbel-top-k sampling), so items differ in endorsement and
    always sum to the total."""
    n, n_slots = len(totals), n_items * max_item
    t = totals.astype(np.int64)
    arrival = rng.standard_exponential((n, n_slots)) / np.exp(np.repeat(log_weights, max_item))
    last_in = np.sort(arrival, axis=1)[np.arange(n), np.maximum(t - 1, 0)]
    chosen = (arrival <= last_in[:, None]) & (t[:, None] > 0)
    tied = chosen.sum(axis=1) != t  # equal arrival times: practically never, but the sum must hold
    if tied.any():
        order = np.argsort(arrival[tied], axis=1, kind="stable")
        fixed = np.zeros((int(tied.sum()), n_slots), dtype=bool)
        np.put_along_axis(fixed, order, np.arange(n_slots)[None, :] < t[tied][:, None], axis=1)
        chosen[tied] = fixed
    slots = chosen.reshape(n, n_items, max_item)
    items = np.zeros((n, n_items))
    for k in range(max_item):  # max_item is 3 or 4: add the slot layers
        items += slots[:, :, k]
    return items


def _symptom_draws(rng: np.random.Generator, design: SimulationDesign, effects: SimulationEffects,
                   s: _Sessions) -> dict[str, np.ndarray]:
    """The outcome's random parts, drawn before the alliance so that symptom shocks can feed it."""
    draws = {"u_therapist": rng.normal(0.0, effects.sd_therapist, design.n_therapists),
             "u0": rng.normal(0.0, effects.sd_client_int, len(s.n_sessions)),
             "u1": rng.normal(0.0, effects.sd_client_slope, len(s.n_sessions)),
             "e": rng.normal(0.0, effects.sd_resid, len(s.client))}
    if effects.symptom_ar:
        # innovations of a stationary AR(1) with marginal SD sd_resid; session 1 keeps the full SD
        draws["e"] = np.where(s.session > 1, draws["e"] * math.sqrt(1 - effects.symptom_ar**2), draws["e"])
    return draws


def _sudden_gains(rng: np.random.Generator, effects: SimulationEffects, s: _Sessions) -> np.ndarray:
    """Per session row: minus the gain size at the gain session of the clients with an early
    sudden gain, 0 elsewhere (the shock; its level shift is its running sum)."""
    jump = np.zeros(len(s.client))
    if not (effects.sudden_gain_share and effects.sudden_gain_size):
        return jump
    n_clients = len(s.n_sessions)
    has_gain = rng.random(n_clients) < effects.sudden_gain_share
    at = rng.integers(effects.sudden_gain_sessions[0], effects.sudden_gain_sessions[1] + 1, n_clients)
    jump[has_gain[s.client] & (s.session == at[s.client])] = -effects.sudden_gain_size
    return jump


def _ar_within_client(values: np.ndarray, phi: float, s: _Sessions) -> np.ndarray:
    """d_t = phi*d_(t-1) + values_t within each client (d_1 = values_1); rows sorted by client, session."""
    if not phi:
        return values
    n_clients, width = len(s.n_sessions), int(s.n_sessions.max())
    grid = np.zeros((n_clients, width))
    grid[s.client, s.session - 1] = values
    return lfilter([1.0], [1.0, -phi], grid, axis=1)[s.client, s.session - 1]


def _symptom_latent(draws: dict[str, np.ndarray], design: SimulationDesign, effects: SimulationEffects,
                    s: _Sessions, therapist: np.ndarray, lagged_cw: np.ndarray, cm: np.ndarray,
                    jump: np.ndarray) -> tuple[np.ndarray, dict]:
    u_therapist, u0, u1, e = draws["u_therapist"], draws["u0"], draws["u1"], draws["e"]
    if has_dynamics(effects):
        y = (effects.b0 + effects.b_time * s.session + _symptom_deviation(draws, effects, s, lagged_cw, jump)
             + effects.b_between * cm + u_therapist[therapist] + u0[s.client] + u1[s.client] * s.session)
    else:  # the static model, summed in its original order so the bundled example stays byte-identical
        y = (effects.b0 + effects.b_time * s.session + effects.b_within * lagged_cw + effects.b_between * cm
             + u_therapist[therapist] + u0[s.client] + u1[s.client] * s.session + e)
    realised = {"sd_therapist": float(np.std(u_therapist, ddof=1)) if design.n_therapists > 1 else 0.0,
                "sd_client_int": float(np.std(u0, ddof=1)), "sd_client_slope": float(np.std(u1, ddof=1)),
                "sd_resid": float(np.std(e, ddof=1))}
    return y, realised


def has_dynamics(effects: SimulationEffects) -> bool:
    """Whether any session-to-session dynamics are on (symptom carry-over, feedback to the
    alliance, sudden gains); without them the generator is the static model, byte for byte."""
    return bool(effects.symptom_ar or effects.symptom_to_alliance
                or (effects.sudden_gain_share and effects.sudden_gain_size))


def _symptom_deviation(draws: dict[str, np.ndarray], effects: SimulationEffects, s: _Sessions,
                       lagged_cw: np.ndarray, jump: np.ndarray) -> np.ndarray:
    """d_t = symptom_ar*d_(t-1) + b_within*lagged_cw_t + e_t, plus the sudden-gain level shift:
    the symptoms' deviation from the client's trajectory (lagged_cw: A_lag minus the client's
    alliance level at that session, see DEFINITIONS["dynamics"])."""
    d = _ar_within_client(effects.b_within * lagged_cw + draws["e"], effects.symptom_ar, s)
    return d + _cumsum_within(jump, s) if jump.any() else d


def _symptom_feedback(effects: SimulationEffects, s: _Sessions, deviation: np.ndarray,
                      measurement: np.ndarray | None = None) -> np.ndarray | float:
    """Latent-alliance offset from the previous session's symptom deviation (reverse causation),
    carried by the alliance's own AR(1): f_t = alliance_ar1*f_(t-1) + symptom_to_alliance*d_(t-1)
    [+ alliance_ar1*m_(t-1) with ``measurement`` m = observed score - latent alliance, so that the
    observed score's deviation carries over too (alliance_carry "observed")]."""
    if not effects.symptom_to_alliance:
        return 0.0
    lag = s.lag_rows()
    previous = np.where(s.session > 1, deviation[lag], 0.0)
    innovation = effects.symptom_to_alliance * previous
    if measurement is not None:
        innovation = innovation + effects.alliance_ar1 * np.where(s.session > 1, measurement[lag], 0.0)
    return _ar_within_client(innovation, effects.alliance_ar1, s)


def _alliance_with_feedback(seed: int, rngs: dict, design: SimulationDesign, effects: SimulationEffects,
                            s: _Sessions, therapist: np.ndarray, draws: dict, jump: np.ndarray):
    """Latent and observed alliance; with symptom_to_alliance alliance and symptoms solved
    jointly, each pass from fresh copies of the alliance streams (the same draws every pass).

    The joint recursion is causal (session t depends on sessions < t only: the symptoms are
    centred on the client's alliance level, not on a mean over later sessions), so pass k
    leaves sessions 1..k final and at most max-sessions passes give the exact solution; the
    loop stops when a pass no longer changes the feedback."""
    feedback: np.ndarray | float = 0.0
    dynamic = has_dynamics(effects)
    for _ in range(int(s.n_sessions.max()) if effects.symptom_to_alliance else 1):
        fresh = _streams(seed)
        local = {k: fresh[k] for k in ("alliance", "ruptures", "wai", "missing")}
        latent, level, ruptures, realised = _latent_alliance(local, design, effects, s, therapist, feedback)
        observed = _observed_alliance(local["wai"], local["missing"], design, effects, s, latent,
                                      level if dynamic else None)
        if not effects.symptom_to_alliance:
            break
        measurement = observed[4] - latent if effects.alliance_carry == "observed" else None
        updated = _symptom_feedback(effects, s, _symptom_deviation(draws, effects, s, observed[1], jump), measurement)
        if np.array_equal(updated, feedback):
            break
        feedback = updated
    rngs.update(local)  # later components go on from the streams' state after the last pass
    return latent, ruptures, realised, observed


def _rounded_clipped(values: np.ndarray, hi: int) -> tuple[np.ndarray, float]:
    rounded = np.rint(values)
    clipped_share = float(np.mean((rounded < 0) | (rounded > hi))) if len(values) else 0.0
    return np.clip(rounded, 0, hi), clipped_share


def _observed_alliance(rng: np.random.Generator, missing_rng: np.random.Generator, design: SimulationDesign,
                       effects: SimulationEffects, s: _Sessions, latent: np.ndarray,
                       level: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, float, np.ndarray]:
    """WAI-SR items as exported, the within (lagged) and between predictors built from the
    observed score A exactly as ``truth.json`` defines them, the grand mean, and the score
    each administration has or would have had (mean of the answered items).

    Static model (``level`` None): centred on the client's mean of A over its scored sessions.
    With dynamics, ``level`` (the client's alliance level per session): the within predictor is
    A_lag minus the level at that session and the between predictor the level without growth
    minus alliance_mean, so that neither depends on later sessions (DEFINITIONS["dynamics"])."""
    offsets = rng.normal(0.0, effects.wai_item_offset_sd, N_WAI)
    answered = _mask_items(missing_rng, _ordinal_items(rng, latent, offsets, effects.wai_item_sd, 1, 5,
                                                       effects.wai_subscale_sd), design.item_missing_share)
    skipped = _skipped(missing_rng, s, design.skipped_administration_share)
    score_if_given = _prorated_mean(answered)
    # A is what the pipeline scores: skipped administrations and those with too many missing
    # items have no score and do not enter the client mean.
    unscored = skipped | (np.isnan(answered).sum(axis=1) > design.wai_max_missing_items)
    client_mean = s.client_mean(np.where(unscored, np.nan, score_if_given))
    grand_mean = float(np.nanmean(client_mean))
    # A client without any scored session (rare) cannot enter the pipeline's model; the
    # generator still needs a mean, so it falls back to the answered-item means.
    client_mean = np.where(np.isnan(client_mean), s.client_mean(score_if_given), client_mean)
    if level is None:
        cw = score_if_given[s.lag_rows()] - client_mean[s.client]
        cm = client_mean[s.client] - grand_mean
    else:
        cw = score_if_given[s.lag_rows()] - level[s.lag_rows()]
        cm = level - effects.alliance_growth * (s.session - 1) - effects.alliance_mean
    return np.where(skipped[:, None], np.nan, answered), cw, cm, grand_mean, score_if_given


def _symptom_forms(rngs: dict, design: SimulationDesign, effects: SimulationEffects, s: _Sessions,
                   y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    """PHQ-9, GAD-7 (every session) and OQ-45 (first and last session) items as exported."""
    rng, item_rng, missing_rng = rngs["outcome"], rngs["symptom_items"], rngs["missing"]
    phq_total, phq_clipped = _rounded_clipped(y, 27)
    gad_total, gad_clipped = _rounded_clipped(
        effects.gad_intercept + effects.gad_slope * y + rng.normal(0.0, effects.gad_sd_resid, len(y)), 21)
    oq_rows = np.flatnonzero((s.session == 1) | s.is_last)
    oq_total, oq_clipped = _rounded_clipped(
        effects.oq_intercept + effects.oq_slope * y[oq_rows] + rng.normal(0.0, effects.oq_sd_resid, len(oq_rows)), 180)

    weights = [item_rng.normal(0.0, effects.symptom_item_weight_sd, k) for k in (N_PHQ, N_GAD, N_OQ)]
    phq = _split_total(item_rng, phq_total, N_PHQ, PHQ_MAX_ITEM, weights[0])
    gad = _split_total(item_rng, gad_total, N_GAD, GAD_MAX_ITEM, weights[1])
    oq_answered = _split_total(item_rng, oq_total, N_OQ, OQ_MAX_ITEM, weights[2])
    reverse = np.array(OQ_REVERSE_KEYED) - 1
    oq_answered[:, reverse] = OQ_MAX_ITEM - oq_answered[:, reverse]  # positively worded items, answered as such

    share = design.skipped_administration_share
    phq = np.where(_skipped(missing_rng, s, share)[:, None], np.nan, _mask_items(missing_rng, phq, design.item_missing_share))
    gad = np.where(_skipped(missing_rng, s, share)[:, None], np.nan, _mask_items(missing_rng, gad, design.item_missing_share))
    oq_given = ~_skipped(missing_rng, s, share)[oq_rows]
    oq = np.full((len(s.client), N_OQ), np.nan)
    oq[oq_rows[oq_given]] = _mask_items(missing_rng, oq_answered[oq_given], design.item_missing_share)
    clipped = {"phq9_total": phq_clipped, "gad7_total": gad_clipped, "oq45_total": oq_clipped}
    return phq, gad, oq, clipped


# --------------------------------------------------------------------------- forms


def _item_frame(prefix: str, items: np.ndarray) -> dict[str, pd.arrays.IntegerArray]:
    mask = np.isnan(items)
    values = np.where(mask, 0, items).astype(np.int16)
    return {f"{prefix}{j + 1}": pd.arrays.IntegerArray(values[:, j], mask[:, j]) for j in range(items.shape[1])}


def _therapist_forms(rng: np.random.Generator, design: SimulationDesign, effects: SimulationEffects,
                     s: _Sessions, therapist: np.ndarray, latent: np.ndarray, missing_rng) -> tuple[np.ndarray, np.ndarray]:
    """Rows (session indices) and items of the therapist-rated short WAI."""
    given = np.isin(s.session, design.therapist_form_sessions) & ~_skipped(rng, s, design.skipped_administration_share)
    rows = np.flatnonzero(given)
    leniency = rng.normal(0.0, effects.therapist_form_sd_leniency, design.n_therapists)
    client_view = rng.normal(0.0, effects.therapist_form_sd_client, len(s.n_sessions))
    rated = (effects.therapist_form_mean + effects.therapist_form_loading * (latent[rows] - effects.alliance_mean)
             + leniency[therapist[rows]] + client_view[s.client[rows]]
             + rng.normal(0.0, effects.therapist_form_sd_session, len(rows)))
    offsets = rng.normal(0.0, effects.wai_item_offset_sd, N_WAI)
    items = _ordinal_items(rng, rated, offsets, effects.wai_item_sd, 1, 5, effects.wai_subscale_sd)
    return rows, _mask_items(missing_rng, items, design.item_missing_share)


def _observer_design(rng: np.random.Generator, design: SimulationDesign, s: _Sessions) -> tuple[np.ndarray, np.ndarray]:
    """Coded sessions and, per coded session, the coders who rated it (2-4 of the pool)."""
    n_coded_clients = int(round(design.observer_client_share * len(s.n_sessions)))
    coded_clients = np.zeros(len(s.n_sessions), bool)
    coded_clients[rng.choice(len(s.n_sessions), size=n_coded_clients, replace=False)] = True
    sessions = np.flatnonzero(coded_clients[s.client] & np.isin(s.session, design.observer_sessions))
    lo, hi = design.coders_per_session
    n_raters = rng.integers(lo, hi + 1, len(sessions))
    rank = np.argsort(rng.random((len(sessions), design.n_coders)), axis=1).argsort(axis=1)
    session_of_rating, coder = np.nonzero(rank < n_raters[:, None])
    return sessions[session_of_rating], coder


def _observer_ratings(rng: np.random.Generator, design: SimulationDesign, effects: SimulationEffects,
                      s: _Sessions, latent: np.ndarray, missing_rng) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    rows, coder = _observer_design(rng, design, s)
    standardised = (latent - latent.mean()) / latent.std()
    rho = effects.observer_corr_alliance
    true_score = effects.observer_mean + math.sqrt(effects.observer_var_target) * (
        rho * standardised + math.sqrt(1 - rho**2) * rng.normal(0.0, 1.0, len(latent)))
    leniency = rng.normal(0.0, math.sqrt(effects.observer_var_rater), design.n_coders)
    rating = true_score[rows] + leniency[coder] + rng.normal(0.0, math.sqrt(effects.observer_var_resid), len(rows))
    offsets = rng.normal(0.0, effects.wai_item_offset_sd, N_WAI)
    items = _ordinal_items(rng, rating, offsets, effects.observer_item_sd, 1, 7)
    coded = np.unique(rows)
    realised = {"target_variance": float(np.var(true_score[coded], ddof=1)) if len(coded) > 1 else 0.0,
                "coder_leniency": leniency}
    return rows, coder, _mask_items(missing_rng, items, design.item_missing_share), realised


# --------------------------------------------------------------------------- assembly


def simulate_study(design: SimulationDesign | None = None, effects: SimulationEffects | None = None,
                   seed: int = 20261129) -> Study:
    """Simulate one alliance–outcome study with known ground truth.

    Parameters
    ----------
    design : SimulationDesign, optional
        Sample sizes, session schedule, forms, observer design, missingness. Defaults give
        about 40 therapists, 400 clients and 5,000 client sessions.
    effects : SimulationEffects, optional
        Population parameters of the alliance and outcome models.
    seed : int
        Seed of ``numpy.random.SeedSequence``; the same seed gives the same study.

    Returns
    -------
    Study
        ``client_forms`` (one row per client session: ids, session, ``days_since_intake``,
        ``wai1..12``, ``phq1..9``, ``gad1..7``, ``oq1..45``), ``therapist_forms``
        (``twai1..12``), ``observer_ratings`` (``rater_id``, ``owai1..12``), ``clients``
        (``client_id``, ``arm``, ``gender``, ``age_band``) and ``truth`` (JSON-serialisable).
        Item columns are nullable ``Int16``.

    Raises
    ------
    ValueError
        A design or effect parameter is out of range (the message names it), or the seed is
        not a non-negative integer.

    Notes
    -----
    Outcome model (Falkenström et al., 2013; Curran & Bauer, 2011), on the PHQ-9 total before
    rounding and clipping to 0–27::

        y_t = b0 + b_time*t + b_within*(A_lag - Abar_i) + b_between*(Abar_i - mean_i Abar_i)
              + u_therapist + u0_i + u1_i*t + e_t

    with ``t`` the 1-based session number, ``A`` the observed WAI-SR score (mean of the
    answered items), ``A_lag`` the score at session t-1 (at session 1: session 1's own score),
    ``Abar_i`` the mean of client i's scored sessions (not skipped, at most
    ``wai_max_missing_items`` items missing), and the grand mean taken over clients
    (unweighted). When the lagged administration has no score, the mean of its answered items
    (or the items the client would have given) is used, so rows whose lag the pipeline cannot
    compute are missing completely at random. ``u_therapist`` is that of the session's
    therapist. ``truth["definitions"]`` states all of this in words. With session-to-session
    dynamics on (:func:`has_dynamics`), the symptoms are centred on the client's alliance level
    instead and the observed score's deviation from it follows the RI-CLPM's within-person model
    (``DEFINITIONS["dynamics"]``; tested in tests/test_simulate.py, recovery measured in
    benchmarks/dynamic_recovery.md).

    Examples
    --------
    >>> study = simulate_study(seed=1)
    >>> sorted(study.truth["effects"])[:3]
    ['alliance_ar1', 'alliance_growth', 'alliance_mean']
    """
    design = SimulationDesign() if design is None else design
    effects = SimulationEffects() if effects is None else effects
    _check_design(design)
    _check_effects(effects)
    seed = _check_seed(seed)
    rngs = _streams(seed)

    client_ids = _export_ids(rngs["ids"], "P", design.n_clients, 4)
    therapist_ids = _export_ids(rngs["ids"], "TH", design.n_therapists, 2)
    coder_ids = _coder_ids(design.n_coders)
    primary = _assign_caseloads(rngs["caseload"], design)
    s = _Sessions.from_counts(_draw_session_counts(rngs["sessions"], design))
    days = _days_since_intake(rngs["days"], s)
    therapist, switches = _switch_therapists(rngs["switches"], design, s, primary)

    draws = _symptom_draws(rngs["outcome"], design, effects, s)
    jump = _sudden_gains(rngs["dynamics"], effects, s)
    latent, ruptures, realised_alliance, observed = _alliance_with_feedback(seed, rngs, design, effects, s,
                                                                            therapist, draws, jump)
    wai, cw, cm, grand_mean, _ = observed
    y, realised_outcome = _symptom_latent(draws, design, effects, s, therapist, cw, cm, jump)
    phq, gad, oq, clipped = _symptom_forms(rngs, design, effects, s, y)

    ids = {"client_id": client_ids[s.client], "therapist_id": therapist_ids[therapist]}
    client_forms = pd.DataFrame({**ids, "session": s.session, "days_since_intake": days,
                                 **_item_frame("wai", wai), **_item_frame("phq", phq),
                                 **_item_frame("gad", gad), **_item_frame("oq", oq)})

    tf_rows, twai = _therapist_forms(rngs["therapist_forms"], design, effects, s, therapist, latent, rngs["missing"])
    therapist_forms = pd.DataFrame({
        "client_id": client_ids[s.client[tf_rows]], "therapist_id": therapist_ids[therapist[tf_rows]],
        "session": s.session[tf_rows], "days_since_intake": days[tf_rows], **_item_frame("twai", twai)})

    ob_rows, coder, owai, realised_observer = _observer_ratings(rngs["observers"], design, effects, s, latent,
                                                                rngs["missing"])
    observer_ratings = pd.DataFrame({
        "client_id": client_ids[s.client[ob_rows]], "therapist_id": therapist_ids[therapist[ob_rows]],
        "session": s.session[ob_rows], "rater_id": coder_ids[coder], **_item_frame("owai", owai)})

    clients = _clients_table(rngs["clients"], design, client_ids)
    tables = {"client_forms": client_forms, "therapist_forms": therapist_forms,
              "observer_ratings": observer_ratings, "clients": clients}
    # Already in order by construction: clients by sorted id, sessions ascending, coders by id.

    truth = _truth(seed, design, effects, client_ids, therapist_ids, coder_ids, ruptures, switches,
                   realised_observer, tables, {
                       **realised_alliance, **realised_outcome,
                       "grand_mean_client_alliance": grand_mean,
                       "clipped_share": clipped,
                   })
    return Study(**tables, truth=truth)


def _clients_table(rng: np.random.Generator, design: SimulationDesign, client_ids: np.ndarray) -> pd.DataFrame:
    n = design.n_clients
    arm = np.array(design.arms, dtype=object)[rng.permutation(np.arange(n) % 2)]  # balanced randomisation
    return pd.DataFrame({
        "client_id": client_ids,
        "arm": arm,
        "gender": np.array(GENDERS, dtype=object)[rng.choice(len(GENDERS), n, p=GENDER_SHARES)],
        "age_band": np.array(AGE_BANDS, dtype=object)[rng.choice(len(AGE_BANDS), n, p=AGE_BAND_SHARES)],
    })


DEFINITIONS = {
    "outcome_model": ("phq9_total_latent = b0 + b_time*session + b_within*(A_lag - A_client_mean) "
                      "+ b_between*(A_client_mean - A_grand_mean) + u_therapist + u0_client + u1_client*session + e; "
                      "phq9_total = clip(round(phq9_total_latent), 0, 27), split into 9 items (0-3) summing to it"),
    "dynamics": ("with any dynamics on (symptom_ar, symptom_to_alliance or an early sudden gain != 0; has_dynamics) "
                 "the outcome is b0 + b_time*session + D_t + b_between*(L_client - alliance_mean) + u_therapist + u0_client "
                 "+ u1_client*session, where L_t = client trait + therapist part + alliance_growth*(t-1) is the client's "
                 "alliance level at session t (the latent alliance without AR(1) fluctuation, rupture and feedback; "
                 "L_client = L_t - alliance_growth*(t-1)) and D_t = d_t + sudden-gain level shift with "
                 "d_t = symptom_ar*d_(t-1) + b_within*(A_lag - L_lag) + e_t (L_lag: L at the lagged session; d_1 its "
                 "session-1 terms; e_t innovations of SD sd_resid*sqrt(1 - symptom_ar^2) from session 2). Centring on "
                 "the level, not on A_client_mean (a mean over later sessions, which the feedback has moved), keeps every "
                 "session's terms free of later sessions. symptom_to_alliance adds f_t = alliance_ar1*f_(t-1) + "
                 "symptom_to_alliance*D_(t-1) [+ alliance_ar1*m_(t-1) when alliance_carry is 'observed'] to the latent "
                 "alliance, with m_t = A_t - latent alliance_t (A_t the mean of the answered items, for a skipped "
                 "administration of the items the client would have given): alliance and symptoms are solved jointly, "
                 "exactly (the recursion is causal; pass k fixes session k). With alliance_carry 'observed' the observed "
                 "score's deviation from the level, W_t = A_t - L_t, follows W_t = alliance_ar1*W_(t-1) + "
                 "symptom_to_alliance*D_(t-1) + (fluctuation innovation + m_t), plus rupture offsets: with sudden gains "
                 "and ruptures off this is the within-person model of the RI-CLPM (alliance.models.dynamic) with "
                 "alliance_to_outcome = b_within, ar_outcome = symptom_ar, ar_alliance = alliance_ar1, "
                 "outcome_to_alliance = symptom_to_alliance, per point of the mean score A (per point of the 12-60 "
                 "total: alliance_to_outcome = b_within/12, outcome_to_alliance = 12*symptom_to_alliance), up to "
                 "PHQ-9 rounding and clipping. With 'latent' only the latent alliance carries over and m_t is "
                 "measurement error that does not: W_t is then ARMA(1,1), outside the RI-CLPM's class (b_within keeps "
                 "its meaning, the effect of A at t-1 on y_t holding y_(t-1) fixed). An early sudden gain (share "
                 "sudden_gain_share of clients, at a session uniform in sudden_gain_sessions) lowers y by "
                 "sudden_gain_size from that session on (a lasting level shift, outside every stationary model). "
                 "All 0 by default: the static model above, with the observed-mean centring"),
    "session": "1-based session number, uncentred (time = session)",
    "A": ("observed WAI-SR score: mean of the answered items wai1..wai12 (1-5 scale) when at most "
          "design.wai_max_missing_items items are missing, else no score. Effects are per point of this mean; "
          "per point of the 12-60 total (= 12 * mean) divide them by 12 (see per_wai_total_point)"),
    "A_lag": ("A at session t-1; at session 1, A at session 1. If A at t-1 has no score (skipped, or too many missing "
              "items), the mean of the answered items (or, when skipped, of the items the client would have given) "
              "was used; that row's lag is missing in the data, completely at random"),
    "A_client_mean": ("mean of A over the client's sessions with a score, all sessions including the last (a client "
                      "with no scored session, rare, gets the mean of its answered-item means and has no A in the data)"),
    "A_grand_mean": ("unweighted mean of A_client_mean over the clients with a scored session (realised value in "
                     "realised.grand_mean_client_alliance)"),
    "u_therapist": "random intercept of the therapist who held that session (differs after a therapist switch)",
    "alliance_latent": ("client trait + therapist part + alliance_growth*(session-1) + AR(1) fluctuation "
                        "(stationary SD alliance_sd_within) + rupture offset"),
    "wai_items": ("round(alliance_latent + item offset + subscale factor (SD wai_subscale_sd, per session and subscale) "
                  "+ item noise (SD wai_item_sd)), clipped to 1-5; subscales Task 1,2,10,12; Bond 3,5,7,9; Goal 4,6,8,11"),
    "rupture": ("latent dip of depth_sd*rupture_sd_unit at the rupture session (rupture_sd_unit by "
                "rupture_depth_unit: latent = alliance_sd_within; observed = the pooled within-client SD, "
                "observed_change = the root mean squared successive difference, of the observed WAI-SR mean of "
                "rupture-free clients simulated with this item model: the yardsticks of the detector's sd_basis "
                "client and client_change); repaired: V-shaped linear return to "
                "the no-rupture trajectory, reached at repair_session = rupture_session + sessions_to_repair; "
                "not repaired: the dip persists at unrepaired_residual of its depth for the rest of treatment"),
    "gad7_total": "clip(round(gad_intercept + gad_slope*phq9_total_latent + N(0, gad_sd_resid)), 0, 21), split into 7 items (0-3)",
    "oq45_total": ("clip(round(oq_intercept + oq_slope*phq9_total_latent + N(0, oq_sd_resid)), 0, 180) at session 1 and "
                   "the last session, split into 45 scored items (0-4); reverse-keyed items are stored reversed "
                   "(raw = 4 - scored), so scoring with reversal gives the total"),
    "therapist_form": ("twai items from therapist_form_mean + therapist_form_loading*(alliance_latent - alliance_mean) "
                       "+ therapist leniency + client-specific view + session noise, same item model as the WAI-SR"),
    "observer_rating": ("mean of owai1..owai12 = true score of the session (variance observer_var_target; correlation "
                        "observer_corr_alliance with the standardised latent alliance) + coder leniency (observer_var_rater) "
                        "+ residual (observer_var_resid) + item noise and rounding"),
    "clipping": ("rounding and clipping PHQ-9/GAD-7/OQ-45 totals to their ranges attenuates regression estimates "
                 "slightly (about 1-2% for b_within and b_time at the defaults); realised.clipped_share gives the "
                 "share of clipped administrations"),
    "missing": ("items missing completely at random (item_missing_share); whole administrations skipped completely at "
                "random from session 2 on (skipped_administration_share, per instrument)"),
}


def _observer_truth(effects: SimulationEffects, coder_ids: np.ndarray, realised: dict) -> dict:
    # Item noise and rounding (variance ~1/12 per item) add to the residual of the item mean.
    resid_observed = effects.observer_var_resid + (effects.observer_item_sd**2 + 1 / 12) / N_WAI
    target, rater = effects.observer_var_target, effects.observer_var_rater
    leniency = realised["coder_leniency"]
    return {
        "scale": "mean of owai1..owai12 (1-7); for the sum of the items multiply variances by 144",
        "variance_components": {"target": target, "rater": rater, "residual": effects.observer_var_resid},
        "residual_on_observed_mean": resid_observed,
        "icc_agreement_single": target / (target + rater + resid_observed),
        "icc_consistency_single": target / (target + resid_observed),
        "coder_leniency": {str(c): float(v) for c, v in zip(coder_ids, leniency)},
        "realised": {"target_variance": realised["target_variance"],
                     "rater_variance": float(np.var(leniency, ddof=1)) if len(leniency) > 1 else 0.0},
    }


def _truth(seed, design, effects, client_ids, therapist_ids, coder_ids, ruptures, switches, realised_observer,
           tables, realised) -> dict:
    episodes = [
        {"client_id": str(client_ids[c]), "rupture_session": int(r), "depth_sd": float(d),
         "depth_points": float(d * rupture_sd_unit(effects)), "repaired": bool(ok),
         "sessions_to_repair": int(k) if ok else None, "repair_session": int(r + k) if ok else None}
        for c, r, d, ok, k in zip(ruptures["client"], ruptures["session"], ruptures["depth_sd"],
                                  ruptures["repaired"], ruptures["sessions_to_repair"])
    ]
    moves = [{"client_id": str(client_ids[c]), "from_therapist_id": str(therapist_ids[a]),
              "to_therapist_id": str(therapist_ids[b]), "first_session_with_new_therapist": first}
             for c, a, b, first in switches]
    cf = tables["client_forms"]
    counts = {"therapists": int(cf["therapist_id"].nunique()), "clients": int(cf["client_id"].nunique()),
              "client_sessions": len(cf), "therapist_forms": len(tables["therapist_forms"]),
              "observer_ratings": len(tables["observer_ratings"]),
              "observer_coded_sessions": int(len(tables["observer_ratings"][["client_id", "session"]].drop_duplicates()))}
    return {
        "generator": {"package": "alliance", "version": __version__, "function": "alliance.simulate.simulate_study"},
        "seed": seed,
        "design": _plain(asdict(design)),
        "effects": _plain(asdict(effects)),
        "definitions": DEFINITIONS,
        "instruments": {
            "wai_sr_client": {"columns": "wai1..wai12", "range": [1, 5], "subscales": _plain(WAI_SUBSCALES)},
            "wai_therapist": {"columns": "twai1..twai12", "range": [1, 5], "subscales": _plain(WAI_SUBSCALES)},
            "wai_observer": {"columns": "owai1..owai12", "range": [1, 7]},
            "phq9": {"columns": "phq1..phq9", "range": [0, 3]},
            "gad7": {"columns": "gad1..gad7", "range": [0, 3]},
            "oq45": {"columns": "oq1..oq45", "range": [0, 4], "reverse_keyed": list(OQ_REVERSE_KEYED),
                     "sessions": "first and last session of each client"},
        },
        "observer": _observer_truth(effects, coder_ids, realised_observer),
        "ruptures": episodes,
        "rupture_sd_unit": rupture_sd_unit(effects),
        "therapist_switches": moves,
        "counts": counts,
        "per_wai_total_point": {name: getattr(effects, name) / N_WAI for name in ("b_within", "b_between")},
        "realised": _plain(realised),
    }


def _plain(value):
    """Tuples, numpy scalars and arrays as JSON-ready Python values."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


# --------------------------------------------------------------------------- writing


def write_study(study: Study, outdir: str | Path, fmt: str = "csv") -> dict[str, Path]:
    """Write a simulated study: four tables, ``truth.json`` and a ``README.md``.

    Parameters
    ----------
    study : Study
        As returned by :func:`simulate_study`.
    outdir : str or Path
        Directory to write into (created if missing); existing files of the same names are
        replaced.
    fmt : {"csv", "parquet"}
        Table format. CSV is UTF-8 with ``\\n`` line endings, missing items as empty cells.

    Returns
    -------
    dict of str to Path
        The files written, by table name (plus ``truth`` and ``readme``).

    Notes
    -----
    Rows are sorted by client, session and rater, JSON keys are sorted and floats written in
    full precision, so the same study gives byte-identical files.
    """
    if fmt not in FORMATS:
        raise ValueError(f"fmt = {fmt!r}; expected one of {', '.join(FORMATS)}")
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    writer = write_csv if fmt == "csv" else write_parquet
    written = {}
    for name in TABLES:
        path = outdir / f"{name}.{fmt}"
        writer(getattr(study, name), path)
        written[name] = path
    written["truth"] = outdir / "truth.json"
    write_json(study.truth, written["truth"])
    written["readme"] = outdir / "README.md"
    written["readme"].write_text(_readme(study.truth, fmt), encoding="utf-8", newline="\n")
    return written


def _readme(truth: dict, fmt: str) -> str:
    c, d = truth["counts"], truth["design"]
    return f"""# Simulated alliance–outcome study (seed {truth['seed']})

Generated by `alliance.simulate.simulate_study` (alliance {truth['generator']['version']}); every value
is synthetic. {c['therapists']} therapists, {c['clients']} clients, {c['client_sessions']} client sessions,
{c['therapist_forms']} therapist forms, {c['observer_ratings']} observer ratings of {c['observer_coded_sessions']} sessions.
The same seed and version give byte-identical files.

| file | one row per | columns |
| --- | --- | --- |
| `client_forms.{fmt}` | client session | `client_id`, `therapist_id`, `session` (1..n), `days_since_intake`, `wai1`..`wai12` (WAI-SR, 1-5), `phq1`..`phq9` (0-3), `gad1`..`gad7` (0-3), `oq1`..`oq45` (OQ-45, 0-4, first and last session only) |
| `therapist_forms.{fmt}` | therapist form | `client_id`, `therapist_id`, `session`, `days_since_intake`, `twai1`..`twai12` (therapist-rated short WAI, 1-5; sessions {', '.join(map(str, d['therapist_form_sessions']))}) |
| `observer_ratings.{fmt}` | coder x coded session | `client_id`, `therapist_id`, `session`, `rater_id`, `owai1`..`owai12` (observer WAI, 1-7); {d['n_coders']} coders, {d['coders_per_session'][0]}-{d['coders_per_session'][1]} per session (incomplete design) |
| `clients.{fmt}` | client | `client_id`, `arm`, `gender`, `age_band` |
| `truth.json` | - | generating parameters, model definitions, rupture episodes, therapist switches, observer variance components |

- WAI subscales (client and therapist forms): Task 1, 2, 10, 12; Bond 3, 5, 7, 9; Goal 4, 6, 8, 11.
- OQ-45 items 1, 12, 13, 20, 21, 24, 31, 37, 43 are reverse-keyed and stored as answered (score them as 4 - x).
- Missing items and skipped administrations are empty cells. Sessions are numbered from 1 per client;
  there are no dates, names or free text.
- {len(truth['therapist_switches'])} client(s) change therapist during treatment (their later sessions carry
  another `therapist_id`); they are listed in `truth.json` under `therapist_switches`.
"""

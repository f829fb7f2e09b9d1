"""Cohort questionnaires and the health-coaching trial within the cohort.

Outcomes come from latent traits; each programme component shifts the latent item-scale means.
All noise (item noise, missingness, response) is drawn once and shared by the observed world and
the counterfactual variants (no MDG, no coaching, no community assets), so realised effects on the
scored outcomes are exact differences on the same people.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sicp.contract import SOURCES
from sicp.synth.events import sigmoid

VALUE_SET = Path(__file__).resolve().parents[2] / "dbt" / "seeds" / "eq5d_5l_england_value_set.csv"
EQ_DIMS = ("mobility", "selfcare", "activities", "pain", "anxiety")
#: Highest item level of each multi-item scale (all start at 1).
TOP = {"pacic": 5, "selfman": 4, "wellbeing": 4, "lonely": 3}
#: Variants: which components act (mdg, coaching, assets).
VARIANTS = {"obs": (1, 1, 1), "no_mdg": (0, 1, 1), "no_coaching": (1, 0, 1), "no_assets": (1, 1, 0)}

SCORING_RULES = {
    "eq5d_index": "1 - sum of the England EQ-5D-5L decrements (dbt seed "
    "eq5d_5l_england_value_set) over the five dimensions; null if any is missing",
    "pacic": "mean of answered pacic_01..11 items when at least 6 are answered, else null",
    "selfman": "(mean of answered selfman_01..06 items - 1) / 3 * 100 when at least 4 are "
    "answered, else null (0-100)",
    "wellbeing": "mean of answered wellbeing_01..05 items when at least 3 are answered, else null",
    "lonely": "sum of lonely_01..03 (3-9); null if any item is missing",
    "missing": "item codes -9, -8, -7 are missing (SPSS user-missing)",
}


def _discretise(latent: np.ndarray, noise: np.ndarray, low: int, high: int) -> np.ndarray:
    return np.clip(np.round(latent[:, None] + noise), low, high).astype(int)


def score_frame(
    items: dict[str, np.ndarray], missing: dict[str, np.ndarray], value_set: pd.DataFrame
) -> pd.DataFrame:
    """Scored outcomes from item matrices (NaN where missing) by the rules in SCORING_RULES."""
    out = {}
    dec = np.zeros(len(items["pacic"]))
    any_missing = np.zeros(len(dec), bool)
    for j, dim in enumerate(EQ_DIMS):
        table = value_set[value_set["dimension"] == dim].set_index("level")["decrement"]
        level = items["eq"][:, j]
        dec += table.reindex(np.clip(level, 1, 5)).to_numpy()
        any_missing |= missing["eq"][:, j]
    out["eq5d_index"] = np.where(any_missing, np.nan, 1 - dec)

    def mean_rule(name: str, k_min: int) -> np.ndarray:
        x = np.where(missing[name], np.nan, items[name]).astype(float)
        answered = (~missing[name]).sum(axis=1)
        with np.errstate(invalid="ignore"):
            mean = np.nanmean(np.where(answered[:, None] > 0, x, 0.0), axis=1)
        return np.where(answered >= k_min, mean, np.nan)

    out["pacic"] = mean_rule("pacic", 6)
    out["selfman"] = (mean_rule("selfman", 4) - 1) / 3 * 100
    out["wellbeing"] = mean_rule("wellbeing", 3)
    out["lonely"] = np.where(missing["lonely"].any(axis=1), np.nan, items["lonely"].sum(axis=1))
    return pd.DataFrame(out)


@dataclass
class SurveyOutput:
    """Returned questionnaires, the trial files, the trial arms (with internals) and effects."""

    waves: pd.DataFrame
    randomisation: pd.DataFrame
    uptake: pd.DataFrame
    arms: pd.DataFrame
    effects: dict[str, Any]


def simulate_surveys(
    members: pd.DataFrame,
    skeleton: pd.DataFrame,
    dose: np.ndarray,
    scn: dict[str, Any],
    rng: np.random.Generator,
) -> SurveyOutput:
    """Questionnaires, randomisation and uptake, and the realised survey/trial effects.

    ``skeleton`` has one row per (member, wave) a questionnaire could come back; ``dose`` is
    the community-asset dose at each of those rows (GBP 10,000 per 1,000 aged 65+).
    """
    co, tw, eff = scn["cohort"], scn["twic"], scn["effects"]
    sk = skeleton.reset_index(drop=True)
    n = len(sk)
    z, act = sk["z"].to_numpy(), sk["activation"].to_numpy()
    person_re = members.set_index("person_id")
    h_person = -0.7 * person_re["z"] + rng.normal(0, 0.5, len(person_re))
    care_person = pd.Series(rng.normal(0, 1, len(person_re)), index=person_re.index)
    hp = h_person.reindex(sk["person_id"]).to_numpy()
    care = care_person.reindex(sk["person_id"]).to_numpy()
    wave = sk["wave"].to_numpy()
    respond = rng.random(n) < sigmoid(
        co["response_intercept"]
        - co["response_decline_per_wave"] * (wave - 1)
        - 0.5 * z
        + 0.2 * act
    )
    # ---- trial within the cohort: randomised shortly after the baseline wave
    arms = _randomise(members, sk[respond], tw, rng)
    accept_p = sigmoid(
        tw["acceptance_intercept"]
        + tw["acceptance_activation"]
        * (arms["activation"] - members["activation"].mean())
        / members["activation"].std()
    )
    arms["accepted"] = ((arms["arm"] == "offer") & (rng.random(len(arms)) < accept_p)).astype(int)
    arms["sessions_completed"] = np.where(
        arms["accepted"] == 1, 1 + rng.binomial(11, 0.6, len(arms)), 0
    )
    acc = arms.set_index("person_id")
    rand_day = acc["randomised_on"].reindex(sk["person_id"]).to_numpy()
    coached = (acc["accepted"].reindex(sk["person_id"]).fillna(0).to_numpy() == 1) & (
        sk["returned_on"].to_numpy() > rand_day + np.timedelta64(60, "D")
    )
    exposed = sk["exposed"].to_numpy().astype(float)
    # ---- latent outcomes and shared noise
    health0 = hp - 0.02 * (sk["age"].to_numpy() - 75) + rng.normal(0, 0.35, n)
    eq_shift = np.array([0.3, -0.4, 0.2, 0.5, -0.1])
    eq_noise = rng.normal(0, 0.6, (n, 5))
    ms = eff["mdg_survey"]
    assets = eff["assets_per_10k"]
    coach_sm = eff["coaching_selfman_points"] * 3 / 100
    noises = {
        name: rng.normal(0, sd, (n, k))
        for name, k, sd in (
            ("pacic", 11, 0.9),
            ("selfman", 6, 0.55),
            ("wellbeing", 5, 0.6),
            ("lonely", 3, 0.5),
        )
    }
    single = rng.normal(0, 1, (n, 3))
    u_plan = rng.random(n)
    vas_noise = rng.normal(0, 8, n)
    variants: dict[str, dict[str, np.ndarray]] = {}
    for name, (m, c, a) in VARIANTS.items():
        h = (
            health0
            + m * exposed * ms["eq5d_health"]
            + c * coached * eff["coaching_eq5d_health"]
            + a * dose * assets["eq5d_health"]
        )
        lat = {
            "pacic": 2.7 + 0.35 * care + m * exposed * ms["pacic"],
            "selfman": 2.5
            + 0.45 * act
            + 0.1 * h
            + m * exposed * ms["selfman"]
            + c * coached * coach_sm,
            "wellbeing": 2.8
            + 0.35 * h
            - 0.15 * sk["lonely_trait"].to_numpy()
            + m * exposed * ms["wellbeing"]
            + a * dose * assets["wellbeing"],
            "lonely": 1.8
            + 0.35 * sk["lonely_trait"].to_numpy()
            - 0.1 * h
            + m * exposed * ms["lonely"]
            + a * dose * assets["lonely"],
        }
        its = {k: _discretise(lat[k], noises[k], 1, TOP[k]) for k in lat}
        eq = np.round(2.0 + eq_shift - 0.9 * h[:, None] + eq_noise)
        its["eq"] = np.clip(eq, 1, 5).astype(int)
        its["eq_vas"] = np.clip(np.round(68 + 12 * h + vas_noise), 0, 100).astype(int)
        its["satisfied_care"] = np.clip(
            np.round(3.6 + 0.3 * care + m * exposed * ms["satisfied_care"] + 0.8 * single[:, 0]),
            1,
            5,
        ).astype(int)
        its["supported_selfcare"] = np.clip(
            np.round(2.7 + 0.3 * act + m * exposed * ms["supported_selfcare"] + 0.7 * single[:, 1]),
            1,
            4,
        ).astype(int)
        its["has_care_plan"] = (
            u_plan
            < sigmoid(
                -1.2 + 1.5 * sk["taken_on"].to_numpy() + m * exposed * ms["has_care_plan_log_odds"]
            )
        ).astype(int)
        variants[name] = its
    # ---- item non-response, shared by every variant
    p_miss = np.minimum(co["item_missing"] * np.exp(0.3 * z), 0.5)
    miss = {
        k: rng.random(v.shape) < p_miss.reshape((-1,) + (1,) * (v.ndim - 1))
        for k, v in variants["obs"].items()
    }
    miss["pacic"] |= (sk["gp_visits_6m"].to_numpy() == 0)[:, None]  # not applicable
    value_set = pd.read_csv(VALUE_SET)
    scores = {name: score_frame(v, miss, value_set) for name, v in variants.items()}
    mode = np.where(rng.random(n) < 0.15, 2, np.where(rng.random(n) < 0.06 + 0.04 * (z > 1), 3, 1))
    frame = _wave_frame(sk, variants["obs"], miss, mode, rng)
    keep = respond
    effects = _survey_effects(sk, scores, keep, exposed, dose, coached, arms, tw)
    uptake = arms.loc[arms["arm"] == "offer", ["person_id", "accepted", "sessions_completed"]]
    randomisation = arms[["person_id", "randomised_on", "stratum", "arm"]]
    return SurveyOutput(frame[keep].reset_index(drop=True), randomisation, uptake, arms, effects)


def _randomise(
    members: pd.DataFrame, responders: pd.DataFrame, tw: dict[str, Any], rng: np.random.Generator
) -> pd.DataFrame:
    """Permuted blocks of four within strata (neighbourhood group x long-term conditions).

    The neighbourhood groups are the scenario's ``twic.neighbourhood_groups``
    (``{group: [neighbourhood, ...]}``), which must place every member's neighbourhood."""
    base = responders[responders["wave"] == tw["baseline_wave"]][["person_id", "returned_on"]]
    m = members.merge(base, on="person_id")
    d0, d1 = np.datetime64(tw["randomise_from"], "D"), np.datetime64(tw["randomise_to"], "D")
    m["randomised_on"] = d0 + np.floor(rng.random(len(m)) * ((d1 - d0).astype(int) + 1)).astype(
        "timedelta64[D]"
    )
    ok = (m["consent_trials"] == 1) & (m["returned_on"] < m["randomised_on"])
    ok &= m["died_on"].isna() | (m["died_on"] > m["randomised_on"])
    ok &= m["withdrawn_on"].isna() | (m["withdrawn_on"] > m["randomised_on"])
    elig = m[ok].sort_values("person_id").reset_index(drop=True)
    pick = np.sort(rng.choice(len(elig), min(int(tw["n"]), len(elig)), replace=False))
    arms = elig.iloc[pick].copy()
    groups = {hood: str(g) for g, hoods in tw["neighbourhood_groups"].items() for hood in hoods}
    unplaced = sorted(set(members["neighbourhood"]) - set(groups))
    if unplaced:
        raise ValueError("scenario twic.neighbourhood_groups does not place " + ", ".join(unplaced))
    group = arms["neighbourhood"].map(groups).to_numpy()
    ltc = np.where(arms["n_ltc"] >= 3, "ltc3plus", "ltc1to2")
    arms["stratum"] = [f"{g}|{x}" for g, x in zip(group, ltc, strict=True)]
    arms["arm"] = ""
    for _, idx in arms.groupby("stratum").groups.items():
        order = rng.permutation(np.asarray(idx))
        blocks = np.concatenate(
            [
                rng.permutation(["offer", "offer", "control", "control"])
                for _ in range(len(order) // 4 + 1)
            ]
        )
        arms.loc[order, "arm"] = blocks[: len(order)]
    return arms.sort_values("person_id").reset_index(drop=True)


def _wave_frame(
    sk: pd.DataFrame,
    items: dict[str, np.ndarray],
    miss: dict[str, np.ndarray],
    mode: np.ndarray,
    rng: np.random.Generator,
) -> pd.DataFrame:
    """Questionnaire rows in the contract's column order, with -9/-8/-7 codes for missing."""
    n = len(sk)
    cols: dict[str, Any] = {
        "person_id": sk["person_id"].to_numpy(),
        "wave": sk["wave"],
        "returned_on": sk["returned_on"].to_numpy(),
        "mode": mode,
    }
    unreadable = (mode == 1) & (rng.random(n) < 0.15)

    def coded(values: np.ndarray, missing: np.ndarray, code: int = -9) -> np.ndarray:
        u = unreadable.reshape((-1,) + (1,) * (values.ndim - 1))
        return np.where(missing, np.where(u, -7, code), values)

    eq = coded(items["eq"], miss["eq"])
    for j, dim in enumerate(EQ_DIMS):
        cols[f"eq_{dim}"] = eq[:, j]
    cols["eq_vas"] = coded(items["eq_vas"], miss["eq_vas"])
    not_applicable = (sk["gp_visits_6m"].to_numpy() == 0)[:, None]
    pacic = coded(items["pacic"], miss["pacic"])
    pacic = np.where(not_applicable, -8, pacic)
    for prefix, mat in (
        ("pacic", pacic),
        ("selfman", coded(items["selfman"], miss["selfman"])),
        ("wellbeing", coded(items["wellbeing"], miss["wellbeing"])),
        ("lonely", coded(items["lonely"], miss["lonely"])),
    ):
        for j in range(mat.shape[1]):
            cols[f"{prefix}_{j + 1:02d}"] = mat[:, j]
    for name in ("satisfied_care", "supported_selfcare", "has_care_plan"):
        cols[name] = coded(items[name], miss[name])
    recall = np.exp(rng.normal(0, 0.25, (n, 3)))
    for j, name in enumerate(("gp_visits_6m", "ae_visits_6m", "nights_in_hospital_6m")):
        value = np.round(sk[name].to_numpy() * recall[:, j]).astype(int)
        cols[name] = np.where(rng.random(n) < 0.03, -9, value)
    return pd.DataFrame(cols)[list(SOURCES["survey_wave"].column_names)]


def _within_slope(
    effect: np.ndarray, dose: np.ndarray, person: np.ndarray, wave: np.ndarray
) -> tuple[float, int]:
    """The person + wave fixed-effects slope of realised individual effects on dose, over
    people with two or more person-waves, and how many person-waves it uses.

    Why this and not a slope through the origin: scores are coarse and bounded, so individual
    effects are not proportional to dose, and a two-way fixed-effects dose-response estimator
    targets this within-person, within-wave weighting of them (the realised analogue of its
    estimand, as a realised ATT is for a binary treatment). Exact by Frisch-Waugh: demean by
    person, then partial out the person-demeaned wave dummies."""
    frame = pd.DataFrame({"person": person, "wave": wave})
    multi = (frame.groupby("person")["person"].transform("size") >= 2).to_numpy()
    if not multi.any() or np.ptp(dose[multi]) == 0:
        return 0.0, int(multi.sum())
    frame = frame[multi]
    columns = np.column_stack(
        [effect[multi], dose[multi], pd.get_dummies(frame["wave"], drop_first=True, dtype=float)]
    )
    demeaned = (
        columns
        - pd.DataFrame(columns).groupby(frame["person"].to_numpy()).transform("mean").to_numpy()
    )
    coef = np.linalg.lstsq(demeaned[:, 1:], demeaned[:, 0], rcond=None)[0]
    return float(coef[0]), int(multi.sum())


def _survey_effects(
    sk: pd.DataFrame,
    scores: dict[str, pd.DataFrame],
    keep: np.ndarray,
    exposed: np.ndarray,
    dose: np.ndarray,
    coached: np.ndarray,
    arms: pd.DataFrame,
    tw: dict[str, Any],
) -> dict[str, Any]:
    """Realised effects on the scored outcomes, from observed minus counterfactual scores."""
    obs = scores["obs"]
    out: dict[str, Any] = {"mdg": {}, "assets": {}, "coaching": {}}
    for col in obs.columns:
        diff = obs[col] - scores["no_mdg"][col]
        sel = keep & (exposed > 0) & obs[col].notna().to_numpy()
        out["mdg"][col] = (float(diff[sel].mean()) if sel.any() else 0.0, int(sel.sum()))
        d_a = (obs[col] - scores["no_assets"][col]).to_numpy()
        sel = keep & obs[col].notna().to_numpy()
        out["assets"][col] = _within_slope(
            d_a[sel], dose[sel], sk["person_id"].to_numpy()[sel], sk["wave"].to_numpy()[sel]
        )
    fu = keep & (sk["wave"].to_numpy() == tw["followup_wave"])
    arm = arms.set_index("person_id")
    in_offer = (arm["arm"].reindex(sk["person_id"]) == "offer").to_numpy()
    accepted = (arm["accepted"].reindex(sk["person_id"]).fillna(0) == 1).to_numpy()
    for col in ("selfman", "eq5d_index"):
        diff = (obs[col] - scores["no_coaching"][col]).to_numpy()
        ok = fu & obs[col].notna().to_numpy()
        out["coaching"][col] = {
            "itt": (
                float(diff[ok & in_offer].mean()) if (ok & in_offer).any() else 0.0,
                int((ok & in_offer).sum()),
            ),
            "cace": (
                float(diff[ok & accepted].mean()) if (ok & accepted).any() else 0.0,
                int((ok & accepted).sum()),
            ),
        }
    offer = arms[arms["arm"] == "offer"]
    out["coaching"]["acceptance"] = (
        float(offer["accepted"].mean()) if len(offer) else 0.0,
        len(offer),
    )
    return out

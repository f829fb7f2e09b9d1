"""truth.json: the scenario, realised effects (observed minus counterfactual) and exact counts."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from sicp.synth.areas import study_area
from sicp.synth.population import EMERGENCY_METHODS
from sicp.synth.practices import NEVER
from sicp.synth.surveys import SCORING_RULES
from sicp.synth.timeline import Timeline

DEFINITIONS = {
    "person_month": "a person counts in month m at practice p when a population.parquet spell "
    "at p covers the first day of m (registered_from <= m <= registered_to or "
    "registered_to empty)",
    "aged_65_plus": "calendar year of the month - birth_year >= 65",
    "emergency_admission": "hospital_spells with admission_method in "
    + ", ".join(EMERGENCY_METHODS)
    + ", counted in the month of "
    "admitted_on at the practice of that month",
    "exposed_practice_month": "month >= practices.mdg_start_date",
    "counts": "emergency_admissions_* count every emergency spell in hospital_spells (all ages "
    "in an all-ages world); person-month counts are registered 65+ in records/; "
    "excluding_withdrawn drops cohort members with a withdrawn_on date",
    "records_population": "practice-month effects and counts use people in records/ only "
    "(cohort members without linkage consent are absent)",
    "survey_exposure": "a person-wave is exposed when the practice at returned_on (recruitment "
    "practice, then practice_moves) has mdg_start_date <= returned_on",
    "asset_dose": "cumulative community_assets.funding_gbp of the person's neighbourhood up to "
    "the end of the month before returned_on, per 1,000 registered aged 65+ "
    "(practice_population, bands 65-74, 75-84, 85+) in the neighbourhood in the "
    "month of returned_on, in units of GBP 10,000",
    "scoring": SCORING_RULES,
}


def _effect(
    value: Any, scale: str, unit: str, population: str, description: str, **extra: Any
) -> dict[str, Any]:
    return {
        "value": value,
        "scale": scale,
        "unit": unit,
        "population": population,
        "description": description,
        **extra,
    }


def _f(x: float) -> float:
    return float(np.round(x, 10))


def _att(obs: np.ndarray, cf: np.ndarray, n: np.ndarray, sel: np.ndarray) -> tuple[float, float]:
    n_sel = n[sel].sum()
    diff = (obs[sel] - cf[sel]).sum() / n_sel * 1000 if n_sel else 0.0
    ratio = obs[sel].sum() / cf[sel].sum() if cf[sel].sum() else 1.0
    return _f(diff), _f(ratio)


def build_truth(
    scn: dict[str, Any],
    seed: int,
    tl: Timeline,
    prs: pd.DataFrame,
    agg: dict[str, np.ndarray],
    survey: dict[str, Any],
    areas: dict[str, Any],
    arms: pd.DataFrame,
) -> dict[str, Any]:
    eff = scn["effects"]
    start = prs["start_idx"].to_numpy()
    t = np.arange(tl.n)[None, :]
    exposed = (t >= start[:, None]) & (start[:, None] < NEVER)
    since = np.where(exposed, t - start[:, None], -1)
    n = agg["n65"]
    effects: dict[str, Any] = {}
    ramp = eff["mdg_ramp_months"]
    pop_case = "MDG caseload (mdg_caseload) person-months at an exposed practice"
    curve = [
        {
            "months_since_take_on": s,
            "rate_ratio": _f(1 + (eff["mdg_emergency_rr_full"] - 1) * min(s, ramp) / ramp),
        }
        for s in range(ramp + 1)
    ]
    effects["mdg_individual_emergency_rr_curve"] = _effect(
        curve,
        "rate ratio",
        "ratio",
        pop_case,
        f"Parameter: emergency-admission rate ratio by whole months since take-on "
        f"(linear ramp from 1 at take-on to {eff['mdg_emergency_rr_full']} at {ramp}+ months).",
    )
    obs_s, cf_s = agg["since_em_obs"], agg["since_em_cf"]
    real = [
        {
            "months_since_take_on": s,
            "rate_ratio": _f(obs_s[s] / cf_s[s]),
            "observed": int(obs_s[s]),
            "counterfactual": int(cf_s[s]),
        }
        for s in range(min(25, tl.n))
        if cf_s[s] > 0
    ]
    effects["mdg_individual_emergency_rr_curve_realised"] = _effect(
        real,
        "rate ratio",
        "ratio",
        pop_case,
        "Realised: observed / counterfactual emergency admissions by months since take-on "
        "(first 25 months).",
    )
    for key, label, unit in (
        ("em", "emergency admissions", "admissions"),
        ("ch", "permanent care-home admissions", "admissions"),
    ):
        obs, cf = agg[f"{key}_obs"], agg[f"{key}_cf"]
        diff, ratio = _att(obs, cf, n, exposed)
        pop = "exposed practice-months, registered 65+ in records/"
        effects[f"mdg_practice_att_{key}_per_1000"] = _effect(
            diff,
            "difference",
            f"{unit} per 1,000 registered 65+ per month",
            pop,
            f"Realised ATT of the MDG programme on {label} over all exposed practice-months.",
        )
        effects[f"mdg_practice_att_{key}_ratio"] = _effect(
            ratio,
            "ratio",
            "observed / counterfactual",
            pop,
            f"Realised ratio of {label} over all exposed practice-months.",
        )
        by_e = []
        for e in range(int(since.max()) + 1):
            d, r = _att(obs, cf, n, since == e)
            by_e.append({"months_since_start": e, "difference_per_1000": d, "ratio": r})
        effects[f"mdg_practice_att_{key}_by_event_time"] = _effect(
            by_e,
            "difference and ratio",
            f"{unit} per 1,000 registered 65+ per month",
            pop,
            f"Realised ATT on {label} by months since the practice's MDG start (0 = first).",
        )
        d12, r12 = _att(obs, cf, n, exposed & (since < 12))
        effects[f"mdg_practice_att_{key}_first12_per_1000"] = _effect(
            d12,
            "difference",
            f"{unit} per 1,000 registered 65+ per month",
            "exposed practice-months 0-11 months after MDG start",
            f"Realised ATT on {label} pooled over the first 12 months of exposure.",
        )
        effects[f"mdg_practice_att_{key}_first12_ratio"] = _effect(
            r12,
            "ratio",
            "observed / counterfactual",
            "exposed practice-months 0-11 months after MDG start",
            f"Realised ratio of {label} pooled over the first 12 months of exposure.",
        )
    deaths = agg["deaths"][exposed].sum()
    share_obs = agg["home_obs"][exposed].sum() / deaths if deaths else 0.0
    share_cf = agg["home_cf"][exposed].sum() / deaths if deaths else 0.0
    effects["mdg_death_at_home_share"] = _effect(
        _f(share_obs - share_cf),
        "difference",
        "proportion of deaths",
        "deaths of registered 65+ in exposed practice-months (records/)",
        "Realised change in the share of deaths at home.",
        observed=_f(share_obs),
        counterfactual=_f(share_cf),
    )
    for score, (value, n_pw) in survey["mdg"].items():
        effects[f"mdg_survey_{score}"] = _effect(
            _f(value),
            "difference",
            _score_unit(score),
            "exposed responding person-waves with the score non-null",
            f"Realised effect of practice MDG exposure on {score} (observed minus no-MDG "
            "counterfactual on the same people and draws).",
            n=n_pw,
        )
    for score, (value, n_pw) in survey["assets"].items():
        effects[f"assets_slope_{score}"] = _effect(
            _f(value),
            "slope",
            f"{_score_unit(score)} per GBP 10,000 per 1,000 aged 65+",
            "responding person-waves with the score non-null, people with 2+ of them",
            f"Realised dose-response slope of community assets on {score}: the person + wave "
            "fixed-effects slope of observed minus no-asset scores on dose (what a two-way "
            "fixed-effects dose-response estimator targets when effects are not linear).",
            n=n_pw,
        )
    tw = scn["twic"]
    for score in ("selfman", "eq5d_index"):
        res = survey["coaching"][score]
        for est in ("itt", "cace"):
            value, n_p = res[est]
            effects[f"twic_{est}_{score}"] = _effect(
                _f(value),
                "difference",
                _score_unit(score),
                ("randomised to offer" if est == "itt" else "offer arm, accepted")
                + f", responding at follow-up wave {tw['followup_wave']}",
                f"Realised {est.upper()} of telephone health coaching on {score} at follow-up "
                f"(baseline wave {tw['baseline_wave']}, follow-up wave {tw['followup_wave']}).",
                n=n_p,
            )
    rate, n_offer = survey["coaching"]["acceptance"]
    effects["twic_acceptance_rate"] = _effect(
        _f(rate), "proportion", "accepted / offered", "offer arm", "Realised acceptance.", n=n_offer
    )
    effects["twic_itt_emergency_admissions"] = _effect(
        0.0,
        "difference",
        "admissions per person",
        "randomised",
        "Coaching has no effect on emergency admissions in this world.",
    )
    effects.update(comparator_effects(scn, areas))
    launch = tl.index(scn["contact_centre"]["launch"])
    post = np.zeros(tl.n, bool)
    post[launch:] = True
    ae_obs, ae_cf = agg["ae_obs"][:, post].sum(), agg["ae_cf"][:, post].sum()
    n_post = n[:, post].sum()
    effects["contact_centre_ae_level"] = _effect(
        _f((ae_obs - ae_cf) / n_post * 1000),
        "difference",
        "A&E attendances (not admitted) per 1,000 registered 65+ per month",
        "registered 65+ in records/, months from the launch",
        "Realised level change in A&E attendances not followed by admission after the "
        "contact-centre launch.",
        launch=scn["contact_centre"]["launch"],
    )
    effects["contact_centre_ae_ratio"] = _effect(
        _f(ae_obs / ae_cf),
        "ratio",
        "observed / counterfactual",
        "registered 65+ in records/, months from the launch",
        "Realised ratio of A&E attendances not followed by admission after the contact-centre "
        "launch.",
        launch=scn["contact_centre"]["launch"],
        parameter_ratio=eff["contact_centre_ae_rr"],
    )
    years = [str(int(y)) for y in range(int(tl.year[0]), int(tl.year[-1]) + 1)]
    counts = {
        "emergency_admissions_total": int(agg["em_year"].sum()),
        "emergency_admissions_total_excluding_withdrawn": int(agg["em_year_nowd"].sum()),
        "emergency_admissions_by_year": dict(zip(years, map(int, agg["em_year"]), strict=True)),
        "emergency_admissions_by_year_excluding_withdrawn": dict(
            zip(years, map(int, agg["em_year_nowd"]), strict=True)
        ),
        "exposed_practice_months": int(exposed.sum()),
        "exposed_person_months_65plus": int(n[exposed].sum()),
        "exposed_person_months_65plus_excluding_withdrawn": int(agg["n65_nowd"][exposed].sum()),
        "person_months_65plus": int(n.sum()),
        "twic_randomised": len(arms),
        "twic_offer": int((arms["arm"] == "offer").sum()),
    }
    definitions = DEFINITIONS | {
        "twic": (
            f"baseline = the wave {tw['baseline_wave']} questionnaire (the last wave whose first "
            "questionnaire was returned before the earliest randomisation date); follow-up = the "
            f"wave {tw['followup_wave']} questionnaire (the wave whose first-return month is "
            "closest to 12 months after the earliest randomisation month); ITT "
            "compares arms as randomised, CACE is the effect among those who accepted the offer; "
            "realised values are means of observed minus no-coaching scores"
        )
    }
    return {
        "scenario": scn["name"],
        "seed": seed,
        "parameters": scn,
        "effects": effects,
        "counts": counts,
        "definitions": definitions,
        "window": {"start": str(tl.first_day[0]), "end": str(tl.first_day[-1])},
    }


def comparator_effects(scn: dict[str, Any], areas: dict[str, Any]) -> dict[str, Any]:
    """The study area's realised effects in the comparator areas (from simulate_areas' truth);
    a function of its own so the areas alone can be simulated with their truth. The keys keep
    the name ``comparator_salford_att_*`` the protocols use, whatever the study area."""
    sa = study_area(scn).iloc[0]
    code, name = str(sa["area_code"]), str(sa["area_name"])
    where = f"{name} ({code}), months from {scn['comparators']['effect_start']}"
    effects: dict[str, Any] = {}
    for ind, label in (
        ("emergency_admissions_65plus", "emergency"),
        ("care_home_admissions_65plus", "care_home"),
    ):
        a = areas[ind]
        effects[f"comparator_salford_att_{label}_per_1000"] = _effect(
            _f(a["per_1000"]),
            "difference",
            "per 1,000 aged 65+ per month",
            where,
            f"Realised ATT on {ind} in area_month_indicators, in the study area.",
            months=a["months"],
            area_code=code,
            area_name=name,
        )
        effects[f"comparator_salford_att_{label}_ratio"] = _effect(
            _f(a["ratio"]),
            "ratio",
            "observed / counterfactual",
            where,
            f"Realised ratio on {ind}, in the study area.",
            months=a["months"],
            area_code=code,
            area_name=name,
        )
    return effects


def _score_unit(score: str) -> str:
    return {
        "eq5d_index": "EQ-5D-5L index points",
        "pacic": "PACIC item-mean points (1-5)",
        "selfman": "self-management score points (0-100)",
        "wellbeing": "wellbeing item-mean points (1-4)",
        "lonely": "loneliness score points (3-9)",
    }[score]

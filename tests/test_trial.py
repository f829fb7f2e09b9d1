"""Tests of the trial-within-the-cohort estimators on simulated trials with known effects."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis.trial import as_treated, cace_2sls, itt_ancova, per_protocol


def simulate_trial(
    n: int, *, complier_effect: float, seed: int, selective: bool = False
) -> pd.DataFrame:
    """A cmRCT with one-sided non-compliance (controls are never offered coaching).

    ``health`` is a latent prognostic factor; the baseline outcome measures it with error. With
    ``selective`` the sicker are likelier to accept, so accepters differ from controls in a way
    that adjustment for the baseline outcome cannot fully remove.
    """
    rng = np.random.default_rng(seed)
    stratum = rng.choice(["practice_a", "practice_b", "practice_c"], size=n)
    stratum_shift = (
        pd.Series(stratum)
        .map({"practice_a": 0.0, "practice_b": 0.5, "practice_c": -0.5})
        .to_numpy()
    )
    health = rng.normal(size=n)
    baseline = health + stratum_shift + rng.normal(scale=0.7, size=n)
    arm = np.where(rng.random(n) < 0.5, "offer", "control")
    p_accept = 1 / (1 + np.exp(-(0.0 - 1.5 * health))) if selective else np.full(n, 0.45)
    complier = rng.random(n) < p_accept
    accepted = ((arm == "offer") & complier).astype(int)
    follow_up = health + stratum_shift + complier_effect * accepted + rng.normal(scale=0.7, size=n)
    return pd.DataFrame(
        {
            "person_id": np.arange(n),
            "stratum": stratum,
            "arm": arm,
            "accepted": accepted,
            "baseline": baseline,
            "follow_up": follow_up,
        }
    )


ADJUST = {"baseline": "baseline", "stratum": "stratum", "offer_level": "offer"}


def test_wald_identity_without_covariates() -> None:
    """Without covariates 2SLS with one binary instrument is the Wald estimator: CACE = ITT /
    (acceptance in offer arm - acceptance in control arm). Panagioti et al. 2018 (CLASSIC
    trial within a cohort, BMC Med, doi 10.1186/s12916-018-1051-5) report CACEs that equal their
    ITTs divided by the acceptance rate, as this identity implies."""
    df = simulate_trial(600, complier_effect=0.8, seed=1)
    itt = itt_ancova(df, outcome="follow_up", arm="arm", offer_level="offer")
    cace = cace_2sls(df, outcome="follow_up", arm="arm", accepted="accepted", offer_level="offer")
    offered = df["arm"] == "offer"
    uptake = df.loc[offered, "accepted"].mean() - df.loc[~offered, "accepted"].mean()
    assert cace.estimate("cace") == pytest.approx(itt.estimate("itt") / uptake, rel=1e-10)
    assert cace.diagnostics["acceptance_control"] == 0.0
    assert cace.diagnostics["acceptance_offer"] == pytest.approx(uptake, rel=1e-12)
    # The ITT without covariates is the difference in means.
    diff = df.loc[offered, "follow_up"].mean() - df.loc[~offered, "follow_up"].mean()
    assert itt.estimate("itt") == pytest.approx(diff, rel=1e-10)


def test_itt_and_cace_recover_known_effects() -> None:
    truth = 0.6
    df = simulate_trial(4000, complier_effect=truth, seed=7)
    itt = itt_ancova(df, outcome="follow_up", arm="arm", **ADJUST)
    cace = cace_2sls(df, outcome="follow_up", arm="arm", accepted="accepted", **ADJUST)
    row = cace.row("cace")
    assert row["ci_low"] <= truth <= row["ci_high"]
    assert abs(row["estimate"] - truth) < 3 * row["std_error"]
    # ITT = CACE x compliance (0.45 by design).
    itt_row = itt.row("itt")
    assert itt_row["ci_low"] <= truth * 0.45 <= itt_row["ci_high"]
    # Baseline adjustment shrinks the SE against the unadjusted ITT.
    raw = itt_ancova(df, outcome="follow_up", arm="arm", offer_level="offer")
    assert itt.std_error("itt") < 0.8 * raw.std_error("itt")
    assert cace.diagnostics["first_stage_f"] > 100
    assert 0 < cace.diagnostics["first_stage_partial_r2"] < 1
    assert set(itt.tidy["scale"]) == {"identity"}
    assert int(itt.row("itt")["n_obs"]) == 4000


def test_selective_uptake_biases_per_protocol_not_cace() -> None:
    truth = 0.5
    df = simulate_trial(6000, complier_effect=truth, seed=11, selective=True)
    args = {"outcome": "follow_up", "arm": "arm", "accepted": "accepted", **ADJUST}
    cace = cace_2sls(df, **args)
    pp = per_protocol(df, **args)
    at = as_treated(df, **args)
    c = cace.row("cace")
    assert c["ci_low"] <= truth <= c["ci_high"]
    # Accepters are the sicker: the naive contrasts are pulled below the truth by many SEs.
    for res, term in ((pp, "per_protocol"), (at, "as_treated")):
        r = res.row(term)
        assert r["estimate"] < truth - 4 * r["std_error"], term
        assert not r["ci_low"] <= truth <= r["ci_high"]
    assert pp.diagnostics["n_decliners_dropped"] > 0
    assert int(pp.row("per_protocol")["n_obs"]) < len(df)


def test_numeric_arm_and_validation() -> None:
    df = simulate_trial(300, complier_effect=0.5, seed=3)
    df["offer01"] = (df["arm"] == "offer").astype(int)
    a = itt_ancova(df, outcome="follow_up", arm="offer01", baseline="baseline")
    b = itt_ancova(df, outcome="follow_up", arm="arm", baseline="baseline", offer_level="offer")
    assert a.estimate("itt") == pytest.approx(b.estimate("itt"), rel=1e-12)
    with pytest.raises(ValueError, match="0/1"):
        itt_ancova(df, outcome="follow_up", arm="arm")
    with pytest.raises(KeyError):
        itt_ancova(df, outcome="nope", arm="offer01")
    with pytest.raises(ValueError, match="both arms"):
        itt_ancova(df[df["offer01"] == 1], outcome="follow_up", arm="offer01")

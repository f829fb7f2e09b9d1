"""Turn a simulated chunk into contract-shaped record frames and truth aggregates.

Record frames hold the observed world only, and only people who may appear in ``records/``
(everyone outside the cohort, and cohort members with ``consent_linkage = 1``). The aggregates
keep both worlds so truth.json can report realised effects.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from sicp.contract import AGE_BANDS
from sicp.synth.population import Chunk
from sicp.synth.practices import NEVER


@dataclass
class ChunkOutput:
    """One chunk's contribution to the world."""

    records: dict[str, pd.DataFrame]
    practice_population: pd.DataFrame
    cohort: pd.DataFrame
    waves: pd.DataFrame
    moves: pd.DataFrame
    agg: dict[str, np.ndarray]


def _ids(prefix: str, chunk_no: int, n: int) -> np.ndarray:
    return (
        pd.Series(np.arange(1, n + 1)).astype(str).str.zfill(7).radd(f"{prefix}{chunk_no:03d}")
    ).to_numpy()


def _pm_sum(
    p: np.ndarray, t: np.ndarray, n_p: int, T: int, weights: np.ndarray | None = None
) -> np.ndarray:
    """Sum over events/person-months into a practice x month array."""
    return np.bincount(p * T + t, weights=weights, minlength=n_p * T).reshape(n_p, T)


def assemble_chunk(ch: Chunk, parts: dict[str, pd.DataFrame], chunk_no: int) -> ChunkOutput:
    tl, T, prs = ch.tl, ch.T, ch.prs
    codes = prs["practice_code"].to_numpy()
    # person ids: first practice code + running number within that practice
    rank = pd.Series(ch.practice0).groupby(ch.practice0).cumcount().to_numpy() + 1
    pid = codes[ch.practice0] + "-" + pd.Series(rank).astype(str).str.zfill(6).to_numpy()
    # integer sort key in person_id order (codes ascend with the practice index)
    pkey = ch.practice0.astype(np.int64) * ch.n + np.arange(ch.n)
    cohort = parts["cohort"]
    linked = np.ones(ch.n, bool)
    linked[cohort["i"].to_numpy()] = cohort["consent_linkage"].to_numpy() == 1
    withdrawn = np.zeros(ch.n, bool)
    withdrawn[cohort["i"].to_numpy()] = cohort["withdrawn_on"].notna().to_numpy()

    def obs_linked(df: pd.DataFrame) -> pd.DataFrame:
        keep = linked[df["i"].to_numpy()]
        if "in_obs" in df:
            keep &= df["in_obs"].to_numpy()
        out = df[keep].copy()
        out.insert(0, "person_id", pid[out["i"].to_numpy()])
        out["_k"] = pkey[out["i"].to_numpy()]
        return out

    records: dict[str, pd.DataFrame] = {}
    records["population"] = _spells_of_registration(ch, pid, codes)[_linked_rows(ch, linked)]
    records["population"] = records["population"].reset_index(drop=True)

    spells = obs_linked(parts["spells"]).sort_values(
        ["_k", "admitted_on", "admission_method", "primary_diagnosis"], kind="stable"
    )
    nxt = spells.groupby("_k", sort=False)["admitted_on"].shift(-1)
    overlap = nxt.notna() & (nxt < spells["discharged_on"])
    spells.loc[overlap, "discharged_on"] = nxt[overlap]  # a new spell closes the previous one
    spells.loc[overlap & (spells["discharge_destination"] == "died"), "discharge_destination"] = (
        "other hospital"
    )
    spells.loc[spells["discharged_on"] > tl.last_day, "discharged_on"] = pd.NaT
    spells["spell_id"] = _ids("H", chunk_no, len(spells))
    records["hospital_spells"] = spells

    ae = obs_linked(parts["ae"]).sort_values(["_k", "arrived_on", "disposal"], kind="stable")
    ae["attendance_id"] = _ids("A", chunk_no, len(ae))
    records["ae_attendances"] = ae
    records["gp_contacts"] = obs_linked(parts["gp"]).sort_values(
        ["_k", "contact_on", "contact_type"], kind="stable"
    )
    homes = obs_linked(parts["homes"]).sort_values(
        ["_k", "admitted_on", "permanent"], ascending=[True, True, False], kind="stable"
    )
    records["care_home_admissions"] = homes.drop_duplicates(["person_id", "admitted_on"])
    records["deaths"] = obs_linked(parts["deaths"]).sort_values("_k")
    records["flu_vaccinations"] = obs_linked(parts["flu"]).sort_values(["_k", "vaccinated_on"])
    risk = obs_linked(parts["risk"])
    risk["quarter_start"] = tl.first_day[risk["t"].to_numpy()]
    risk["risk_score"] = risk["risk_score"].round(4)
    records["risk_scores"] = risk.sort_values(["_k", "quarter_start"])
    taken = np.flatnonzero((ch.taken < NEVER) & linked)
    taken = taken[np.argsort(pkey[taken], kind="stable")]
    records["mdg_caseload"] = pd.DataFrame(
        {
            "person_id": pid[taken],
            "discussed_on": ch.taken_day[taken],
            "care_plan_agreed": ch.care_plan[taken],
        }
    )
    records["contact_centre_calls"] = obs_linked(parts["calls"])

    agg = _aggregates(ch, parts, linked, withdrawn)
    members = cohort["i"].to_numpy()
    cohort_out = pd.DataFrame(
        {
            "person_id": pid[members],
            "practice_code": codes[cohort["practice"].to_numpy()],
            "recruited_on": cohort["recruited_on"].to_numpy(),
            "birth_year": ch.birth_year[members],
            "sex": ch.sex[members],
            "imd_decile": ch.imd[members],
            "n_ltc": ch.n_ltc[members],
            "social_care_need": cohort["social_care_need"].to_numpy(),
            "consent_linkage": cohort["consent_linkage"].to_numpy(),
            "consent_trials": cohort["consent_trials"].to_numpy(),
            "withdrawn_on": cohort["withdrawn_on"].to_numpy(),
            "died_on": ch.death_day[members],
            "z": ch.z[members],
            "activation": ch.activation[members],
            "lonely_trait": ch.lonely_trait[members],
            "neighbourhood": prs["neighbourhood"].to_numpy()[cohort["practice"].to_numpy()],
        }
    )
    moved = ch.move[members] < np.minimum(np.minimum(ch.exit[members], ch.death[members] + 1), T)
    move_day = tl.first_day[np.minimum(ch.move[members], T - 1)]
    moved &= move_day > cohort["recruited_on"].to_numpy()
    moves = pd.DataFrame(
        {
            "person_id": pid[members[moved]],
            "practice_code": codes[ch.practice1[members[moved]]],
            "from_date": move_day[moved],
        }
    )
    waves = parts["waves"].copy()
    wi = waves["i"].to_numpy()
    waves.insert(0, "person_id", pid[wi])
    waves["practice_code"] = codes[waves["practice"].to_numpy()]
    waves["neighbourhood"] = prs["neighbourhood"].to_numpy()[waves["practice"].to_numpy()]
    for name, arr in (
        ("z", ch.z),
        ("activation", ch.activation),
        ("lonely_trait", ch.lonely_trait),
        ("n_ltc", ch.n_ltc),
    ):
        waves[name] = arr[wi]
    return ChunkOutput(
        records,
        _practice_population(ch),
        cohort_out,
        waves.drop(columns=["i", "practice"]),
        moves,
        agg,
    )


def _linked_rows(ch: Chunk, linked: np.ndarray) -> np.ndarray:
    """Row mask of the registration-spell frame (one or two rows per person) for linked people."""
    moved = _moved(ch)
    return np.concatenate([linked, linked[moved]])


def _moved(ch: Chunk) -> np.ndarray:
    return ch.move < np.minimum(np.minimum(ch.exit, ch.death + 1), ch.T)


def _spells_of_registration(ch: Chunk, pid: np.ndarray, codes: np.ndarray) -> pd.DataFrame:
    """One spell per practice: a move closes the first spell the day before the new one."""
    tl, T = ch.tl, ch.T
    final_to = np.where(
        ch.death < NEVER,
        ch.death_day,
        np.where(
            ch.exit < T,
            tl.first_day[np.minimum(ch.exit, T - 1)] - np.timedelta64(1, "D"),
            np.datetime64("NaT", "D"),
        ),
    )
    moved = _moved(ch)
    move_day = tl.first_day[np.minimum(ch.move, T - 1)]
    first_to = np.where(moved, move_day - np.timedelta64(1, "D"), final_to)
    common = {"birth_year": ch.birth_year, "sex": ch.sex, "imd_decile": ch.imd}
    first = pd.DataFrame(
        {
            "person_id": pid,
            "practice_code": codes[ch.practice0],
            **common,
            "registered_from": ch.registered_from,
            "registered_to": first_to,
        }
    )
    second = pd.DataFrame(
        {
            "person_id": pid[moved],
            "practice_code": codes[ch.practice1[moved]],
            **{k: v[moved] for k, v in common.items()},
            "registered_from": move_day[moved],
            "registered_to": final_to[moved],
        }
    )
    return pd.concat([first, second], ignore_index=True)


def _practice_population(ch: Chunk) -> pd.DataFrame:
    """Registered people by practice, month and age band (everyone, whatever their consent)."""
    T, n_p = ch.T, len(ch.prs)
    band = np.digitize(ch.age, [65, 75, 85]).astype(np.int64)
    i, t = np.nonzero(ch.reg)
    counts = np.bincount((ch.P[i, t] * T + t) * 4 + band[i, t], minlength=n_p * T * 4).reshape(
        n_p, T, 4
    )
    if not ch.all_ages:
        share = ch.rng.uniform(0.11, 0.22, n_p)
        share = np.where(ch.prs["care_home"].to_numpy(), 0.9, share)
        old = counts[:, :, 1:].sum(axis=2)
        growth = 1 + 0.004 * np.arange(T) / 12
        counts[:, :, 0] = np.round(
            old[:, :1] * (1 - share[:, None]) / share[:, None] * growth[None, :]
        ).astype(np.int64)
    p, m, b = np.meshgrid(np.arange(n_p), np.arange(T), np.arange(4), indexing="ij")
    return pd.DataFrame(
        {
            "practice_code": ch.prs["practice_code"].to_numpy()[p.ravel()],
            "month": ch.tl.first_day[m.ravel()],
            "age_band": np.asarray(AGE_BANDS)[b.ravel()],
            "registered": counts.ravel(),
        }
    )


def _aggregates(
    ch: Chunk, parts: dict[str, pd.DataFrame], linked: np.ndarray, withdrawn: np.ndarray
) -> dict[str, np.ndarray]:
    """Practice x month sums over linked people, in both worlds, for truth.json."""
    T, n_p = ch.T, len(ch.prs)
    agg: dict[str, np.ndarray] = {}
    i, t = np.nonzero(ch.old & linked[:, None])
    agg["n65"] = _pm_sum(ch.P[i, t], t, n_p, T)
    keep = ~withdrawn[i]
    agg["n65_nowd"] = _pm_sum(ch.P[i[keep], t[keep]], t[keep], n_p, T)
    tr = ch.treated[i, t]
    agg["since_pm"] = np.bincount(ch.since[i[tr], t[tr]], minlength=T)

    def ev_sums(df: pd.DataFrame, prefix: str, old_only: bool = True) -> None:
        ei, et = df["i"].to_numpy(), df["t"].to_numpy()
        ok = linked[ei] & (ch.old[ei, et] if old_only else True)
        for world in ("obs", "cf"):
            w = ok & df[f"in_{world}"].to_numpy()
            agg[f"{prefix}_{world}"] = _pm_sum(ch.P[ei[w], et[w]], et[w], n_p, T)

    sp = parts["spells"]
    em = sp[sp["emergency"]]
    ev_sums(em, "em")
    ei, et = em["i"].to_numpy(), em["t"].to_numpy()
    tr = ch.treated[ei, et] & linked[ei]
    s = ch.since[ei, et]
    for world in ("obs", "cf"):
        w = tr & em[f"in_{world}"].to_numpy()
        agg[f"since_em_{world}"] = np.bincount(s[w], minlength=T)
    # emergency spells as written (all ages), by calendar year, with and without withdrawn
    w = linked[ei] & em["in_obs"].to_numpy()
    year = em["admitted_on"].dt.year.to_numpy() - int(ch.tl.year[0])
    n_years = int(ch.tl.year[-1] - ch.tl.year[0]) + 1
    agg["em_year"] = np.bincount(year[w], minlength=n_years)
    agg["em_year_nowd"] = np.bincount(year[w & ~withdrawn[ei]], minlength=n_years)
    homes = parts["homes"]
    ev_sums(homes[homes["permanent"]], "ch")
    d = parts["deaths"]
    di, dt_ = d["i"].to_numpy(), d["t"].to_numpy()
    ok = linked[di] & ch.old[di, dt_]
    agg["deaths"] = _pm_sum(ch.P[di[ok], dt_[ok]], dt_[ok], n_p, T)
    for world, col in (("obs", "place_of_death"), ("cf", "place_cf")):
        home = ok & (d[col].to_numpy() == "home")
        agg[f"home_{world}"] = _pm_sum(ch.P[di[home], dt_[home]], dt_[home], n_p, T)
    ae = parts["ae"]
    walk = ae[ae["disposal"] != "admitted"]
    ev_sums(walk, "ae")
    return agg

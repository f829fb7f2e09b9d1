"""Simulate one chunk of practices: people, registrations, the MDG caseload and every record.

People live on a person x month grid (vectorised numpy; the only Python loops run over quarters
or survey waves). Latent traits drive everything: a persistent frailty ``z``, a gamma frailty
``u`` (over-dispersion), and an AR(1) transient risk that makes tier-selected patients regress
to the mean. The MDG effect, the contact-centre effect and the counterfactual world without them
are drawn on common random numbers (see :mod:`sicp.synth.events`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy.signal import lfilter

from sicp.synth.events import Events, coupled, expand, first_crossing, sigmoid
from sicp.synth.practices import NEVER
from sicp.synth.timeline import FIRST_RETURN_DAYS, Timeline, wave_field_day

EMERGENCY_METHODS = ("21", "22", "23", "24", "25", "2A", "2B", "2C", "2D", "28")
#: Primary diagnoses (ICD-10) with weights; the first block is ambulatory-care sensitive.
EMERGENCY_DIAGNOSES = {
    "J44.1": 7,
    "J44.0": 4,
    "I50.0": 5,
    "I50.9": 3,
    "E11.9": 1.5,
    "E11.6": 1,
    "J18.9": 8,
    "J18.1": 2,
    "N39.0": 6,
    "I20.9": 2,
    "J45.9": 1,
    "I10": 1,
    "R55": 4,
    "S72.0": 4,
    "S72.1": 2,
    "R07.4": 5,
    "K92.2": 2,
    "I63.9": 3,
    "I48": 3,
    "R06.0": 3,
    "K57.3": 1.5,
    "A41.9": 2,
    "C34.9": 1.5,
    "F05.9": 1.5,
    "R41.0": 1.5,
    "T83.5": 1,
    "W19.X": 2,
}
ELECTIVE_DIAGNOSES = {
    "H25.9": 6,
    "Z51.1": 5,
    "M17.1": 4,
    "M16.1": 3,
    "K40.9": 2,
    "N40": 2,
    "C18.9": 1,
    "I25.1": 2,
    "K80.2": 2,
    "D12.6": 2,
}
AE_DISPOSALS = ("discharged", "referred to GP", "referred to clinic", "left before treatment")
CALL_REASONS = ("advice", "navigation", "telecare")
#: HES introduced the emergency admission methods 2A-2D on this date (national coding, not a
#: fact of any site): earlier "other" emergency admissions are coded 28.
HES_NEW_EMERGENCY_METHODS_FROM = np.datetime64("2013-04-01")
#: Log-odds change in flu-vaccine uptake per year, around the calendar's middle year.
FLU_TREND_PER_YEAR = 0.05
#: Withdrawals from the cohort happen by the end of the month this many months before the
#: calendar's last month (so a withdrawal is followed by some observed time).
WITHDRAWAL_MARGIN_MONTHS = 6
PLACES = ("home", "care_home", "hospital", "hospice", "other")


def _weights(table: dict[str, float]) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(list(table.values()), float)
    return np.asarray(list(table)), p / p.sum()


class Chunk:
    """One chunk's simulation state; :mod:`sicp.synth.assemble` turns it into files."""

    def __init__(
        self, scn: dict[str, Any], tl: Timeline, prs: pd.DataFrame, rng: np.random.Generator
    ) -> None:
        self.scn, self.tl, self.prs, self.rng = scn, tl, prs.reset_index(drop=True), rng
        self.all_ages = bool(scn["population"]["all_ages"])
        self.rates = scn["rates"]
        self.eff = scn["effects"]
        self.T = tl.n

    # ------------------------------------------------------------------ people
    def _people(self) -> None:
        rng, tl, prs, pop, T = self.rng, self.tl, self.prs, self.scn["population"], self.T
        n_p = len(prs)
        chp = prs["care_home"].to_numpy()
        size = prs["size"].to_numpy()
        months = np.arange(T)
        jan = (tl.calendar_month == 1) & (months > 0)
        entry_rate = np.zeros((n_p, T))
        in_mig = np.where(chp, 0.30, pop["in_migration_per_year"]) / 12
        entry_rate[:, 1:] += (size * in_mig)[:, None]
        in_counts = rng.poisson(entry_rate)
        turn65 = rng.poisson(
            np.where(chp, 0.0, size * pop["turning_65_per_year"])[:, None] * jan[None, :]
        )
        births = rng.poisson(
            np.where(chp, 0.0, size * pop["births_per_year"] / 12)[:, None] * (months > 0)[None, :]
        )
        p_init = np.repeat(np.arange(n_p), size)
        p_in, t_in = expand(in_counts)
        p_65, t_65 = expand(turn65)
        p_b, t_b = expand(births)
        practice0 = np.concatenate([p_init, p_in, p_65, p_b])
        entry = np.concatenate([np.zeros(len(p_init), int), t_in, t_65, t_b])
        kind = np.concatenate(
            [
                np.zeros(len(p_init), int),
                np.ones(len(p_in), int),
                np.full(len(p_65), 2),
                np.full(len(p_b), 3),
            ]
        )
        n = len(practice0)
        is_chp = chp[practice0]
        age_any = self._draw_age(n)
        age_old = 65 + np.minimum(rng.exponential(10.5, n), 39).astype(int)
        age_chp = 70 + np.minimum(rng.exponential(11.0, n), 34).astype(int)
        age = np.where(self.all_ages, age_any, age_old)
        age = np.where(is_chp, age_chp, age)
        age = np.where(kind == 2, 65, np.where(kind == 3, 0, age))
        self.n = n
        self.practice0 = practice0
        self.entry = entry
        self.kind = kind
        self.birth_year = tl.year[entry] - age
        self.is_chp = is_chp
        self.sex = np.where(rng.random(n) < (0.56 if not self.all_ages else 0.51), 2, 1)
        imd = prs["imd_mean"].to_numpy()[practice0] + rng.normal(0, 1.8, n)
        self.imd = np.clip(np.round(imd), 1, 10).astype(int)
        self.z = rng.normal(0, 1, n) + 1.0 * is_chp
        shape = self.rates["frailty_shape"]
        self.u = rng.gamma(shape, 1 / shape, n)
        self.w_flu = rng.normal(0, 1, n)
        self.activation = 0.6 * rng.normal(0, 1, n) - 0.3 * self.z
        self.lonely_trait = rng.normal(0, 1, n) + 0.3 * self.z
        self.n_ltc = np.minimum(rng.poisson(np.exp(0.55 + 0.4 * self.z)), 30)
        # registration: out-migration, one possible move, spell start dates
        out = np.where(is_chp, 0.0, pop["out_migration_per_year"]) / 12
        self.exit = np.minimum(entry + rng.geometric(np.maximum(out, 1e-9)), NEVER)
        mv = rng.geometric(pop["practice_moves_per_year"] / 12, n)
        movable = np.flatnonzero(~chp)
        pick = rng.integers(0, max(len(movable), 1), n)
        target = movable[pick] if len(movable) else practice0
        self.move = np.where(
            (~is_chp) & (len(movable) > 1) & (target != practice0) & (entry + mv < self.exit),
            entry + mv,
            NEVER,
        )
        self.practice1 = np.where(self.move < NEVER, target, practice0)
        years_before = rng.uniform(0.2, 30.0, n)
        first = tl.first_day[entry]
        earlier = first - (years_before * 365.25).astype("timedelta64[D]")
        birth_floor = (self.birth_year - 1970).astype("datetime64[Y]").astype("datetime64[D]")
        earlier = np.maximum(earlier, birth_floor)
        self.registered_from = np.where((kind == 0) | (kind == 2), earlier, first)

    def _draw_age(self, n: int) -> np.ndarray:
        ages = np.arange(101)
        w = np.where(ages < 65, 1.0, np.exp(-(ages - 65) / 14.0))
        return self.rng.choice(ages, n, p=w / w.sum())

    # ------------------------------------------------------------------ grid
    def _grid(self) -> None:
        rng, tl, T = self.rng, self.tl, self.T
        t = np.arange(T)[None, :]
        self.age = (tl.year[None, :] - self.birth_year[:, None]).astype(np.int16)
        reg = (t >= self.entry[:, None]) & (t < self.exit[:, None])
        self.P = np.where(
            t < self.move[:, None], self.practice0[:, None], self.practice1[:, None]
        ).astype(np.int32)
        age_c = self.age - 75.0
        h = (
            self.scn["population"]["death_rate_per_year"]
            / 12
            * np.exp(
                0.095 * age_c + 0.45 * self.z[:, None] + 1.2 * self.is_chp[:, None] - 0.5 * 0.45**2
            )
        )
        cum = np.cumsum(np.where(reg, h, 0.0), axis=1)
        death = first_crossing(cum, rng.exponential(1.0, self.n), NEVER)
        self.death = death
        self.death_day = np.where(
            death < NEVER,
            tl.day_of(np.minimum(death, T - 1), rng.random(self.n)),
            np.datetime64("NaT", "D"),
        )
        self.reg = reg & (t <= death[:, None])
        self.old = self.reg & (self.age >= 65)
        self.act = self.reg if self.all_ages else self.old
        # max day offset in each month (the death month ends on the day of death)
        self.month_days = np.broadcast_to(tl.days[None, :], (self.n, T)).copy()
        dm = death < T
        self.month_days[dm, death[dm]] = (self.death_day[dm] - tl.first_day[death[dm]]).astype(
            int
        ) + 1
        rates = self.rates
        trans = lfilter(
            [np.sqrt(1 - rates["transient_rho"] ** 2) * rates["transient_sd"]],
            [1.0, -rates["transient_rho"]],
            rng.normal(0, 1, (self.n, T + 24)),
            axis=1,
        )[:, 24:]
        season = rates["winter_amplitude"] * np.cos(2 * np.pi * (tl.calendar_month - 1) / 12)
        trend = rates["secular_trend_per_year"] * t / 12
        re = self.prs["re"].to_numpy()[self.P]
        #: practice effect, secular trend and winter season shared by every count
        self.ctx = (re + trend + season[None, :]).astype(np.float32)
        self.eta = (
            0.04 * age_c
            + 0.55 * self.z[:, None]
            + 0.06 * (5.5 - self.imd[:, None])
            + self.ctx
            + trans
            + np.log(self.u)[:, None]
            - 0.5 * (0.55**2 + rates["transient_sd"] ** 2)
        ).astype(np.float32)

    # ------------------------------------------------------------------ MDG
    def _mdg(self) -> pd.DataFrame:
        """Quarterly risk tiers within each practice's 65+ register, and who the MDG takes on."""
        rng, tl, T = self.rng, self.tl, self.T
        start = self.prs["start_idx"].to_numpy()
        take = {int(k): v for k, v in self.scn["mdg"]["take_on_per_quarter"].items()}
        quarters = np.flatnonzero(np.isin(tl.calendar_month, (1, 4, 7, 10)))
        taken = np.full(self.n, NEVER)
        frames = []
        n_p = len(self.prs)
        for tq in quarters:
            who = np.flatnonzero(self.old[:, tq])
            lam = self.rates["emergency_admission"] * np.exp(self.eta[who, tq])
            score = 1 - np.exp(-12 * lam * np.exp(rng.normal(0, 0.35, len(who))))
            prac = self.P[who, tq]
            order = np.lexsort((score, prac))
            size = np.bincount(prac, minlength=n_p)
            starts = np.concatenate([[0], np.cumsum(size)[:-1]])
            pos = np.empty(len(who))
            pos[order] = np.arange(len(who)) - starts[prac[order]]
            tier = np.ceil((pos + 1) / size[prac] * 4).astype(int)
            frames.append(pd.DataFrame({"i": who, "t": tq, "risk_score": score, "risk_tier": tier}))
            first_month = np.maximum(tq, start[prac])
            u_take, u_month = rng.random(len(who)), rng.random(len(who))
            p_take = np.select([tier == 4, tier == 3], [take.get(4, 0.0), take.get(3, 0.0)], 0.0)
            ok = (taken[who] == NEVER) & (first_month <= tq + 2) & (u_take < p_take)
            month = first_month + np.floor(u_month * (tq + 3 - first_month)).astype(int)
            month = np.minimum(month, T - 1)
            ok &= (month <= self.death[who]) & (self.P[who, month] == prac)
            taken[who[ok]] = month[ok]
        self.taken = taken
        has = taken < NEVER
        self.taken_day = np.full(self.n, np.datetime64("NaT", "D"))
        self.taken_day[has] = self.tl.day_of(
            taken[has],
            rng.random(has.sum()) * self.month_days[has, taken[has]] / self.tl.days[taken[has]],
        )
        self.care_plan = rng.random(self.n) < self.scn["mdg"]["care_plan_agreed"]
        t = np.arange(T)[None, :]
        exposed_prac = t >= start[:, None]
        self.exposed = exposed_prac[self.P, t] & self.act
        since = t - taken[:, None]
        self.treated = self.exposed & (since >= 0)
        ramp = np.clip(since / self.eff["mdg_ramp_months"], 0, 1) * self.treated
        self.since = np.where(self.treated, since, -1).astype(np.int16)
        self.rr_em = 1 + (self.eff["mdg_emergency_rr_full"] - 1) * ramp
        self.rr_ch = 1 + (self.eff["mdg_care_home_rr_full"] - 1) * ramp
        return pd.concat(frames, ignore_index=True)

    # ------------------------------------------------------------------ events
    def _days(self, person: np.ndarray, month: np.ndarray) -> np.ndarray:
        frac = self.rng.random(len(person)) * self.month_days[person, month] / self.tl.days[month]
        return self.tl.day_of(month, frac)

    def _hospital(self) -> pd.DataFrame:
        rng, rates = self.rng, self.rates
        act = self.act
        lam_em = np.where(act, rates["emergency_admission"] * np.exp(self.eta), 0.0)
        em = coupled(lam_em, self.rr_em, rng)
        age_c = self.age - 75.0
        lam_el = np.where(
            act,
            rates["elective_admission"]
            * np.exp(
                0.01 * age_c
                + 0.2 * self.z[:, None]
                + 0.5 * self.ctx
                + 0.5 * np.log(self.u)[:, None]
            ),
            0.0,
        )
        el = coupled(lam_el, None, rng)
        other = coupled(np.where(act, rates["other_admission"], 0.0), None, rng)
        parts = [
            self._spells(em, "emergency"),
            self._spells(el, "elective"),
            self._spells(other, "other"),
        ]
        parents = pd.concat(parts[:2], ignore_index=True)
        for _ in range(2):  # re-admissions after discharges, two generations
            child = self._readmissions(parents)
            parts.append(child)
            parents = child
        return pd.concat(parts, ignore_index=True)

    def _spells(self, ev: Events, kind: str) -> pd.DataFrame:
        admitted = self._days(ev.person, ev.month)
        return self._spell_frame(ev, admitted, kind, self.rng.random(len(ev)))

    def _spell_frame(
        self, ev: Events, admitted: np.ndarray, kind: str, u_los: np.ndarray
    ) -> pd.DataFrame:
        rng = self.rng
        n = len(ev)
        z = self.z[ev.person]
        if kind == "emergency":
            era_new = admitted >= HES_NEW_EMERGENCY_METHODS_FROM
            base = rng.choice(
                ["21", "22", "23", "24", "25", "X"], n, p=[0.70, 0.12, 0.02, 0.03, 0.01, 0.12]
            )
            other = np.where(
                era_new,
                rng.choice(["2A", "2B", "2C", "2D", "28"], n, p=[0.40, 0.32, 0.08, 0.16, 0.04]),
                "28",
            )
            method = np.where(base == "X", other, base)
            codes, p = _weights(EMERGENCY_DIAGNOSES)
            los = np.floor(np.exp(1.5 + 0.25 * z + 0.9 * _norm(u_los))).astype(int)
        elif kind == "elective":
            method = rng.choice(["11", "12", "13"], n, p=[0.55, 0.35, 0.10])
            codes, p = _weights(ELECTIVE_DIAGNOSES)
            los = np.where(rng.random(n) < 0.55, 0, np.floor(np.exp(0.8 + 0.8 * _norm(u_los))))
        else:
            method = rng.choice(["81", "82", "83"], n, p=[0.5, 0.3, 0.2])
            codes, p = _weights(EMERGENCY_DIAGNOSES)
            los = np.floor(np.exp(1.2 + 0.8 * _norm(u_los)))
        diag = rng.choice(codes, n, p=p)
        discharged = admitted + np.asarray(los, int).astype("timedelta64[D]")
        died = self.death_day[ev.person]
        at_death = ~np.isnat(died) & (discharged >= died)
        discharged = np.where(at_death, np.maximum(died, admitted), discharged)
        dest = np.where(
            at_death,
            "died",
            rng.choice(["usual residence", "care home", "other hospital"], n, p=[0.90, 0.06, 0.04]),
        )
        return pd.DataFrame(
            {
                "i": ev.person,
                "t": ev.month,
                "in_obs": ev.in_obs,
                "in_cf": ev.in_cf,
                "admitted_on": admitted,
                "discharged_on": discharged,
                "admission_method": method,
                "primary_diagnosis": diag,
                "discharge_destination": dest,
                "emergency": np.isin(method, EMERGENCY_METHODS),
                "rr": self.rr_em[ev.person, ev.month] if kind == "emergency" else 1.0,
            }
        )

    def _readmissions(self, parents: pd.DataFrame) -> pd.DataFrame:
        """Emergency re-admissions clustered in the 30 days after a discharge."""
        rng, tl = self.rng, self.tl
        i = parents["i"].to_numpy()
        v = rng.random(len(i))
        gap = np.minimum(np.floor(rng.exponential(9.0, len(i))), 28).astype(int) + 1
        date = parents["discharged_on"].to_numpy().astype("datetime64[D]") + gap.astype(
            "timedelta64[D]"
        )
        month = (date.astype("datetime64[M]") - tl.start).astype(int)
        ok = (parents["discharge_destination"].to_numpy() != "died") & (month < self.T)
        ok &= date <= tl.last_day
        died = self.death_day[i]
        ok &= np.isnat(died) | (date <= died)
        month_c = np.clip(month, 0, self.T - 1)
        ok &= self.act[i, month_c]
        p = np.minimum(self.rates["readmission_probability"] * np.sqrt(self.u[i]), 0.6)
        rr = parents["rr"].to_numpy()
        in_cf = ok & parents["in_cf"].to_numpy() & (v < p)
        in_obs = ok & parents["in_obs"].to_numpy() & (v < p * rr)
        keep = in_cf | in_obs
        ev = Events(i[keep], month_c[keep], in_obs[keep], in_cf[keep])
        return self._spell_frame(ev, date[keep], "emergency", rng.random(keep.sum()))

    def _care_homes(self) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
        rng, rates, T = self.rng, self.rates, self.T
        age_c = self.age - 75.0
        h = np.where(
            self.act & ~self.is_chp[:, None],
            rates["care_home_permanent"]
            * np.exp(
                0.07 * age_c
                + 0.6 * self.z[:, None]
                + 0.3 * np.log(self.u)[:, None]
                + 0.5 * self.ctx
            ),
            0.0,
        )
        e = rng.exponential(1.0, self.n)
        ch_obs = first_crossing(np.cumsum(h * self.rr_ch, axis=1), e, NEVER)
        ch_cf = first_crossing(np.cumsum(h, axis=1), e, NEVER)
        nursing = rng.random(self.n) < sigmoid(-0.4 + 0.8 * self.z)
        frac = rng.random(self.n)
        rows = []
        for ch, in_obs, in_cf in ((ch_obs, True, False), (ch_cf, False, True)):
            who = np.flatnonzero(ch < T)
            rows.append(
                pd.DataFrame(
                    {
                        "i": who,
                        "t": ch[who],
                        "in_obs": in_obs,
                        "in_cf": in_cf,
                        "admitted_on": self.tl.day_of(
                            ch[who],
                            frac[who] * self.month_days[who, ch[who]] / self.tl.days[ch[who]],
                        ),
                        "home_type": np.where(nursing[who], "nursing", "residential"),
                        "permanent": True,
                    }
                )
            )
        t = np.arange(T)[None, :]
        # respite stays only before a permanent admission in either world, so the draws (and
        # hence the whole world) do not depend on the effect sizes
        first = np.minimum(ch_obs, ch_cf)
        lam_tmp = np.where(
            self.act & (t < first[:, None]) & ~self.is_chp[:, None],
            rates["care_home_temporary"],
            0.0,
        )
        tmp = coupled(lam_tmp, None, rng)
        rows.append(
            pd.DataFrame(
                {
                    "i": tmp.person,
                    "t": tmp.month,
                    "in_obs": True,
                    "in_cf": True,
                    "admitted_on": self._days(tmp.person, tmp.month),
                    "home_type": rng.choice(["residential", "nursing"], len(tmp), p=[0.7, 0.3]),
                    "permanent": False,
                }
            )
        )
        return pd.concat(rows, ignore_index=True), ch_obs, ch_cf

    def _deaths(self, ch_obs: np.ndarray, ch_cf: np.ndarray, spells: pd.DataFrame) -> pd.DataFrame:
        """Place of death; a death during a hospital stay of that world is in hospital."""
        rng = self.rng
        who = np.flatnonzero(self.death < self.T)
        dm = self.death[who]
        community = np.log(np.array([24, 3, 55, 8, 10], float))
        resident = np.log(np.array([1, 65, 28, 3, 3], float))
        u = rng.random(len(who))
        treated = self.treated[who, dm]
        out = {}
        for name, ch in (("obs", ch_obs), ("cf", ch_cf)):
            in_home = self.is_chp[who] | (ch[who] < dm)
            logits = np.where(in_home[:, None], resident, community) + 0.0
            if name == "obs":
                logits[:, 0] += self.eff["mdg_home_death_log_odds"] * treated
            p = np.exp(logits)
            cum = np.cumsum(p / p.sum(axis=1, keepdims=True), axis=1)
            place = np.asarray(PLACES)[np.minimum((cum < u[:, None]).sum(axis=1), 4)]
            in_stay = spells.loc[
                (spells["discharge_destination"] == "died") & spells[f"in_{name}"], "i"
            ].to_numpy()
            out[name] = np.where(np.isin(who, in_stay), "hospital", place)
        return pd.DataFrame(
            {
                "i": who,
                "t": dm,
                "died_on": self.death_day[who],
                "place_of_death": out["obs"],
                "place_cf": out["cf"],
            }
        )

    def _ae(self, spells: pd.DataFrame) -> pd.DataFrame:
        rng, tl, rates = self.rng, self.tl, self.rates
        launch = tl.index(self.scn["contact_centre"]["launch"])
        t = np.arange(self.T)[None, :]
        lam = np.where(
            self.act,
            rates["ae_non_admitted"]
            * np.exp(
                0.01 * (self.age - 75.0)
                + 0.35 * self.z[:, None]
                + 0.6 * np.log(self.u)[:, None]
                + self.ctx
                - 0.5 * 0.35**2
            ),
            0.0,
        )
        ratio = np.where(t >= launch, self.eff["contact_centre_ae_rr"], 1.0) * np.ones_like(lam)
        ev = coupled(lam, ratio, rng)
        walk = pd.DataFrame(
            {
                "i": ev.person,
                "t": ev.month,
                "in_obs": ev.in_obs,
                "in_cf": ev.in_cf,
                "arrived_on": self._days(ev.person, ev.month),
                "disposal": rng.choice(AE_DISPOSALS, len(ev), p=[0.70, 0.15, 0.10, 0.05]),
            }
        )
        via_ae = spells[spells["admission_method"] == "21"]
        admitted = pd.DataFrame(
            {
                "i": via_ae["i"],
                "t": via_ae["t"],
                "in_obs": via_ae["in_obs"],
                "in_cf": via_ae["in_cf"],
                "arrived_on": via_ae["admitted_on"],
                "disposal": "admitted",
            }
        )
        return pd.concat([walk, admitted], ignore_index=True)

    def _gp(self, ch_obs: np.ndarray) -> pd.DataFrame:
        rng = self.rng
        lam = np.where(
            self.act,
            self.rates["gp_contact"]
            * np.exp(
                0.012 * (self.age - 75.0)
                + 0.25 * self.z[:, None]
                + 0.4 * np.log(self.u)[:, None]
                + 0.5 * self.ctx
                - 0.5 * 0.25**2
            )
            * np.where(self.age < 65, 0.5, 1.0),
            0.0,
        )
        ev = coupled(lam, None, rng)
        i, t = ev.person, ev.month
        in_home = self.is_chp[i] | (ch_obs[i] < t)
        p_home = sigmoid(-3.0 + 0.04 * (self.age[i, t] - 75.0) + 0.8 * self.z[i] + 2.0 * in_home)
        v = rng.random(len(i))
        ctype = np.where(v < p_home, "home", np.where(v < p_home + 0.22, "telephone", "surgery"))
        return pd.DataFrame({"i": i, "t": t, "contact_on": self._days(i, t), "contact_type": ctype})

    def _flu(self) -> pd.DataFrame:
        rng, tl = self.rng, self.tl
        uptake = self.rates["flu_uptake"]
        a = np.log(uptake / (1 - uptake)) * np.sqrt(1 + np.pi * 1.4**2 / 8)
        # ``flu_uptake`` is the uptake in the calendar's middle year (the floor of the mean of
        # its first and last years), derived from the calendar, not a scenario parameter
        centre = (int(tl.year[0]) + int(tl.year[-1])) // 2
        rows = []
        for t_oct in np.flatnonzero(tl.calendar_month == 10):
            who = np.flatnonzero(self.act[:, t_oct] & (self.age[:, t_oct] >= 65))
            trend = FLU_TREND_PER_YEAR * (tl.year[t_oct] - centre)
            yes = rng.random(len(who)) < sigmoid(a + trend + 1.4 * self.w_flu[who])
            offset = np.minimum(np.floor(rng.gamma(2.0, 16.0, len(who))), 107).astype(int)
            # the campaign opens on 15 September (which may precede the calendar's start)
            sept = (tl.months[t_oct] - 1).astype("datetime64[D]")
            day = sept + 14 + offset.astype("timedelta64[D]")
            died = self.death_day[who]
            # the last season's late vaccinations fall after the extract ends: not observed
            yes &= (np.isnat(died) | (day <= died)) & (day <= tl.last_day)
            yes &= day >= tl.first_day[0]
            rows.append(pd.DataFrame({"i": who[yes], "vaccinated_on": day[yes]}))
        return pd.concat(rows, ignore_index=True)

    def _calls(self) -> pd.DataFrame:
        """Inbound calls to the centre of contact, rising after the launch."""
        rng, tl = self.rng, self.tl
        cc = self.scn["contact_centre"]
        launch = tl.index(cc["launch"])
        t = np.arange(self.T)[None, :]
        ramp = np.clip((t - launch + 1) / cc["ramp_months"], 0, 1)
        lam = np.where(
            self.old,
            cc["inbound_per_person_month"]
            * ramp
            * np.exp(0.3 * self.z[:, None])
            * np.sqrt(self.u)[:, None],
            0.0,
        )
        ev = coupled(lam, None, rng)
        i, m = ev.person, ev.month
        reason = rng.choice(CALL_REASONS, len(i), p=[0.45, 0.35, 0.20])
        return pd.DataFrame(
            {
                "i": i,
                "called_on": self._days(i, m),
                "direction": "inbound",
                "reason": reason,
                "duration_min": np.round(rng.gamma(2.0, 4.0, len(i)) + 1.0, 1),
            }
        )

    # ------------------------------------------------------------------ cohort
    def _cohort(self, in_home_from: np.ndarray) -> pd.DataFrame:
        rng, tl, co = self.rng, self.tl, self.scn["cohort"]
        d0 = np.datetime64(co["recruit_from"], "D")
        d1 = np.datetime64(co["recruit_to"], "D")
        rd = d0 + np.floor(rng.random(self.n) * ((d1 - d0).astype(int) + 1)).astype(
            "timedelta64[D]"
        )
        m = (rd.astype("datetime64[M]") - tl.start).astype(int)
        died = self.death_day
        elig = (
            self.old[np.arange(self.n), m]
            & ~self.is_chp
            & (self.n_ltc >= 1)
            & (in_home_from > m)
            & (np.isnat(died) | (rd < died))
        )
        u = rng.random((self.n, 4))
        who = np.flatnonzero(elig & (u[:, 0] < co["recruit_probability"]))
        linkage = (u[who, 1] < co["consent_linkage"]).astype(int)
        trials = (u[who, 2] < co["consent_trials"]).astype(int)
        # withdrawals by the last day of the month WITHDRAWAL_MARGIN_MONTHS before the
        # calendar's last month (derived from the calendar)
        cutoff = (tl.end - WITHDRAWAL_MARGIN_MONTHS + 1).astype("datetime64[D]") - np.timedelta64(
            1, "D"
        )
        w_end = np.where(np.isnat(died[who]), cutoff, np.minimum(died[who], cutoff))
        span = np.maximum((w_end - rd[who]).astype(int) - 30, 1)
        w_day = rd[who] + 30 + np.floor(rng.random(len(who)) * span).astype("timedelta64[D]")
        withdrawn = np.where(
            u[who, 3] < co["withdrawal_probability"], w_day, np.datetime64("NaT", "D")
        )
        social = np.clip(
            np.floor(sigmoid(self.z[who] - 0.5) * 3 + rng.random(len(who)) - 0.5), 0, 2
        ).astype(int)
        return pd.DataFrame(
            {
                "i": who,
                "recruited_on": rd[who],
                "practice": self.P[who, m[who]],
                "consent_linkage": linkage,
                "consent_trials": trials,
                "withdrawn_on": withdrawn,
                "social_care_need": social,
            }
        )

    def _waves(self, cohort: pd.DataFrame, events: dict[str, pd.DataFrame]) -> pd.DataFrame:
        """Every (member, wave) a questionnaire could come back, with self-reported use."""
        rng, tl, co = self.rng, self.tl, self.scn["cohort"]
        rows = []
        who = cohort["i"].to_numpy()
        for w in range(1, int(co["waves"]) + 1):
            field = wave_field_day(co["first_wave"], w)
            delay = np.minimum(np.floor(rng.gamma(2.0, 10.0, len(who))), 80).astype(int)
            ret = field + (FIRST_RETURN_DAYS + delay).astype("timedelta64[D]")
            m = (ret.astype("datetime64[M]") - tl.start).astype(int)
            died = self.death_day[who]
            wd = cohort["withdrawn_on"].to_numpy()
            # members recruited during a wave's fieldwork are sent that wave's questionnaire
            ok = cohort["recruited_on"].to_numpy() <= field + np.timedelta64(30, "D")
            ok &= (ret <= tl.last_day) & (ret > cohort["recruited_on"].to_numpy())
            ok &= (np.isnat(died) | (ret < died)) & (np.isnat(wd) | (ret < wd))
            m = np.clip(m, 0, self.T - 1)
            ok &= self.reg[who, m]
            rows.append(
                pd.DataFrame(
                    {
                        "i": who[ok],
                        "wave": w,
                        "returned_on": ret[ok],
                        "practice": self.P[who[ok], m[ok]],
                        "month": m[ok],
                        "exposed": self.exposed[who[ok], m[ok]],
                        "taken_on": self.taken_day[who[ok]] <= ret[ok],
                        "age": self.age[who[ok], m[ok]],
                    }
                )
            )
        waves = pd.concat(rows, ignore_index=True)
        lo = waves["returned_on"].to_numpy() - np.timedelta64(182, "D")
        hi = waves["returned_on"].to_numpy()
        for name, frame, col in (
            ("gp_visits_6m", events["gp"], "contact_on"),
            ("ae_visits_6m", events["ae"], "arrived_on"),
        ):
            waves[name] = _count_between(
                frame["i"].to_numpy(), frame[col].to_numpy(), waves["i"].to_numpy(), lo, hi
            )
        sp = events["spells"]
        nights = (sp["discharged_on"] - sp["admitted_on"]).dt.days.to_numpy()
        waves["nights_in_hospital_6m"] = _count_between(
            sp["i"].to_numpy(),
            sp["admitted_on"].to_numpy(),
            waves["i"].to_numpy(),
            lo,
            hi,
            weights=nights,
        )
        return waves

    # ------------------------------------------------------------------ run
    def run(self) -> dict[str, pd.DataFrame]:
        """Simulate the chunk; returns internal frames keyed by kind (both worlds flagged)."""
        self._people()
        self._grid()
        parts = {"risk": self._mdg(), "spells": self._hospital()}
        parts["homes"], ch_obs, ch_cf = self._care_homes()
        parts["deaths"] = self._deaths(ch_obs, ch_cf, parts["spells"])
        parts["ae"] = self._ae(parts["spells"])
        parts["gp"] = self._gp(ch_obs)
        parts["flu"] = self._flu()
        parts["calls"] = self._calls()
        # community-dwelling in both worlds, so who is recruited does not depend on effects
        parts["cohort"] = self._cohort(np.minimum(ch_obs, ch_cf))
        spells, ae = parts["spells"], parts["ae"]
        parts["waves"] = self._waves(
            parts["cohort"],
            {"gp": parts["gp"], "ae": ae[ae["in_obs"]], "spells": spells[spells["in_obs"]]},
        )
        return parts


def _norm(u: np.ndarray) -> np.ndarray:
    """Standard normal quantiles of uniforms (length-of-stay draws shared by both worlds)."""
    from scipy.special import ndtri

    return ndtri(np.clip(u, 1e-9, 1 - 1e-9))


def _count_between(
    ev_i: np.ndarray,
    ev_day: np.ndarray,
    q_i: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    weights: np.ndarray | None = None,
) -> np.ndarray:
    """For each query (person, lo, hi], the number (or weighted sum) of that person's events."""
    day = ev_day.astype("datetime64[D]").astype(np.int64)
    key = ev_i.astype(np.int64) * 100_000 + (day - day.min() if len(day) else day)
    base = day.min() if len(day) else 0
    order = np.argsort(key, kind="stable")
    key = key[order]
    w = np.ones(len(key)) if weights is None else np.asarray(weights, float)[order]
    csum = np.concatenate([[0.0], np.cumsum(w)])
    # query bounds in days, like the events (frames hand them over as datetime64[s] or [ns])
    lo_day = np.asarray(lo).astype("datetime64[D]").astype(np.int64)
    hi_day = np.asarray(hi).astype("datetime64[D]").astype(np.int64)
    qlo = q_i.astype(np.int64) * 100_000 + (lo_day - base)
    qhi = q_i.astype(np.int64) * 100_000 + (hi_day - base)
    a = np.searchsorted(key, qlo, side="right")
    b = np.searchsorted(key, qhi, side="right")
    return (csum[b] - csum[a]).round().astype(int)

"""Replaying the compiled dbt project on a simulated world (sicp.dbt_replay) gives the marts a
real ``sicp ingest`` + ``dbt build`` gives, so the Monte Carlo study fits the warehouse's own
definitions (issue 20: no second implementation of the marts)."""

from __future__ import annotations

import pandas as pd
import pytest

from sicp.dbt_replay import CompiledProject, build_marts, loaded_sources
from sicp.dbt_schema import marts
from sicp.synth import simulate_world
from tests.worlds import BuiltWorld, query


def test_replayed_marts_equal_the_built_marts(
    small_dbt_world: BuiltWorld, compiled_project: CompiledProject
) -> None:
    assert small_dbt_world.build.returncode == 0, small_dbt_world.build.stdout[-3000:]
    world = simulate_world("small", int(small_dbt_world.truth["seed"]))
    recruitment = world.frames["recruitment"]
    # The world exercises the consent rules of both scopes and practice moves.
    assert recruitment["withdrawn_on"].notna().any()
    assert (recruitment["consent_linkage"] == 0).any()
    assert len(world.frames["practice_moves"]) > 0
    names = sorted(marts())
    replayed = build_marts(compiled_project, world.frames, names)
    for name in names:
        built = query(small_dbt_world.warehouse, f"select * from marts.{name} order by all")
        assert len(built) > 0, name
        pd.testing.assert_frame_equal(replayed[name], built, check_exact=True, obj=name)
    # One mart on its own ingests only the sources it reads, and the sources whose load writes
    # the bookkeeping tables it reads: the consent exclusions come from recruitment, which
    # practice_month_panel does not read itself.
    assert "recruitment" not in compiled_project.sources(["practice_month_panel"])
    assert "consent_exclusions" in compiled_project.sources(["practice_month_panel"])
    alone = build_marts(compiled_project, world.frames, ["practice_month_panel"])
    pd.testing.assert_frame_equal(
        alone["practice_month_panel"], replayed["practice_month_panel"], check_exact=True
    )


def test_a_world_whose_extracts_start_later_moves_the_window(
    compiled_project: CompiledProject,
) -> None:
    """The window is what the extracts cover: GP contacts delivered for 2013-07 to 2019-06
    only start the panels (and period 1) in July, and a practice that started before is
    treated from period 1."""
    frames = dict(simulate_world("small", 2).frames)
    contacts = frames["gp_contacts"]
    frames["gp_contacts"] = contacts.loc[
        contacts["contact_on"].between(pd.Timestamp("2013-07-01"), pd.Timestamp("2019-06-30"))
    ].reset_index(drop=True)
    practice = build_marts(compiled_project, frames, ["practice_month_panel"])[
        "practice_month_panel"
    ]
    assert practice["month"].min() == pd.Timestamp("2013-07-01")
    assert practice["month"].max() == pd.Timestamp("2019-06-01")
    early = frames["practices"]["mdg_start_date"] < pd.Timestamp("2013-07-01")
    assert early.any()
    treated_from_start = practice.loc[
        practice["practice_code"].isin(frames["practices"].loc[early, "practice_code"])
    ]
    assert (treated_from_start["start_period"] == 1).all()
    assert (treated_from_start["in_mdg_scope"] == 1).all()


def test_a_bookkeeping_table_brings_the_sources_whose_load_writes_it() -> None:
    assert loaded_sources({"consent_exclusions", "hospital_spells"}) == {
        "recruitment",
        "hospital_spells",
    }
    assert loaded_sources({"survey_missing_reasons"}) == {"survey_wave"}
    assert {"survey_wave", "recruitment"} <= loaded_sources({"value_labels"})
    assert loaded_sources({"contract_vocabulary"}) == set()  # written by every ingest


def test_only_what_the_marts_read_is_replayed(compiled_project: CompiledProject) -> None:
    order = compiled_project.upstream(["area_month_panel"])
    names = [compiled_project.nodes[u]["name"] for u in order]
    assert names[-1] == "area_month_panel" and "person_month_panel" not in names
    assert compiled_project.sources(["area_month_panel"]) == {"area_month_indicators", "study_area"}
    full = compiled_project.upstream(["practice_month_panel"])
    position = {uid: i for i, uid in enumerate(full)}
    for uid in full:  # everything a node reads comes before it
        for dep in compiled_project.nodes[uid]["depends_on"]:
            if dep in position:
                assert position[dep] < position[uid], (dep, uid)
    with pytest.raises(ValueError, match="no such marts"):
        compiled_project.upstream(["no_such_mart"])

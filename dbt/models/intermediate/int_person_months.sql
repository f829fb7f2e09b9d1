{#- Person x month for the registered older population. A person-month exists when a
    registration spell is in force on the first day of the month (registered_from <= month <=
    registered_until; stg_population__registrations ends a spell when the next one starts, so
    there is one practice per person-month), the person is var('older_age')+ that year (age =
    calendar year minus birth year) and has not died before the month began. Exposure comes
    from the practice at that month (practice exposure) and the MDG caseload (individual
    exposure); the risk tier is that of the quarter containing the month.
    A table (the intermediate default), not a view: person_month_panel and
    int_person_month_costs both read it, and as a view each re-ran the range join with the
    month spine, whose output DuckDB estimates at a few thousand rows; it then built its hash
    joins on the millions of person-months, which exhausted memory at Greater Manchester scale.
    Materialised, the row count is known and the joins build on the smaller side. -#}
with registered as (
    select
        r.person_id,
        r.practice_code,
        r.birth_year,
        r.sex,
        r.imd_decile,
        m.month,
        m.period,
        m.month_end,
        m.flu_season
    from {{ ref('stg_population__registrations') }} as r
    inner join {{ ref('int_months') }} as m
        on r.registered_from <= m.month
       and (r.registered_until is null or r.registered_until >= m.month)
    where {{ date_part('year', 'm.month') }} - r.birth_year >= {{ var('older_age') }}
)
select
    g.person_id,
    g.month,
    g.period,
    g.practice_code,
    pm.neighbourhood,
    pm.mdg,
    pm.rollout_wave,
    {{ date_part('year', 'g.month') }} - g.birth_year as age,
    g.sex,
    g.imd_decile,
    rs.risk_tier,
    pm.in_mdg_scope,
    pm.months_since_start,
    {{ in_effect('t.taken_on_month', 'g.month') }} as taken_on,
    {{ months_since('t.taken_on_month', 'g.month') }} as months_since_taken_on,
    g.month_end,
    g.flu_season
from registered as g
inner join {{ ref('int_practice_months') }} as pm
    on pm.practice_code = g.practice_code
   and pm.month = g.month
left join {{ ref('stg_deaths__deaths') }} as d
    on d.person_id = g.person_id
left join {{ ref('int_person_taken_on') }} as t
    on t.person_id = g.person_id
left join {{ ref('stg_risk_scores__scores') }} as rs
    on rs.person_id = g.person_id
   and rs.quarter_start = cast({{ dbt.date_trunc('quarter', 'g.month') }} as date)
where d.died_on is null or d.died_on >= g.month

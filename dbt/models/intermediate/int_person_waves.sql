{#- Person x survey wave exposure at the questionnaire date: the practice the person was with on
    returned_on (moves applied; the recruitment practice for returns before recruitment), its MDG
    exposure in that month, and individual exposure (taken on by the MDG on or before the
    return). taken_on is NULL for people without record-linkage consent (caseload unknown). -#}
with located as (
    select
        w.person_id,
        w.wave,
        w.returned_on,
        {{ month_of('w.returned_on') }} as returned_month,
        s.practice_code,
        row_number() over (
            partition by w.person_id, w.wave
            order by case when s.from_date <= w.returned_on then 0 else 1 end,
                     case when s.from_date <= w.returned_on then s.from_date end desc,
                     s.from_date
        ) as spell_rank
    from {{ ref('stg_survey_wave__responses') }} as w
    inner join {{ ref('int_cohort_practice_spells') }} as s
        on s.person_id = w.person_id
)

select
    l.person_id,
    l.wave,
    l.returned_on,
    l.returned_month,
    l.practice_code,
    p.neighbourhood,
    p.mdg,
    p.rollout_wave,
    p.mdg_start_month,
    case when p.mdg_start_month is not null and l.returned_month >= p.mdg_start_month then 1 else 0 end as in_mdg_scope,
    case when p.mdg_start_month is not null and l.returned_month >= p.mdg_start_month
        then {{ dbt.datediff('p.mdg_start_month', 'l.returned_month', 'month') }}
    end as months_since_start,
    case
        when r.consent_linkage = 0 then null
        when t.taken_on_date is not null and t.taken_on_date <= l.returned_on then 1
        else 0
    end as taken_on,
    case when r.consent_linkage = 1 and t.taken_on_date is not null and t.taken_on_date <= l.returned_on
        then {{ dbt.datediff('t.taken_on_month', 'l.returned_month', 'month') }}
    end as months_since_taken_on
from located as l
inner join {{ ref('stg_recruitment__cohort_members') }} as r
    on r.person_id = l.person_id
left join {{ ref('int_practices') }} as p
    on p.practice_code = l.practice_code
left join {{ ref('int_person_taken_on') }} as t
    on t.person_id = l.person_id
where l.spell_rank = 1

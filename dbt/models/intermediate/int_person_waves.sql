{#- Person x survey wave exposure at the questionnaire date: the practice the person was with on
    returned_on (moves applied; the recruitment practice for returns before recruitment), its MDG
    exposure in that month, and individual exposure (taken on by the MDG on or before the
    return). taken_on is NULL for people without record-linkage consent (caseload unknown). -#}
with returns as (
    select person_id, wave, returned_on, {{ month_of('returned_on') }} as returned_month
    from {{ ref('stg_survey_wave__responses') }}
),

located as (
    {{ practice_on_date('returns', ['person_id', 'wave'], 'returned_on') }}
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
    {{ in_effect('p.mdg_start_month', 'l.returned_month') }} as in_mdg_scope,
    {{ months_since('p.mdg_start_month', 'l.returned_month') }} as months_since_start,
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

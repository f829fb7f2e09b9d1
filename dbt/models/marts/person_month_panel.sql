{#- One row per person-month of the registered 65+ population (int_person_months), with
    practice and individual MDG exposure and the month's outcome counts: events of each measure
    (int_outcome_events) in the month, and flu_vaccinated = 1 in a season month (Sep-Mar) once
    the person has been vaccinated in that season by the end of the month (NULL outside the
    season). -#}
{%- set measures = ['emergency_admissions', 'emergency_readmissions_30d', 'ae_attendances',
                    'acsc_emergency_admissions', 'permanent_care_home_admissions', 'deaths',
                    'deaths_at_home', 'flu_vaccinations'] %}
with counts as (
    select
        person_id,
        event_month,
        {%- for m in measures %}
        sum(case when measure = '{{ m }}' then 1 else 0 end) as {{ m }}{% if not loop.last %},{% endif %}
        {%- endfor %}
    from {{ ref('int_outcome_events') }}
    group by person_id, event_month
)

select
    pm.person_id,
    pm.month,
    pm.period,
    pm.practice_code,
    pm.neighbourhood,
    pm.mdg,
    pm.rollout_wave,
    pm.age,
    pm.sex,
    pm.imd_decile,
    pm.risk_tier,
    pm.in_mdg_scope,
    pm.months_since_start,
    pm.taken_on,
    pm.months_since_taken_on,
    pm.flu_season,
    {%- for m in measures %}
    coalesce(c.{{ m }}, 0) as {{ m }},
    {%- endfor %}
    case
        when pm.flu_season is null then null
        when f.first_vaccinated_on <= pm.month_end then 1
        else 0
    end as flu_vaccinated
from {{ ref('int_person_months') }} as pm
left join counts as c
    on c.person_id = pm.person_id
   and c.event_month = pm.month
left join {{ ref('int_flu_person_seasons') }} as f
    on f.person_id = pm.person_id
   and f.flu_season = pm.flu_season

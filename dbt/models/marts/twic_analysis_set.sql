{#- One row per randomised cohort member of the telephone health-coaching trial: arm, offer,
    acceptance (0 in the control arm, who are never contacted), baseline (wave
    var('twic_baseline_wave')) and follow-up (wave var('twic_followup_wave')) scores, emergency
    admissions in the 12 months from randomisation (NULL without record-linkage consent), and
    baseline covariates. -#}
{%- set scores = ['selfman_score', 'eq5d_index', 'pacic_score', 'wellbeing_score'] %}
with admissions as (
    select a.person_id, count(*) as emergency_admissions_12m
    from {{ ref('stg_coaching_randomisation__allocations') }} as a
    inner join {{ ref('int_hospital_spells__classified') }} as h
        on h.person_id = a.person_id
       and h.is_emergency = 1
       and h.admitted_on >= a.randomised_on
       and h.admitted_on < {{ add_to_date('month', 12, 'a.randomised_on') }}
    group by a.person_id
),

practice_at_randomisation as (
    select
        a.person_id,
        s.practice_code,
        row_number() over (
            partition by a.person_id
            order by case when s.from_date <= a.randomised_on then 0 else 1 end,
                     case when s.from_date <= a.randomised_on then s.from_date end desc,
                     s.from_date
        ) as spell_rank
    from {{ ref('stg_coaching_randomisation__allocations') }} as a
    inner join {{ ref('int_cohort_practice_spells') }} as s
        on s.person_id = a.person_id
)

select
    a.person_id,
    a.randomised_on,
    a.stratum,
    a.arm,
    a.offered,
    case when a.offered = 1 then coalesce(u.accepted, 0) else 0 end as accepted,
    case when a.offered = 1 then coalesce(u.sessions_completed, 0) else 0 end as sessions_completed,
    pr.practice_code,
    p.neighbourhood,
    {%- for s in scores %}
    b.{{ s }} as {{ s }}_baseline,
    f.{{ s }} as {{ s }}_followup,
    {%- endfor %}
    case when r.consent_linkage = 1 then coalesce(ad.emergency_admissions_12m, 0) end as emergency_admissions_12m,
    r.age_at_recruitment,
    r.sex,
    r.imd_decile,
    r.n_ltc,
    r.social_care_need,
    r.consent_linkage
from {{ ref('stg_coaching_randomisation__allocations') }} as a
inner join {{ ref('stg_recruitment__cohort_members') }} as r
    on r.person_id = a.person_id
left join {{ ref('stg_coaching_uptake__uptake') }} as u
    on u.person_id = a.person_id
left join practice_at_randomisation as pr
    on pr.person_id = a.person_id
   and pr.spell_rank = 1
left join {{ ref('int_practices') }} as p
    on p.practice_code = pr.practice_code
left join {{ ref('int_survey_wave__scores') }} as b
    on b.person_id = a.person_id
   and b.wave = {{ var('twic_baseline_wave') }}
left join {{ ref('int_survey_wave__scores') }} as f
    on f.person_id = a.person_id
   and f.wave = {{ var('twic_followup_wave') }}
left join admissions as ad
    on ad.person_id = a.person_id

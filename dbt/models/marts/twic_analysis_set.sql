{#- One row per randomised cohort member of the telephone health-coaching trial: arm, offer,
    acceptance (0 in the control arm, who are never contacted), baseline and follow-up scores
    (the waves int_trial_design derives from the randomisation and wave dates), emergency
    admissions in the 12 months from randomisation (NULL without record-linkage consent), and
    baseline covariates. Economics: cost_12m / cost_baseline_12m price the trial's resource items
    (int_utilisation_events) in the 12 months after / before randomisation (NULL without
    record-linkage consent); qaly_12m is the EQ-5D index area under the curve from the baseline
    to the follow-up questionnaire (trapezoid over the waves answered in between, each segment
    as long as the months between the waves' reference months), NULL unless both ends were
    answered. -#}
{%- set scores = ['selfman_score', 'eq5d_index', 'pacic_score', 'wellbeing_score'] %}
{%- set trial_cost_items = ['emergency_admission', 'elective_admission', 'ae_attendance',
                            'gp_contact', 'coaching_session'] %}
with admissions as (
    select a.person_id, count(*) as emergency_admissions_12m
    from {{ ref('stg_coaching_randomisation__allocations') }} as a
    inner join {{ ref('int_hospital_spells__classified') }} as h
        on h.person_id = a.person_id
       and h.is_emergency = 1
       and {{ in_month_window('h.admitted_on', 'a.randomised_on', 0, 12) }}
    group by a.person_id
),

trial_costs as (
    select
        a.person_id,
        {{ exact_sum('case when e.event_date >= a.randomised_on then e.cost_gbp else 0 end') }} as cost_12m,
        {{ exact_sum('case when e.event_date < a.randomised_on then e.cost_gbp else 0 end') }} as cost_baseline_12m
    from {{ ref('stg_coaching_randomisation__allocations') }} as a
    inner join {{ ref('int_utilisation_events') }} as e
        on e.person_id = a.person_id
       and e.item in ({% for i in trial_cost_items %}'{{ i }}'{% if not loop.last %}, {% endif %}{% endfor %})
       and {{ in_month_window('e.event_date', 'a.randomised_on', -12, 12) }}
    group by a.person_id
),

utility_segments as (
    select
        u.person_id,
        u.wave,
        {{ dbt.datediff('lag(w.wave_month) over (partition by u.person_id order by u.wave)', 'w.wave_month', 'month') }} / 12.0
            * (u.eq5d_index + lag(u.eq5d_index) over (partition by u.person_id order by u.wave)) / 2.0 as area
    from {{ ref('int_survey_wave__scores') }} as u
    inner join {{ ref('stg_coaching_randomisation__allocations') }} as a
        on a.person_id = u.person_id
    inner join {{ ref('int_survey_waves') }} as w
        on w.wave = u.wave
    cross join {{ ref('int_trial_design') }} as d
    where u.eq5d_index is not null
      and u.wave between d.baseline_wave and d.followup_wave
),

qalys as (
    select s.person_id, {{ exact_sum('s.area') }} as qaly_12m
    from utility_segments as s
    cross join {{ ref('int_trial_design') }} as d
    group by s.person_id, d.baseline_wave, d.followup_wave
    having min(s.wave) = d.baseline_wave and max(s.wave) = d.followup_wave
),

practice_at_randomisation as (
    {{ practice_on_date(ref('stg_coaching_randomisation__allocations'), ['person_id'], 'randomised_on') }}
)

select
    a.person_id,
    a.randomised_on,
    a.stratum,
    a.arm,
    a.offered,
    d.baseline_wave,
    d.followup_wave,
    case when a.offered = 1 then coalesce(u.accepted, 0) else 0 end as accepted,
    case when a.offered = 1 then coalesce(u.sessions_completed, 0) else 0 end as sessions_completed,
    pr.practice_code,
    p.neighbourhood,
    {%- for s in scores %}
    b.{{ s }} as {{ s }}_baseline,
    f.{{ s }} as {{ s }}_followup,
    {%- endfor %}
    {{ linked_total('ad.emergency_admissions_12m', 'r.consent_linkage') }} as emergency_admissions_12m,
    r.age_at_recruitment,
    r.sex,
    r.imd_decile,
    r.n_ltc,
    r.social_care_need,
    r.consent_linkage,
    {{ linked_total('tc.cost_12m', 'r.consent_linkage') }} as cost_12m,
    {{ linked_total('tc.cost_baseline_12m', 'r.consent_linkage') }} as cost_baseline_12m,
    q.qaly_12m
from {{ ref('stg_coaching_randomisation__allocations') }} as a
cross join {{ ref('int_trial_design') }} as d
inner join {{ ref('stg_recruitment__cohort_members') }} as r
    on r.person_id = a.person_id
left join {{ ref('stg_coaching_uptake__uptake') }} as u
    on u.person_id = a.person_id
left join practice_at_randomisation as pr
    on pr.person_id = a.person_id
left join {{ ref('int_practices') }} as p
    on p.practice_code = pr.practice_code
left join {{ ref('int_survey_wave__scores') }} as b
    on b.person_id = a.person_id
   and b.wave = d.baseline_wave
left join {{ ref('int_survey_wave__scores') }} as f
    on f.person_id = a.person_id
   and f.wave = d.followup_wave
left join admissions as ad
    on ad.person_id = a.person_id
left join trial_costs as tc
    on tc.person_id = a.person_id
left join qalys as q
    on q.person_id = a.person_id

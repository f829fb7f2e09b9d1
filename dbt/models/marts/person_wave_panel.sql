{#- One row per returned questionnaire of a (non-withdrawn) cohort member: instrument scores,
    exposure at the return date (MDG; community-asset dose of the neighbourhood in the month of
    return), priced utilisation in the 6 months before it, and baseline covariates from
    recruitment. -#}
select
    x.person_id,
    x.wave,
    x.returned_on,
    x.practice_code,
    x.neighbourhood,
    x.mdg,
    x.rollout_wave,
    x.in_mdg_scope,
    x.months_since_start,
    x.taken_on,
    x.months_since_taken_on,
    s.eq5d_index,
    s.eq_vas,
    s.pacic_score,
    s.selfman_score,
    s.wellbeing_score,
    s.loneliness_score,
    s.satisfied_care,
    s.supported_selfcare,
    s.has_care_plan,
    s.gp_visits_6m,
    s.ae_visits_6m,
    s.nights_in_hospital_6m,
    r.age_at_recruitment,
    r.sex,
    r.imd_decile,
    r.n_ltc,
    r.social_care_need,
    r.recruited_on,
    r.consent_linkage,
    s.mode,
    s.mode_label,
    a.asset_dose,
    a.attendances_cum_per_1000_65plus as asset_attendances_per_1000,
    c.cost_6m,
    c.price_year
from {{ ref('int_person_waves') }} as x
inner join {{ ref('int_survey_wave__scores') }} as s
    on s.person_id = x.person_id
   and s.wave = x.wave
inner join {{ ref('stg_recruitment__cohort_members') }} as r
    on r.person_id = x.person_id
left join {{ ref('int_neighbourhood_asset_months') }} as a
    on a.neighbourhood = x.neighbourhood
   and a.month = x.returned_month
left join {{ ref('int_person_wave_costs') }} as c
    on c.person_id = x.person_id
   and c.wave = x.wave

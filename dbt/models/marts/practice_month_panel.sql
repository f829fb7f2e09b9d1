{#- One row per practice-month of the study window (int_months): MDG exposure, the 65+
    denominators and outcome counts summed from the person-month panel, and rates per 1,000
    person-months; contact-centre calls, A&E attendances not followed by admission and priced
    utilisation summed from int_person_month_costs over the same person-months. -#}
{%- set counts = ['emergency_admissions', 'emergency_readmissions_30d', 'ae_attendances',
                  'acsc_emergency_admissions', 'permanent_care_home_admissions', 'deaths',
                  'deaths_at_home', 'flu_vaccinations'] %}
with person_sums as (
    select
        practice_code,
        month,
        count(*) as person_months_65plus,
        {%- for c in counts %}
        sum({{ c }}) as {{ c }},
        {%- endfor %}
        sum(flu_vaccinated) as flu_vaccinated,
        sum(taken_on) as person_months_taken_on
    from {{ ref('person_month_panel') }}
    group by practice_code, month
),

programme_sums as (
    select
        practice_code,
        month,
        sum(contact_centre_calls) as contact_centre_calls,
        sum(ae_attendances_not_admitted) as ae_attendances_not_admitted,
        {{ exact_sum('cost_gbp') }} as cost_gbp
    from {{ ref('int_person_month_costs') }}
    group by practice_code, month
),

registered as (
    select practice_code, month, sum(registered) as registered_65plus
    from {{ ref('stg_practice_population__registered') }}
    where is_65plus = 1
    group by practice_code, month
)

select
    pm.practice_code,
    pm.practice_name,
    pm.neighbourhood,
    pm.mdg,
    pm.rollout_wave,
    pm.month,
    pm.period,
    pm.month_of_year,
    pm.mdg_start_month,
    {#- A start before the window counts as period 1 (treated throughout); 0 = never. #}
    case when pm.mdg_start_month is null then 0
        else greatest({{ period_of('pm.mdg_start_month') }}, 1) end as start_period,
    pm.in_mdg_scope,
    pm.months_since_start,
    pm.never_treated,
    coalesce(s.person_months_65plus, 0) as person_months_65plus,
    r.registered_65plus,
    {%- for c in counts %}
    coalesce(s.{{ c }}, 0) as {{ c }},
    {%- endfor %}
    s.flu_vaccinated,
    coalesce(s.person_months_taken_on, 0) as person_months_taken_on,
    {#- Rate names are kept within Stata's 32-character limit (the marts export to .dta). #}
    {%- for c, rate in [('emergency_admissions', 'emergency_admissions_per_1000'),
                        ('emergency_readmissions_30d', 'readmissions_30d_per_1000'),
                        ('ae_attendances', 'ae_attendances_per_1000'),
                        ('acsc_emergency_admissions', 'acsc_admissions_per_1000'),
                        ('permanent_care_home_admissions', 'care_home_admissions_per_1000'),
                        ('deaths', 'deaths_per_1000')] %}
    case when s.person_months_65plus > 0
        then 1000.0 * coalesce(s.{{ c }}, 0) / s.person_months_65plus
    end as {{ rate }},
    {%- endfor %}
    case when s.deaths > 0 then cast(s.deaths_at_home as {{ type_double() }}) / s.deaths end as share_deaths_at_home,
    case when s.person_months_65plus > 0 and s.flu_vaccinated is not null
        then cast(s.flu_vaccinated as {{ type_double() }}) / s.person_months_65plus
    end as flu_vaccinated_share,
    coalesce(c.contact_centre_calls, 0) as contact_centre_calls,
    coalesce(c.ae_attendances_not_admitted, 0) as ae_attendances_not_admitted,
    coalesce(c.cost_gbp, 0) as cost_gbp
from {{ ref('int_practice_months') }} as pm
left join person_sums as s
    on s.practice_code = pm.practice_code
   and s.month = pm.month
left join programme_sums as c
    on c.practice_code = pm.practice_code
   and c.month = pm.month
left join registered as r
    on r.practice_code = pm.practice_code
   and r.month = pm.month

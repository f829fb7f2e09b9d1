{#- One row per registered 65+ person-month (int_person_months): priced utilisation of the
    month from int_utilisation_events (quantity and cost of each item, total cost in the
    analysis price year) and contact-centre use (every call to or from the centre, coaching
    included). The practice-month panel sums these over its person-months. -#}
{%- set items = ['emergency_admission', 'elective_admission', 'ae_attendance', 'gp_contact',
                 'mdg_discussion', 'coaching_session', 'contact_centre_call'] %}
with sums as (
    select
        person_id,
        event_month,
        {%- for i in items %}
        sum(case when item = '{{ i }}' then 1 else 0 end) as n_{{ i }},
        {{ exact_sum("case when item = '" ~ i ~ "' then cost_gbp else 0 end") }} as cost_{{ i }}_gbp,
        {%- endfor %}
        sum(case when item = 'ae_attendance' and is_admitted = 0 then 1 else 0 end) as n_ae_not_admitted,
        {{ exact_sum('cost_gbp') }} as cost_gbp
    from {{ ref('int_utilisation_events') }}
    group by person_id, event_month
)

select
    pm.person_id,
    pm.month,
    pm.period,
    pm.practice_code,
    pm.neighbourhood,
    {%- for i in items %}
    coalesce(s.n_{{ i }}, 0) as n_{{ i }},
    coalesce(s.cost_{{ i }}_gbp, 0) as cost_{{ i }}_gbp,
    {%- endfor %}
    coalesce(s.n_ae_not_admitted, 0) as ae_attendances_not_admitted,
    coalesce(s.n_contact_centre_call, 0) + coalesce(s.n_coaching_session, 0) as contact_centre_calls,
    coalesce(s.cost_gbp, 0) as cost_gbp,
    p.price_year
from {{ ref('int_person_months') }} as pm
cross join (select max(price_year) as price_year from {{ ref('int_unit_costs__uplifted') }}) as p
left join sums as s
    on s.person_id = pm.person_id
   and s.event_month = pm.month

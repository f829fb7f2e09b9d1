{#- One row per registered 65+ person-month (int_person_months): priced utilisation of the
    month, the count of each item in int_utilisation_events times its unit cost in the analysis
    price year (int_unit_costs__uplifted, one row per item, the cost every event of that item
    carries), the total, and contact-centre use (every call to or from the centre, coaching
    included). The practice-month panel sums these over its person-months.
    Costs come from counts, not from summing the events' costs: the two are equal to the bit
    (exact_cost and exact_sum are exact DECIMAL arithmetic), and at Greater Manchester scale the
    per-event DECIMAL sums over 78 million events doubled the model's time. Only events inside
    a 65+ person-month are counted (the exists clause); most events belong to younger people
    and would be grouped only to be dropped by the left join. -#}
{%- set items = ['emergency_admission', 'elective_admission', 'ae_attendance', 'gp_contact',
                 'mdg_discussion', 'coaching_session', 'contact_centre_call'] %}
with counts as (
    select
        e.person_id,
        e.event_month,
        {%- for i in items %}
        sum(case when e.item = '{{ i }}' then 1 else 0 end) as n_{{ i }},
        {%- endfor %}
        sum(case when e.item = 'ae_attendance' and e.is_admitted = 0 then 1 else 0 end) as n_ae_not_admitted
    from {{ ref('int_utilisation_events') }} as e
    where exists (
        select 1
        from {{ ref('int_person_months') }} as q
        where q.person_id = e.person_id
          and q.month = e.event_month
    )
    group by e.person_id, e.event_month
),

unit_costs as (
    select
        {%- for i in items %}
        max(case when item = '{{ i }}' then unit_cost_uplifted_gbp end) as unit_cost_{{ i }},
        {%- endfor %}
        max(price_year) as price_year
    from {{ ref('int_unit_costs__uplifted') }}
),

quantities as (
    select
        pm.person_id,
        pm.month,
        pm.period,
        pm.practice_code,
        pm.neighbourhood,
        {%- for i in items %}
        coalesce(c.n_{{ i }}, 0) as n_{{ i }},
        {%- endfor %}
        coalesce(c.n_ae_not_admitted, 0) as ae_attendances_not_admitted
    from {{ ref('int_person_months') }} as pm
    left join counts as c
        on c.person_id = pm.person_id
       and c.event_month = pm.month
),

priced as (
    select
        q.*,
        {%- for i in items %}
        {{ exact_cost('q.n_' ~ i, 'u.unit_cost_' ~ i) }} as cost_{{ i }},
        {%- endfor %}
        u.price_year
    from quantities as q
    cross join unit_costs as u
)

select
    person_id,
    month,
    period,
    practice_code,
    neighbourhood,
    {%- for i in items %}
    n_{{ i }},
    cast(cost_{{ i }} as double) as cost_{{ i }}_gbp,
    {%- endfor %}
    ae_attendances_not_admitted,
    n_contact_centre_call + n_coaching_session as contact_centre_calls,
    cast(
        {%- for i in items %}
        cost_{{ i }}{% if not loop.last %} +{% endif %}
        {%- endfor %}
    as double) as cost_gbp,
    price_year
from priced

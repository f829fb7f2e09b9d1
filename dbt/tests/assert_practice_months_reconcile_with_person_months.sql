{#- Practice-month counts equal the sums over person-months, and both equal the number of
    outcome events falling in a 65+ person-month (guards against join fan-out and lost rows). -#}
{%- set measures = ['emergency_admissions', 'emergency_readmissions_30d', 'ae_attendances',
                    'acsc_emergency_admissions', 'permanent_care_home_admissions', 'deaths',
                    'deaths_at_home', 'flu_vaccinations'] %}
with practice_totals as (
    select
        sum(person_months_65plus) as person_months
        {%- for m in measures %}, sum({{ m }}) as {{ m }}{% endfor %}
    from {{ ref('practice_month_panel') }}
),

person_totals as (
    select
        count(*) as person_months
        {%- for m in measures %}, sum({{ m }}) as {{ m }}{% endfor %}
    from {{ ref('person_month_panel') }}
),

event_totals as (
    select
        {%- for m in measures %}{% if not loop.first %},{% endif %}
        sum(case when e.measure = '{{ m }}' then 1 else 0 end) as {{ m }}
        {%- endfor %}
    from {{ ref('int_outcome_events') }} as e
    inner join {{ ref('person_month_panel') }} as pm
        on pm.person_id = e.person_id
       and pm.month = e.event_month
)

select 'person_months' as quantity, p.person_months as practice_sum, q.person_months as person_sum, q.person_months as event_sum
from practice_totals as p cross join person_totals as q
where p.person_months <> q.person_months
{%- for m in measures %}
union all
select '{{ m }}', p.{{ m }}, q.{{ m }}, e.{{ m }}
from practice_totals as p cross join person_totals as q cross join event_totals as e
where p.{{ m }} <> q.{{ m }} or q.{{ m }} <> e.{{ m }}
{%- endfor %}

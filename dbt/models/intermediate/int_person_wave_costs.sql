{#- One row per returned questionnaire (int_person_waves): priced utilisation in the 6 months
    before returned_on (the survey's own recall window), from int_utilisation_events. NULL
    without record-linkage consent (no records to price). -#}
with priced as (
    select
        w.person_id,
        w.wave,
        count(e.item) as n_priced_6m,
        {{ exact_sum('e.cost_gbp') }} as cost_gbp
    from {{ ref('int_person_waves') }} as w
    inner join {{ ref('int_utilisation_events') }} as e
        on e.person_id = w.person_id
       and {{ in_month_window('e.event_date', 'w.returned_on', -6, 0) }}
    group by w.person_id, w.wave
)

select
    w.person_id,
    w.wave,
    w.returned_on,
    {{ linked_total('p.n_priced_6m', 'r.consent_linkage') }} as n_priced_6m,
    {{ linked_total('p.cost_gbp', 'r.consent_linkage') }} as cost_6m,
    u.price_year
from {{ ref('int_person_waves') }} as w
inner join {{ ref('stg_recruitment__cohort_members') }} as r
    on r.person_id = w.person_id
cross join (select max(price_year) as price_year from {{ ref('int_unit_costs__uplifted') }}) as u
left join priced as p
    on p.person_id = w.person_id
   and p.wave = w.wave

{#- Centre-of-contact process measures: one row per neighbourhood x month x call reason, with
    the calls of registered people aged 65+ in the neighbourhood, their 65+ person-months and
    calls per 1,000 aged 65+ per month. A call belongs to the caller's registered 65+
    person-month (int_person_month_costs, one row per int_person_months person-month and
    already a table): the practice registered with on the 1st of the call's month gives the
    neighbourhood. Calls of anyone else (not registered on the 1st, under 65, outside the panel
    window) are kept in rows with a NULL neighbourhood and no denominator, so the calls of the
    mart add up to every consented call. The grid is every neighbourhood-month with 65+
    person-months (so every attributed call has its row) times every reason of the data
    contract (raw.contract_vocabulary), so a month without calls is an explicit zero. Every direction counts: inbound
    calls and the coaching service's outbound calls (reason 'coaching'). -#}
with calls as (
    select
        c.call_id,
        c.reason,
        {{ month_of('c.called_on') }} as month,
        pm.neighbourhood
    from {{ ref('stg_contact_centre_calls__calls') }} as c
    left join {{ ref('int_person_month_costs') }} as pm
        on pm.person_id = c.person_id
       and pm.month = {{ month_of('c.called_on') }}
),

call_counts as (
    select neighbourhood, month, reason, count(*) as calls
    from calls
    group by neighbourhood, month, reason
),

denominators as (
    select neighbourhood, month, period, count(*) as person_months_65plus
    from {{ ref('int_person_month_costs') }}
    group by neighbourhood, month, period
),

reasons as (
    select value as reason
    from {{ source('raw', 'contract_vocabulary') }}
    where source_name = 'contact_centre_calls' and column_name = 'reason'
),

attributed as (
    select
        d.neighbourhood,
        d.month,
        d.period,
        r.reason,
        coalesce(c.calls, 0) as calls,
        d.person_months_65plus
    from denominators as d
    cross join reasons as r
    left join call_counts as c
        on c.neighbourhood = d.neighbourhood
       and c.month = d.month
       and c.reason = r.reason
),

unattributed as (
    select
        cast(null as {{ dbt.type_string() }}) as neighbourhood,
        month,
        {{ period_of('month') }} as period,
        reason,
        calls,
        cast(null as {{ dbt.type_bigint() }}) as person_months_65plus
    from call_counts
    where neighbourhood is null
)

{#- Unattributed rows have no denominator, so their rate is NULL. -#}
select
    neighbourhood,
    month,
    period,
    reason,
    calls,
    person_months_65plus,
    cast(1000.0 * calls / person_months_65plus as {{ type_double() }}) as calls_per_1000_65plus
from (
    select * from attributed
    union all
    select * from unattributed
) as rows_by_cell

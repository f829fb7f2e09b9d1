{#- MDG x month: the cluster view at the level of the MDG teams (two neighbourhoods share one
    MDG; the Care Homes Practice is its own). In scope from the month its first practice
    started. -#}
with agg as (
    select
        mdg,
        month,
        period,
        max(rollout_wave) as rollout_wave,
        min(mdg_start_month) as mdg_start_month,
        count(*) as n_practices,
        sum(1 - never_treated) as n_practices_taking_part,
        sum(in_mdg_scope) as n_practices_in_scope
    from {{ ref('int_practice_months') }}
    group by mdg, month, period
)

select
    mdg,
    month,
    period,
    rollout_wave,
    mdg_start_month,
    n_practices,
    n_practices_taking_part,
    n_practices_in_scope,
    cast(n_practices_in_scope as {{ type_double() }}) / n_practices as share_practices_in_scope,
    case when n_practices_in_scope > 0 then 1 else 0 end as in_mdg_scope,
    case when mdg_start_month is not null and month >= mdg_start_month
        then {{ dbt.datediff('mdg_start_month', 'month', 'month') }}
    end as months_since_start
from agg

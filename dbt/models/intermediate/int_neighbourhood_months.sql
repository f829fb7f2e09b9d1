{#- Neighbourhood x month: the cluster view of the roll-out for stepped-wedge analyses. The
    neighbourhood's MDG and wave come from the mdg_rollout seed; it is in scope from the month
    its first practice joined that MDG. A practice of another MDG located in the neighbourhood
    (the Care Homes Practice) counts in n_practices but not towards the neighbourhood's exposure. -#}
with practice_months as (
    select
        pm.*,
        r.mdg as neighbourhood_mdg,
        r.rollout_wave as neighbourhood_wave,
        case when pm.mdg = r.mdg then 1 else 0 end as in_neighbourhood_mdg
    from {{ ref('int_practice_months') }} as pm
    inner join {{ ref('mdg_rollout') }} as r
        on r.neighbourhood = pm.neighbourhood
),

agg as (
    select
        neighbourhood,
        month,
        period,
        max(neighbourhood_mdg) as mdg,
        max(neighbourhood_wave) as rollout_wave,
        min(case when in_neighbourhood_mdg = 1 then mdg_start_month end) as mdg_start_month,
        count(*) as n_practices,
        sum(case when in_neighbourhood_mdg = 1 then 1 - never_treated else 0 end) as n_practices_taking_part,
        sum(case when in_neighbourhood_mdg = 1 then in_mdg_scope else 0 end) as n_practices_in_scope
    from practice_months
    group by neighbourhood, month, period
)

select
    neighbourhood,
    mdg,
    rollout_wave,
    month,
    period,
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

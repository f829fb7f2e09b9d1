{#- Neighbourhood x month: the cluster view of the roll-out for stepped-wedge analyses. The
    neighbourhood's MDG and wave come from the mdg_rollout seed; it is in scope from the month
    its first practice joined that MDG. A practice of another MDG located in the neighbourhood
    (the Care Homes Practice) counts in n_practices but not towards the neighbourhood's exposure. -#}
with practice_months as (
    select
        pm.neighbourhood,
        r.mdg,
        r.rollout_wave,
        pm.month,
        pm.period,
        pm.mdg_start_month,
        pm.never_treated,
        pm.in_mdg_scope,
        case when pm.mdg = r.mdg then 1 else 0 end as in_neighbourhood_mdg
    from {{ ref('int_practice_months') }} as pm
    inner join {{ ref('mdg_rollout') }} as r
        on r.neighbourhood = pm.neighbourhood
)

{{ cluster_months('practice_months', ['neighbourhood', 'mdg', 'rollout_wave', 'month', 'period'],
                  member='in_neighbourhood_mdg = 1') }}

{#- Neighbourhood x month: the cluster view of the roll-out for stepped-wedge analyses. A
    neighbourhood's MDG is the one most of its practices belong to; it is in scope from the month
    its first practice joined that MDG. A practice of another MDG located in the neighbourhood
    (a practice with an MDG of its own) counts in n_practices but not towards the
    neighbourhood's exposure. -#}
with neighbourhood_mdg as (
    select neighbourhood, mdg
    from (
        select
            neighbourhood,
            mdg,
            row_number() over (partition by neighbourhood order by count(*) desc, mdg) as mdg_rank
        from {{ ref('int_practices') }}
        group by neighbourhood, mdg
    ) as ranked
    where mdg_rank = 1
),

mdg_waves as (
    select mdg, max(rollout_wave) as rollout_wave
    from {{ ref('int_practices') }}
    group by mdg
),

practice_months as (
    select
        pm.neighbourhood,
        n.mdg,
        w.rollout_wave,
        pm.month,
        pm.period,
        pm.mdg_start_month,
        pm.never_treated,
        pm.in_mdg_scope,
        case when pm.mdg = n.mdg then 1 else 0 end as in_neighbourhood_mdg
    from {{ ref('int_practice_months') }} as pm
    inner join neighbourhood_mdg as n
        on n.neighbourhood = pm.neighbourhood
    inner join mdg_waves as w
        on w.mdg = n.mdg
)

{{ cluster_months('practice_months', ['neighbourhood', 'mdg', 'rollout_wave', 'month', 'period'],
                  member='in_neighbourhood_mdg = 1') }}

{#- Practices with their MDG and roll-out wave. A practice is treated from its own
    mdg_start_date (the input). Its MDG and wave come from the mdg_rollout seed: normally its
    neighbourhood's row; a practice that started in a month other than its neighbourhood's
    start and matching a neighbourhood-free row (the Care Homes Practice, 2013-04, wave 0)
    takes that row. Never-treated practices keep their neighbourhood's MDG, with no wave. -#}
with matched as (
    select
        p.*,
        case
            when p.mdg_start_month is not null
             and (nb.planned_start_month is null or p.mdg_start_month <> nb.planned_start_month)
             and own.mdg is not null
            then 1 else 0
        end as has_own_mdg,
        nb.mdg as neighbourhood_mdg,
        nb.rollout_wave as neighbourhood_wave,
        own.mdg as own_mdg,
        own.rollout_wave as own_wave
    from {{ ref('stg_practices__practices') }} as p
    left join {{ ref('mdg_rollout') }} as nb
        on nb.neighbourhood = p.neighbourhood
    left join {{ ref('mdg_rollout') }} as own
        on own.neighbourhood is null
       and own.planned_start_month = p.mdg_start_month
)

select
    practice_code,
    practice_name,
    neighbourhood,
    case when has_own_mdg = 1 then own_mdg else neighbourhood_mdg end as mdg,
    case
        when mdg_start_month is null then null
        when has_own_mdg = 1 then own_wave
        else neighbourhood_wave
    end as rollout_wave,
    mdg_start_date,
    mdg_start_month,
    case when mdg_start_month is null then 1 else 0 end as never_treated
from matched

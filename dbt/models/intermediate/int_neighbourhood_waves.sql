{#- Neighbourhood x survey wave: exposure of each cluster at each wave's reference month. -#}
select
    n.neighbourhood,
    n.mdg,
    n.rollout_wave,
    w.wave,
    w.wave_month,
    n.mdg_start_month,
    n.n_practices,
    n.n_practices_in_scope,
    n.share_practices_in_scope,
    n.in_mdg_scope,
    n.months_since_start
from {{ ref('int_survey_waves') }} as w
inner join {{ ref('int_neighbourhood_months') }} as n
    on n.month = w.wave_month

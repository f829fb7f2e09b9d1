{#- MDG x survey wave exposure at each wave's reference month (the MDG-level clusters). -#}
select
    m.mdg,
    m.rollout_wave,
    w.wave,
    w.wave_month,
    m.mdg_start_month,
    m.n_practices,
    m.n_practices_in_scope,
    m.in_mdg_scope,
    m.months_since_start
from {{ ref('int_survey_waves') }} as w
inner join {{ ref('int_mdg_months') }} as m
    on m.month = w.wave_month

{#- The MDG roll-out as the data declare it, one row per practice: what the report's roll-out
    diagram and narrative (numbers of practices, neighbourhoods, MDGs, start months) read. -#}
select
    practice_code,
    practice_name,
    neighbourhood,
    mdg,
    rollout_wave,
    mdg_first_month,
    mdg_start_month,
    never_treated
from {{ ref('int_practices') }}

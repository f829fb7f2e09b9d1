{#- Practice x month exposure to the MDG roll-out. in_mdg_scope switches on in the practice's
    first MDG month and never off; months_since_start is 0 in that month and NULL before it. -#}
select
    p.practice_code,
    p.practice_name,
    p.neighbourhood,
    p.mdg,
    p.rollout_wave,
    m.month,
    m.period,
    m.month_of_year,
    p.mdg_start_month,
    {{ in_effect('p.mdg_start_month', 'm.month') }} as in_mdg_scope,
    {{ months_since('p.mdg_start_month', 'm.month') }} as months_since_start,
    p.never_treated
from {{ ref('int_practices') }} as p
cross join {{ ref('int_months') }} as m

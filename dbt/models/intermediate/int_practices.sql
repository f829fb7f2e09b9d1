{#- Practices with their MDG, roll-out wave and never-treated flag, all from practices.csv. A
    practice is treated from its own mdg_start_date. The MDG starts in the month its first
    practice did; the roll-out waves are the distinct MDG start months in date order (wave 1 =
    the earliest), so they follow whatever roll-out the file declares. -#}
with mdg_starts as (
    select mdg, min(mdg_start_month) as mdg_first_month
    from {{ ref('stg_practices__practices') }}
    group by mdg
),

waves as (
    select
        mdg_first_month,
        dense_rank() over (order by mdg_first_month) as rollout_wave
    from (
        select distinct mdg_first_month from mdg_starts where mdg_first_month is not null
    ) as starts
)

select
    p.practice_code,
    p.practice_name,
    p.neighbourhood,
    p.mdg,
    case when p.mdg_start_month is not null then w.rollout_wave end as rollout_wave,
    m.mdg_first_month,
    p.mdg_start_date,
    p.mdg_start_month,
    case when p.mdg_start_month is null then 1 else 0 end as never_treated
from {{ ref('stg_practices__practices') }} as p
inner join mdg_starts as m
    on m.mdg = p.mdg
left join waves as w
    on w.mdg_first_month = m.mdg_first_month

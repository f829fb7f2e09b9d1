{#- The panel's month spine: one row per month from var('panel_start_month'), period 1.. -#}
with spine as (
    {{ dbt.date_spine('month', var_date('panel_start_month'), var_date('panel_end_exclusive')) }}
)
select
    cast(date_month as date) as month,
    {{ period_of('cast(date_month as date)') }} as period,
    {{ month_end('cast(date_month as date)') }} as month_end,
    case
        when {{ date_part('month', 'date_month') }} >= 9 then {{ date_part('year', 'date_month') }}
        when {{ date_part('month', 'date_month') }} <= 3 then {{ date_part('year', 'date_month') }} - 1
    end as flu_season
from spine

{#- The panels' month spine: one row per month of the study window (int_study_window), numbered
    from period 1 at its first month. The spine is generated from a series long enough for a
    century of months, so no date is fixed at compile time. -#}
with series as (
    {{ dbt.generate_series(1200) }}
),

spine as (
    select
        {{ add_to_date('month', 'cast(s.generated_number - 1 as integer)', 'w.start_month') }} as month,
        cast(s.generated_number as integer) as period
    from series as s
    cross join {{ ref('int_study_window') }} as w
    where s.generated_number - 1 <= {{ dbt.datediff('w.start_month', 'w.end_month', 'month') }}
)

select
    month,
    period,
    {{ month_end('month') }} as month_end,
    cast({{ date_part('month', 'month') }} as integer) as month_of_year,
    case
        when {{ date_part('month', 'month') }} >= 9 then {{ date_part('year', 'month') }}
        when {{ date_part('month', 'month') }} <= 3 then {{ date_part('year', 'month') }} - 1
    end as flu_season
from spine

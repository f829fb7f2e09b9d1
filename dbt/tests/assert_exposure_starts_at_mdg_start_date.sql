{#- Practice exposure starts exactly in the month of the practice's mdg_start_date (the window's
    first month for an earlier start; never for a start after the window), and a practice
    without a start date is never in scope. -#}
with first_exposed as (
    select practice_code, min(month) as first_month
    from {{ ref('practice_month_panel') }}
    where in_mdg_scope = 1
    group by practice_code
)

select p.practice_code, p.mdg_start_date, f.first_month
from {{ ref('stg_practices__practices') }} as p
cross join {{ ref('int_study_window') }} as w
left join first_exposed as f
    on f.practice_code = p.practice_code
where
    (p.mdg_start_date is null and f.first_month is not null)
    or (p.mdg_start_date is not null
        and f.first_month is distinct from
            case
                when p.mdg_start_month < w.start_month then w.start_month
                when p.mdg_start_month > w.end_month then null
                else p.mdg_start_month
            end)

{#- The study's calendar as the extracts set it: one row per record or programme extract with the
    months it covers, beside the study window they give (int_study_window). -#}
select
    c.source_name,
    c.defines_window,
    c.first_month,
    c.last_month,
    c.months_with_rows,
    c.empty_months_inside,
    c.n_rows,
    w.start_month as study_start_month,
    w.end_month as study_end_month,
    {{ dbt.datediff('w.start_month', 'w.end_month', 'month') }} + 1 as study_months,
    w.window_rule
from {{ ref('int_record_coverage') }} as c
cross join {{ ref('int_study_window') }} as w

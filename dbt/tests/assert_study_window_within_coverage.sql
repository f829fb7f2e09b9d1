{#- The study window is non-empty and every window-defining extract covers all of it, with no
    month missing inside: a stated window beyond the extracts, or a gap in an extract, would
    put months with a denominator but no events into the panels. -#}
select 'window' as source_name, w.start_month as month,
       'the study window is empty or lies outside what the extracts cover' as problem
from {{ ref('int_study_window') }} as w
where w.start_month > w.end_month
   or w.start_month < w.covered_from
   or w.end_month > w.covered_to

union all
select c.source_name, c.first_month,
       'a window-defining extract has months with no rows between its first and last month'
from {{ ref('int_record_coverage') }} as c
where c.defines_window = 1 and c.empty_months_inside > 0

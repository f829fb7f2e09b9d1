{#- The study window: the months every window-defining extract covers (int_record_coverage),
    unless the vars study_start_month / study_end_month state it explicitly, in which case
    assert_study_window_within_coverage checks the stated window against the extracts. One row. -#}
with covered as (
    select
        max(first_month) as covered_from,
        min(last_month) as covered_to,
        count(*) as n_defining_sources
    from {{ ref('int_record_coverage') }}
    where defines_window = 1
)

select
    {%- if var('study_start_month', none) %}
    cast('{{ var("study_start_month") }}' as date) as start_month,
    {%- else %}
    covered_from as start_month,
    {%- endif %}
    {%- if var('study_end_month', none) %}
    cast('{{ var("study_end_month") }}' as date) as end_month,
    {%- else %}
    covered_to as end_month,
    {%- endif %}
    covered_from,
    covered_to,
    n_defining_sources,
    {{ "'stated'" if var('study_start_month', none) or var('study_end_month', none) else "'from the extracts'" }} as window_rule
from covered

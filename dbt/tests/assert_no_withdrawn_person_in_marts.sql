{#- No one who withdrew consent appears in any mart or person-level intermediate table, and no
    one without record-linkage consent appears in a table built from records. -#}
{%- set cohort_tables = ['person_wave_panel', 'twic_analysis_set', 'int_person_waves', 'int_survey_wave__scores'] %}
{%- set record_tables = ['person_month_panel', 'person_flu_season_panel', 'int_outcome_events', 'int_person_taken_on'] %}
with excluded as (
    select person_id, scope from {{ source('raw', 'consent_exclusions') }}
),

present as (
    {%- for t in cohort_tables %}
    select distinct '{{ t }}' as model, person_id, 'cohort' as table_scope from {{ ref(t) }}
    union all
    {%- endfor %}
    {%- for t in record_tables %}
    select distinct '{{ t }}' as model, person_id, 'records' as table_scope from {{ ref(t) }}
    {%- if not loop.last %}
    union all{% endif %}
    {%- endfor %}
)

select p.model, p.person_id, e.scope
from present as p
inner join excluded as e
    on e.person_id = p.person_id
where e.scope = 'all' or p.table_scope = 'records'

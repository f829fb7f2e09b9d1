{#- What each record and programme extract covers: its first and last month with rows, and how
    many months in between have none. The sources that set the study window are the dense
    monthly ones (the 65+ denominators and the three largest event extracts): a month is in the
    study only when every one of them covers it. The sparse sources (deaths, care-home
    admissions, ...) can have empty months by chance, so they are checked against the window
    (dq_record_checks), not used to set it. -#}
{%- set sources = [
    ('practice_population', 'month', true),
    ('hospital_spells', 'admitted_on', true),
    ('ae_attendances', 'arrived_on', true),
    ('gp_contacts', 'contact_on', true),
    ('care_home_admissions', 'admitted_on', false),
    ('deaths', 'died_on', false),
    ('flu_vaccinations', 'vaccinated_on', false),
    ('risk_scores', 'quarter_start', false),
    ('mdg_caseload', 'discussed_on', false),
    ('contact_centre_calls', 'called_on', false),
    ('community_assets', 'month', false),
] %}
with months as (
    {%- for name, column, defines in sources %}
    select
        '{{ name }}' as source_name,
        {{ 1 if defines else 0 }} as defines_window,
        {{ month_of(column) }} as month,
        count(*) as n_rows
    from {{ source('raw', name) }}
    group by {{ month_of(column) }}
    {%- if not loop.last %}
    union all
    {%- endif %}
    {%- endfor %}
)

select
    source_name,
    defines_window,
    min(month) as first_month,
    max(month) as last_month,
    count(*) as months_with_rows,
    {{ dbt.datediff('min(month)', 'max(month)', 'month') }} + 1 - count(*) as empty_months_inside,
    sum(n_rows) as n_rows
from months
group by source_name, defines_window

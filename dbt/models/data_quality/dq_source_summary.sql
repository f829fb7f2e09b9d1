{#- Rows loaded and quarantined per contract source, graded by severity (the Tuva way):
      1 critical : the source has no loaded rows, or 10% or more of its rows were quarantined;
      2 warning  : 1% to 10% of rows quarantined;
      3 info     : some rows quarantined, under 1%;
      4 pass     : nothing quarantined. -#}
with loaded as (
    {%- for name in raw_source_names() %}
    select '{{ name }}' as source_name, count(*) as rows_loaded from {{ source('raw', name) }}
    {%- if not loop.last %}
    union all{% endif %}
    {%- endfor %}
),

quarantined as (
    select
        source_name,
        count(distinct {{ dbt.concat(['source_file', "'#'", dbt.cast('source_row', api.Column.translate_type('string'))]) }}) as rows_quarantined
    from {{ source('raw', 'quarantine') }}
    group by source_name
),

shares as (
    select
        l.source_name,
        l.rows_loaded,
        coalesce(q.rows_quarantined, 0) as rows_quarantined,
        case when l.rows_loaded + coalesce(q.rows_quarantined, 0) > 0
            then cast(coalesce(q.rows_quarantined, 0) as {{ type_double() }})
                 / (l.rows_loaded + coalesce(q.rows_quarantined, 0))
        end as share_quarantined
    from loaded as l
    left join quarantined as q
        on q.source_name = l.source_name
)

select
    source_name,
    rows_loaded,
    rows_quarantined,
    share_quarantined,
    case
        when rows_loaded = 0 or share_quarantined >= 0.10 then 1
        when share_quarantined >= 0.01 then 2
        when rows_quarantined > 0 then 3
        else 4
    end as severity_level,
    case
        when rows_loaded = 0 or share_quarantined >= 0.10 then 'critical'
        when share_quarantined >= 0.01 then 'warning'
        when rows_quarantined > 0 then 'info'
        else 'pass'
    end as severity
from shares

{#- Quarantined values by source, column and reason (from raw.quarantine): what ingest
    rejected and why, for the data-quality page of the outcome audit. -#}
select
    source_name,
    column_name,
    reason,
    count(*) as n_values,
    count(distinct {{ dbt.concat(['source_file', "'#'", dbt.cast('source_row', api.Column.translate_type('string'))]) }}) as n_rows,
    min(offending_value) as example_value
from {{ source('raw', 'quarantine') }}
group by source_name, column_name, reason

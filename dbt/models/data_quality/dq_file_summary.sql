{#- One row per ingested file (raw.ingest_log): rows read, loaded and quarantined, graded like
    dq_source_summary (1 critical: nothing loaded from a file with rows, or 10%+ quarantined;
    2 warning: 1-10%; 3 info: under 1%; 4 pass). -#}
with files as (
    select
        source_name,
        source_file,
        file_sha256,
        rows_read,
        rows_loaded,
        rows_quarantined,
        case when rows_read > 0
            then cast(rows_quarantined as {{ type_double() }}) / rows_read
        end as share_quarantined
    from {{ source('raw', 'ingest_log') }}
)

select
    source_name,
    source_file,
    file_sha256,
    rows_read,
    rows_loaded,
    rows_quarantined,
    share_quarantined,
    case
        when (rows_read > 0 and rows_loaded = 0) or share_quarantined >= 0.10 then 1
        when share_quarantined >= 0.01 then 2
        when rows_quarantined > 0 then 3
        else 4
    end as severity_level,
    case
        when (rows_read > 0 and rows_loaded = 0) or share_quarantined >= 0.10 then 'critical'
        when share_quarantined >= 0.01 then 'warning'
        when rows_quarantined > 0 then 'info'
        else 'pass'
    end as severity
from files

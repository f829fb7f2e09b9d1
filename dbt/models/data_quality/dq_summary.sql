{#- Every data-quality finding in one list: source- and file-level quarantine grades and record
    plausibility checks (sort by severity_level, 1 = critical). -#}
select
    source_name,
    'quarantined rows' as check_name,
    rows_quarantined as n_failing,
    severity_level,
    severity
from {{ ref('dq_source_summary') }}

union all
select source_name, {{ dbt.concat(["'quarantined rows in '", 'source_file']) }}, rows_quarantined, severity_level, severity
from {{ ref('dq_file_summary') }}

union all
select source_name, check_name, n_failing, severity_level, severity
from {{ ref('dq_record_checks') }}

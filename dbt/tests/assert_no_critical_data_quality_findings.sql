{{ config(severity='warn') }}
{#- Flags (as a warning, so the build still finishes) every critical data-quality finding: a
    source with no rows or with 10% or more of its rows quarantined, or a failed critical check. -#}
select source_name, check_name, n_failing
from {{ ref('dq_summary') }}
where severity_level = 1

{#- Fails the build on a plausibility finding that would bias an outcome as defined
    (dq_record_checks.blocking = 1), naming the check; graded findings only warn
    (assert_no_critical_data_quality_findings). -#}
select source_name, check_name, n_failing
from {{ ref('dq_record_checks') }}
where blocking = 1 and n_failing > 0

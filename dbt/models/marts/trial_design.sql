{#- The coaching trial's design as derived from the data (int_trial_design), with how many were
    randomised: what the report states about the trial's waves and follow-up. -#}
select
    d.*,
    n.n_randomised
from {{ ref('int_trial_design') }} as d
cross join (
    select count(*) as n_randomised from {{ ref('stg_coaching_randomisation__allocations') }}
) as n

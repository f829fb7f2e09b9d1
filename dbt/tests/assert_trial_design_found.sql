{#- The trial's baseline and follow-up waves could be derived: a randomisation without a wave
    before it or after it cannot be analysed as pre-specified. -#}
select 'coaching_randomisation' as source_name,
       'no survey wave before randomisation, or none after the baseline wave' as problem
from {{ ref('stg_coaching_randomisation__allocations') }}
having count(*) > 0 and (select count(*) from {{ ref('int_trial_design') }}) = 0

{#- Hospital spells classified once for every outcome that counts them:
      emergency          : admission method in the emergency group of the admission_method_groups seed;
      ACSC               : emergency and the primary diagnosis starts with a code of the acsc_icd10 seed;
      re-admission (30d) : emergency and admitted within var('readmission_days') days after the
                           discharge of an earlier spell (any method) of the same person. -#}
with spells as (
    select
        s.*,
        max(s.discharged_on) over (
            partition by s.person_id
            order by s.admitted_on, s.discharged_on, s.spell_id
            rows between unbounded preceding and 1 preceding
        ) as previous_discharged_on
    from {{ ref('stg_hospital_spells__spells') }} as s
),

acsc_spells as (
    select distinct s.spell_id
    from spells as s
    inner join {{ ref('acsc_icd10') }} as a
        on s.primary_diagnosis_code like {{ dbt.concat(['a.icd10_code', "'%'"]) }}
)

select
    s.spell_id,
    s.person_id,
    s.admitted_on,
    s.discharged_on,
    s.admission_method,
    s.admission_method_group,
    s.primary_diagnosis,
    s.is_emergency,
    case when s.is_emergency = 1 and a.spell_id is not null then 1 else 0 end as is_acsc_emergency,
    s.previous_discharged_on,
    case
        when s.is_emergency = 1
         and s.previous_discharged_on is not null
         and s.previous_discharged_on <= s.admitted_on
         and {{ dbt.datediff('s.previous_discharged_on', 's.admitted_on', 'day') }} <= {{ var('readmission_days') }}
        then 1 else 0
    end as is_emergency_readmission_30d
from spells as s
left join acsc_spells as a
    on a.spell_id = s.spell_id

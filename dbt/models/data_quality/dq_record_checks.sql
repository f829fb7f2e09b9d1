{#- Plausibility checks on the staged records that ingest's row-level rules cannot see, one row
    per check with the number of offending rows, a severity (1 critical .. 4 pass) and whether
    a failure blocks the build (assert_no_blocking_record_findings): it does where the rows
    would bias an outcome as defined (a negative length of stay shifts the re-admission
    window; a registration ending before it starts corrupts the denominators). Events after
    death, before birth or outside the study window are not counted in any person-month, so
    they are graded findings, not blocking. -#}
with checks as (
    select
        'hospital_spells' as source_name,
        'spell discharged before admission' as check_name,
        2 as severity_if_failing,
        1 as blocking,
        count(*) as n_failing
    from {{ ref('stg_hospital_spells__spells') }}
    where discharged_on < admitted_on

    union all
    select 'hospital_spells', 'spell of a person not in the registered population', 3, 0, count(*)
    from {{ ref('stg_hospital_spells__spells') }} as s
    where not exists (select 1 from {{ ref('stg_population__registrations') }} as p where p.person_id = s.person_id)

    union all
    select 'hospital_spells', 'admission after the date of death', 2, 0, count(*)
    from {{ ref('stg_hospital_spells__spells') }} as s
    inner join {{ ref('stg_deaths__deaths') }} as d
        on d.person_id = s.person_id
    where s.admitted_on > d.died_on

    union all
    select 'ae_attendances', 'attendance after the date of death', 2, 0, count(*)
    from {{ ref('stg_ae_attendances__attendances') }} as a
    inner join {{ ref('stg_deaths__deaths') }} as d
        on d.person_id = a.person_id
    where a.arrived_on > d.died_on

    union all
    select 'deaths', 'death of a person not in the registered population', 3, 0, count(*)
    from {{ ref('stg_deaths__deaths') }} as d
    where not exists (select 1 from {{ ref('stg_population__registrations') }} as p where p.person_id = d.person_id)

    union all
    select 'population', 'registration ending before it starts', 1, 1, count(*)
    from {{ ref('stg_population__registrations') }}
    where registered_to < registered_from

    union all
    select 'recruitment', 'recruitment practice not in the practice table', 1, 0, count(*)
    from {{ ref('stg_recruitment__cohort_members') }} as r
    where not exists (select 1 from {{ ref('stg_practices__practices') }} as p where p.practice_code = r.practice_code)

    union all
    select 'hospital_spells', 'admission before the year of birth', 2, 0, count(*)
    from {{ ref('stg_hospital_spells__spells') }} as s
    inner join (select person_id, min(birth_year) as birth_year
                from {{ ref('stg_population__registrations') }} group by person_id) as b
        on b.person_id = s.person_id
    where {{ date_part('year', 's.admitted_on') }} < b.birth_year

    union all
    select 'hospital_spells', 'admission outside the study window (not counted)', 3, 0, count(*)
    from {{ ref('stg_hospital_spells__spells') }} as s
    cross join {{ ref('int_study_window') }} as w
    where s.admitted_on < w.start_month or s.admitted_on >= {{ add_to_date('month', 1, 'w.end_month') }}
)

select
    source_name,
    check_name,
    n_failing,
    blocking,
    case when n_failing > 0 then severity_if_failing else 4 end as severity_level,
    case when n_failing = 0 then 'pass'
         when severity_if_failing = 1 then 'critical'
         when severity_if_failing = 2 then 'warning'
         else 'info'
    end as severity
from checks

{#- Every outcome event, one row each, in long form: the single definition of each measure's
    numerator (see the outcome_measures seed for numerators, denominators and exclusions).
    Consent exclusions were applied in staging. -#}
with events as (
    select person_id, admitted_on as event_date, 'emergency_admissions' as measure, spell_id as event_key
    from {{ ref('int_hospital_spells__classified') }}
    where is_emergency = 1

    union all
    select person_id, admitted_on, 'emergency_readmissions_30d', spell_id
    from {{ ref('int_hospital_spells__classified') }}
    where is_emergency_readmission_30d = 1

    union all
    select person_id, admitted_on, 'acsc_emergency_admissions', spell_id
    from {{ ref('int_hospital_spells__classified') }}
    where is_acsc_emergency = 1

    union all
    select person_id, arrived_on, 'ae_attendances', attendance_id
    from {{ ref('stg_ae_attendances__attendances') }}

    union all
    select person_id, admitted_on, 'permanent_care_home_admissions',
        {{ dbt.concat(['person_id', "'|'", dbt.cast('admitted_on', api.Column.translate_type('string'))]) }}
    from {{ ref('stg_care_home_admissions__admissions') }}
    where is_permanent = 1

    union all
    select person_id, died_on, 'deaths', person_id
    from {{ ref('stg_deaths__deaths') }}

    union all
    select person_id, died_on, 'deaths_at_home', person_id
    from {{ ref('stg_deaths__deaths') }}
    where is_home_or_usual_place = 1

    union all
    select person_id, vaccinated_on, 'flu_vaccinations',
        {{ dbt.concat(['person_id', "'|'", dbt.cast('vaccinated_on', api.Column.translate_type('string'))]) }}
    from {{ ref('stg_flu_vaccinations__vaccinations') }}
)

select
    person_id,
    measure,
    event_key,
    event_date,
    {{ month_of('event_date') }} as event_month
from events

{#- The study area and its comparator areas, one row per area-month (wide form of the published
    indicators), over the months the indicators cover (their own calendar, often longer than the
    record extracts': period 1 is the indicators' first month): one numerator column per indicator, the 65+ population (the indicators'
    common denominator) and rates per 1,000 population aged 65+. -#}
with wide as (
select
    area_code,
    max(area_name) as area_name,
    month,
    max(is_study_area) as is_study_area,
    max(denominator) as population_65plus,
    sum(case when indicator = 'emergency_admissions_65plus' then numerator end) as emergency_admissions_65plus,
    sum(case when indicator = 'ae_attendances_65plus' then numerator end) as ae_attendances_65plus,
    sum(case when indicator = 'care_home_admissions_65plus' then numerator end) as care_home_admissions_65plus,
    sum(case when indicator = 'deaths_65plus' then numerator end) as deaths_65plus,
    sum(case when indicator = 'deaths_at_home_65plus' then numerator end) as deaths_at_home_65plus,
    sum(case when indicator = 'flu_vaccinated_65plus' then numerator end) as flu_vaccinated_65plus
from {{ ref('stg_area_month_indicators__indicators') }}
group by area_code, month
)

select
    area_code,
    area_name,
    month,
    {{ dbt.datediff('min(month) over ()', 'month', 'month') }} + 1 as period,
    cast({{ date_part('month', 'month') }} as integer) as month_of_year,
    is_study_area,
    population_65plus,
    emergency_admissions_65plus,
    ae_attendances_65plus,
    care_home_admissions_65plus,
    deaths_65plus,
    deaths_at_home_65plus,
    flu_vaccinated_65plus,
    case when population_65plus > 0 then 1000.0 * emergency_admissions_65plus / population_65plus end as emergency_admissions_per_1000,
    case when population_65plus > 0 then 1000.0 * ae_attendances_65plus / population_65plus end as ae_attendances_per_1000,
    case when population_65plus > 0 then 1000.0 * care_home_admissions_65plus / population_65plus end as care_home_admissions_per_1000,
    case when population_65plus > 0 then 1000.0 * deaths_65plus / population_65plus end as deaths_per_1000,
    case when population_65plus > 0 then 1000.0 * deaths_at_home_65plus / population_65plus end as deaths_at_home_per_1000,
    case when population_65plus > 0 then 1000.0 * flu_vaccinated_65plus / population_65plus end as flu_vaccinated_per_1000
from wide

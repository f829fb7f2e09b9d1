{#- Individual exposure: a person is taken on by the MDG at their first discussion. -#}
select
    person_id,
    min(discussed_on) as taken_on_date,
    {{ month_of('min(discussed_on)') }} as taken_on_month,
    count(*) as n_discussions,
    max(case when care_plan_agreed then 1 else 0 end) as care_plan_agreed
from {{ ref('stg_mdg_caseload__discussions') }}
group by person_id

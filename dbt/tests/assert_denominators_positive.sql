{#- Every rate has a positive denominator: 65+ person-months and the registered 65+ list of
    each practice-month, and the 65+ population of each area-month. -#}
select 'practice_month_panel' as model, practice_code as unit, month
from {{ ref('practice_month_panel') }}
where person_months_65plus <= 0 or registered_65plus is null or registered_65plus <= 0

union all
select 'area_month_panel', area_code, month
from {{ ref('area_month_panel') }}
where population_65plus is null or population_65plus <= 0

{#- Flu vaccination per person and season (September to March): the first in-season
    vaccination. Vaccinations from April to August count towards no season. -#}
select
    person_id,
    flu_season,
    min(vaccinated_on) as first_vaccinated_on,
    count(*) as n_vaccinations
from {{ ref('stg_flu_vaccinations__vaccinations') }}
where flu_season is not null
group by person_id, flu_season

{#- Flu vaccination per person and season (September to March): one row per person with at
    least one 65+ person-month in the season's months; vaccinated = 1 when the person was
    vaccinated in the season by the end of their last person-month in it. Practice and
    exposure are those of the person's first person-month in the season. -#}
with seasons as (
    select
        person_id,
        flu_season,
        min(month) as first_month,
        count(*) as season_person_months,
        max(flu_vaccinated) as vaccinated
    from {{ ref('person_month_panel') }}
    where flu_season is not null
    group by person_id, flu_season
)

select
    s.person_id,
    s.flu_season,
    s.first_month,
    p.practice_code,
    p.in_mdg_scope,
    p.taken_on,
    s.season_person_months,
    s.vaccinated
from seasons as s
inner join {{ ref('person_month_panel') }} as p
    on p.person_id = s.person_id
   and p.month = s.first_month

{#- Flu seasons run September to March; a season is named by the year it starts in
    (season 2015 = 2015-09-01 .. 2016-03-31). Vaccinations from April to August belong to no
    season. -#}
select
    f.person_id,
    f.vaccinated_on,
    case
        when {{ date_part('month', 'f.vaccinated_on') }} >= 9 then {{ date_part('year', 'f.vaccinated_on') }}
        when {{ date_part('month', 'f.vaccinated_on') }} <= 3 then {{ date_part('year', 'f.vaccinated_on') }} - 1
    end as flu_season,
    f._source_file,
    f._source_row
from {{ source('raw', 'flu_vaccinations') }} as f
where {{ consented('f.person_id', 'records') }}

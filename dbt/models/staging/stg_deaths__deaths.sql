select
    d.person_id,
    d.died_on,
    d.place_of_death,
    g.place_group,
    g.is_home_or_usual_place,
    d._source_file,
    d._source_row
from {{ source('raw', 'deaths') }} as d
left join {{ ref('place_of_death_groups') }} as g
    on g.place_of_death = d.place_of_death
where {{ consented('d.person_id', 'records') }}

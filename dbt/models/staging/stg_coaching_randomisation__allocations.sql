select
    r.person_id,
    r.randomised_on,
    r.stratum,
    r.arm,
    case when r.arm = 'offer' then 1 else 0 end as offered,
    r._source_file,
    r._source_row
from {{ source('raw', 'coaching_randomisation') }} as r
where {{ consented('r.person_id', 'cohort') }}

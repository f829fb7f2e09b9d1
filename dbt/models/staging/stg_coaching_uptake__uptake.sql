select
    u.person_id,
    u.accepted,
    u.sessions_completed,
    u._source_file,
    u._source_row
from {{ source('raw', 'coaching_uptake') }} as u
where {{ consented('u.person_id', 'cohort') }}

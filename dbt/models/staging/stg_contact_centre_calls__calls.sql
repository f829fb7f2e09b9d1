select
    c.call_id,
    c.person_id,
    c.called_on,
    c.direction,
    c.reason,
    c.duration_min,
    c._source_file,
    c._source_row
from {{ source('raw', 'contact_centre_calls') }} as c
where {{ consented('c.person_id', 'records') }}

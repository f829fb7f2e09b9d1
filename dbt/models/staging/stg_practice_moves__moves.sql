select
    m.person_id,
    m.practice_code,
    m.from_date,
    m._source_file,
    m._source_row
from {{ source('raw', 'practice_moves') }} as m
where {{ consented('m.person_id', 'cohort') }}

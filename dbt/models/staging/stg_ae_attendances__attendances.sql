select
    a.attendance_id,
    a.person_id,
    a.arrived_on,
    a.disposal,
    a._source_file,
    a._source_row
from {{ source('raw', 'ae_attendances') }} as a
where {{ consented('a.person_id', 'records') }}

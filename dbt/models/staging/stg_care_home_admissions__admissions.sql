select
    c.person_id,
    c.admitted_on,
    c.home_type,
    c.permanent,
    case when c.permanent then 1 else 0 end as is_permanent,
    c._source_file,
    c._source_row
from {{ source('raw', 'care_home_admissions') }} as c
where {{ consented('c.person_id', 'records') }}

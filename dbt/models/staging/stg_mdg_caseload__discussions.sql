select
    c.person_id,
    c.discussed_on,
    c.care_plan_agreed,
    c._source_file,
    c._source_row
from {{ source('raw', 'mdg_caseload') }} as c
where {{ consented('c.person_id', 'records') }}

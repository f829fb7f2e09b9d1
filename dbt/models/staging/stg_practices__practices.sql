select
    p.practice_code,
    p.practice_name,
    p.neighbourhood,
    p.mdg_start_date,
    {{ month_of('p.mdg_start_date') }} as mdg_start_month,
    p._source_file,
    p._source_row
from {{ source('raw', 'practices') }} as p

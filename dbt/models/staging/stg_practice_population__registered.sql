select
    pp.practice_code,
    {{ month_of('pp.month') }} as month,
    pp.age_band,
    case when pp.age_band in ('65-74', '75-84', '85+') then 1 else 0 end as is_65plus,
    pp.registered,
    pp._source_file,
    pp._source_row
from {{ source('raw', 'practice_population') }} as pp

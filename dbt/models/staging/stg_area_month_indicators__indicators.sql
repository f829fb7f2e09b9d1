select
    i.area_code,
    i.area_name,
    {{ month_of('i.month') }} as month,
    i.indicator,
    i.numerator,
    i.denominator,
    case when i.area_code = '{{ var("salford_area_code") }}' then 1 else 0 end as is_salford,
    i._source_file,
    i._source_row
from {{ source('raw', 'area_month_indicators') }} as i

select
    i.area_code,
    i.area_name,
    {{ month_of('i.month') }} as month,
    i.indicator,
    i.numerator,
    i.denominator,
    case when s.area_code is not null then 1 else 0 end as is_study_area,
    i._source_file,
    i._source_row
from {{ source('raw', 'area_month_indicators') }} as i
left join {{ source('raw', 'study_area') }} as s
    on s.area_code = i.area_code

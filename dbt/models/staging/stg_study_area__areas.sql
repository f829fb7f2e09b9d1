{#- The area(s) the programme ran in (reference/study_area.csv): the treated unit of the
    area-level comparisons. -#}
select
    a.area_code,
    a.area_name,
    a._source_file,
    a._source_row
from {{ source('raw', 'study_area') }} as a

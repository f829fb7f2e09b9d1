{#- Practices as delivered. The MDG is the file's optional mdg column, or the neighbourhood's
    name where it is empty (each neighbourhood its own MDG). -#}
select
    p.practice_code,
    p.practice_name,
    p.neighbourhood,
    coalesce(nullif(trim(p.mdg), ''), p.neighbourhood) as mdg,
    p.mdg_start_date,
    {{ month_of('p.mdg_start_date') }} as mdg_start_month,
    p._source_file,
    p._source_row
from {{ source('raw', 'practices') }} as p

{#- The programme's dated milestones as the delivery declares them (programme/milestones.csv):
    what a protocol's `{milestone: name}` time point resolves to. -#}
select
    m.milestone,
    {{ month_of('m.month') }} as month,
    m.description,
    m._source_file,
    m._source_row
from {{ source('raw', 'milestones') }} as m

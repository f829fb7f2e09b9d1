select
    u.item,
    u.unit,
    u.cost_gbp,
    u.price_year,
    u.source,
    u._source_file,
    u._source_row
from {{ source('raw', 'unit_costs') }} as u

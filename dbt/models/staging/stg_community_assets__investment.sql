select
    a.neighbourhood,
    {{ month_of('a.month') }} as month,
    a.groups_funded,
    a.funding_gbp,
    a.attendances,
    a._source_file,
    a._source_row
from {{ source('raw', 'community_assets') }} as a

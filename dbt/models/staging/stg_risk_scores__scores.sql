select
    r.person_id,
    {{ month_of('r.quarter_start') }} as quarter_start,
    r.risk_score,
    r.risk_tier,
    r._source_file,
    r._source_row
from {{ source('raw', 'risk_scores') }} as r
where {{ consented('r.person_id', 'records') }}

select
    g.person_id,
    g.contact_on,
    g.contact_type,
    g._source_file,
    g._source_row
from {{ source('raw', 'gp_contacts') }} as g
where {{ consented('g.person_id', 'records') }}

select
    h.spell_id,
    h.person_id,
    h.admitted_on,
    h.discharged_on,
    h.admission_method,
    g.method_group as admission_method_group,
    case when g.method_group = 'emergency' then 1 else 0 end as is_emergency,
    h.primary_diagnosis,
    replace(h.primary_diagnosis, '.', '') as primary_diagnosis_code,
    h.discharge_destination,
    h._source_file,
    h._source_row
from {{ source('raw', 'hospital_spells') }} as h
left join {{ ref('admission_method_groups') }} as g
    on g.admission_method = h.admission_method
where {{ consented('h.person_id', 'records') }}

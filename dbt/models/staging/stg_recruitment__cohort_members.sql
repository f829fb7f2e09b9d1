select
    r.person_id,
    r.practice_code,
    r.recruited_on,
    r.birth_year,
    {{ date_part('year', 'r.recruited_on') }} - r.birth_year as age_at_recruitment,
    r.sex,
    {{ decode_label('recruitment', 'sex', 'r') }} as sex_label,
    r.imd_decile,
    r.n_ltc,
    r.social_care_need,
    {{ decode_label('recruitment', 'social_care_need', 'r') }} as social_care_need_label,
    r.consent_linkage,
    r.consent_trials,
    r._source_file,
    r._source_row
from {{ source('raw', 'recruitment') }} as r
where {{ consented('r.person_id', 'cohort') }}

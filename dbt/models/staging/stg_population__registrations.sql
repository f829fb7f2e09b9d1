{#- One row per registration spell. A new registration supersedes the previous one: a spell is
    in force until the earlier of its registered_to and the day before the person's next
    registration starts (registered_until, NULL while open), so in-force spells never overlap
    and every person has at most one practice on any day. -#}
with spells as (
    select
        p.*,
        lead(p.registered_from) over (
            partition by p.person_id order by p.registered_from, p.practice_code
        ) as next_registered_from
    from {{ source('raw', 'population') }} as p
    where {{ consented('p.person_id', 'records') }}
)

select
    person_id,
    practice_code,
    birth_year,
    sex,
    imd_decile,
    registered_from,
    registered_to,
    case
        when next_registered_from is not null
         and (registered_to is null or next_registered_from <= registered_to)
        then {{ add_to_date('day', -1, 'next_registered_from') }}
        else registered_to
    end as registered_until,
    _source_file,
    _source_row
from spells

{#- Practice of each cohort member over time: the recruitment practice from the recruitment
    date, then each move from its from_date; valid_to is the day before the next change. -#}
with changes as (
    select person_id, practice_code, recruited_on as from_date, 0 as is_move
    from {{ ref('stg_recruitment__cohort_members') }}

    union all
    select m.person_id, m.practice_code, m.from_date, 1 as is_move
    from {{ ref('stg_practice_moves__moves') }} as m
    inner join {{ ref('stg_recruitment__cohort_members') }} as r
        on r.person_id = m.person_id
)

select
    person_id,
    practice_code,
    from_date,
    is_move,
    lead(from_date) over (partition by person_id order by from_date, is_move) as next_from_date
from changes

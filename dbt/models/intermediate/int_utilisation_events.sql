{#- Every contact with a service that has a unit cost, one row each, in long form: the single
    definition of which record is which priced item. Consent exclusions were applied in
    staging. Coaching: the first coaching call of a person is the offer call (a contact-centre
    call); each later coaching call is a session. A&E: is_admitted = 1 when the attendance's
    disposal is 'admitted' (followed by an admission). event_key points back to the source
    record (its identifier, or file and row where the source has none). -#}
with coaching_calls as (
    select
        c.*,
        row_number() over (partition by c.person_id order by c.called_on, c.call_id) as call_rank
    from {{ ref('stg_contact_centre_calls__calls') }} as c
    where c.reason = 'coaching'
),

events as (
    select person_id, admitted_on as event_date, 'emergency_admission' as item,
        'hospital_spells' as source_table, spell_id as event_key, 0 as is_admitted
    from {{ ref('int_hospital_spells__classified') }}
    where is_emergency = 1

    union all
    select person_id, admitted_on, 'elective_admission', 'hospital_spells', spell_id, 0
    from {{ ref('int_hospital_spells__classified') }}
    where admission_method_group = 'elective'

    union all
    select person_id, arrived_on, 'ae_attendance', 'ae_attendances', attendance_id,
        case when disposal = 'admitted' then 1 else 0 end
    from {{ ref('stg_ae_attendances__attendances') }}

    union all
    select person_id, contact_on, 'gp_contact', 'gp_contacts',
        {{ dbt.concat(['_source_file', "'#'", dbt.cast('_source_row', api.Column.translate_type('string'))]) }}, 0
    from {{ ref('stg_gp_contacts__contacts') }}

    union all
    select person_id, discussed_on, 'mdg_discussion', 'mdg_caseload',
        {{ dbt.concat(['_source_file', "'#'", dbt.cast('_source_row', api.Column.translate_type('string'))]) }}, 0
    from {{ ref('stg_mdg_caseload__discussions') }}

    union all
    select person_id, called_on, 'coaching_session', 'contact_centre_calls', call_id, 0
    from coaching_calls
    where call_rank > 1

    union all
    select c.person_id, c.called_on, 'contact_centre_call', 'contact_centre_calls', c.call_id, 0
    from {{ ref('stg_contact_centre_calls__calls') }} as c
    left join coaching_calls as k
        on k.call_id = c.call_id
    where k.call_id is null or k.call_rank = 1
)

select
    e.person_id,
    e.event_date,
    {{ month_of('e.event_date') }} as event_month,
    e.item,
    e.source_table,
    e.event_key,
    e.is_admitted,
    u.unit_cost_gbp,
    u.unit_cost_price_year,
    u.uplift,
    u.unit_cost_uplifted_gbp,
    u.price_year,
    u.unit_cost_uplifted_gbp as cost_gbp
from events as e
left join {{ ref('int_unit_costs__uplifted') }} as u
    on u.item = e.item

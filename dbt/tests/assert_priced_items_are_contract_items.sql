{#- Every item the warehouse prices (int_utilisation_events) is a unit-cost item the data
    contract requires a delivery to price (raw.contract_vocabulary), so the contract's list and
    the pricing rules cannot drift apart. -#}
select distinct e.item
from {{ ref('int_utilisation_events') }} as e
left join {{ source('raw', 'contract_vocabulary') }} as v
    on v.source_name = 'unit_costs' and v.column_name = 'item' and v.value = e.item
   and v.required
where v.value is null

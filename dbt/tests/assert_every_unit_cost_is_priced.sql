{#- Every unit cost has an uplift to the price year: a quoted price year missing from the
    inflation_index seed would silently drop the item from every priced total. -#}
select u.item, u.price_year
from {{ ref('stg_unit_costs__costs') }} as u
left join {{ ref('int_unit_costs__uplifted') }} as x
    on x.item = u.item
where x.item is null

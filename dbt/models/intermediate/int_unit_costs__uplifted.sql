{#- Every unit cost restated in one price year, var('cost_price_year') (default 2018 = 2017/18,
    the year most unit costs are quoted in): uplift = inflation_index[price year] /
    inflation_index[year quoted]. The single place where the price year is chosen. -#}
{%- set price_year = var('cost_price_year', 2018) %}
select
    u.item,
    u.unit,
    u.source as unit_cost_source,
    u.cost_gbp as unit_cost_gbp,
    u.price_year as unit_cost_price_year,
    t.index / q.index as uplift,
    u.cost_gbp * t.index / q.index as unit_cost_uplifted_gbp,
    cast({{ price_year }} as integer) as price_year
from {{ ref('stg_unit_costs__costs') }} as u
inner join {{ ref('inflation_index') }} as q
    on q.year = u.price_year
inner join {{ ref('inflation_index') }} as t
    on t.year = {{ price_year }}

{#- Every priced event carries its item's uplifted unit cost. int_person_month_costs prices
    counts (count x unit cost) rather than summing event costs; the two agree only while this
    holds, so an event-level price (e.g. by HRG) must change that model too. -#}
select e.item, e.event_key, e.cost_gbp, u.unit_cost_uplifted_gbp
from {{ ref('int_utilisation_events') }} as e
inner join {{ ref('int_unit_costs__uplifted') }} as u
    on u.item = e.item
where e.cost_gbp is distinct from u.unit_cost_uplifted_gbp

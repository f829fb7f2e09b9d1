{#- Neighbourhood x month exposure to community-asset investment: the month's funding, groups
    and attendances, cumulative funding and attendances up to the end of the previous month
    (investment takes effect after it is spent), the neighbourhood's registered 65+ population
    in the month (practice_population, practices located in the neighbourhood), and the dose:
    cumulative funding to the end of the previous month per 1,000 registered 65+, in units of
    GBP 10,000 (asset_dose; the synthetic world's truth.json definitions.asset_dose). -#}
with pop65 as (
    select p.neighbourhood, r.month, sum(r.registered) as registered_65plus
    from {{ ref('stg_practice_population__registered') }} as r
    inner join {{ ref('stg_practices__practices') }} as p
        on p.practice_code = r.practice_code
    where r.is_65plus = 1
    group by p.neighbourhood, r.month
),

cumulative as (
    select
        a.neighbourhood,
        a.month,
        a.funding_gbp,
        a.groups_funded,
        a.attendances,
        coalesce(sum(a.funding_gbp) over (
            partition by a.neighbourhood order by a.month
            rows between unbounded preceding and 1 preceding), 0) as funding_cum_prior_gbp,
        coalesce(sum(a.attendances) over (
            partition by a.neighbourhood order by a.month
            rows between unbounded preceding and 1 preceding), 0) as attendances_cum_prior
    from {{ ref('stg_community_assets__investment') }} as a
)

select
    c.neighbourhood,
    c.month,
    {{ period_of('c.month') }} as period,
    c.funding_gbp,
    c.groups_funded,
    c.attendances,
    c.funding_cum_prior_gbp,
    c.attendances_cum_prior,
    p.registered_65plus,
    case when p.registered_65plus > 0
        then c.funding_cum_prior_gbp / (p.registered_65plus / 1000.0) end as funding_cum_per_1000_65plus,
    case when p.registered_65plus > 0
        then c.attendances_cum_prior / (p.registered_65plus / 1000.0) end as attendances_cum_per_1000_65plus,
    case when p.registered_65plus > 0
        then c.funding_cum_prior_gbp / (p.registered_65plus / 1000.0) / 10000.0 end as asset_dose
from cumulative as c
left join pop65 as p
    on p.neighbourhood = c.neighbourhood
   and p.month = c.month

{#- Exposure rules of the MDG roll-out, each written once. -#}

{#- 1 from start_month on (an exposure never switches off), else 0; 0 when start_month is NULL. -#}
{% macro in_effect(start_month, month) -%}
    case when {{ start_month }} is not null and {{ month }} >= {{ start_month }} then 1 else 0 end
{%- endmacro %}

{#- Whole months since start_month (0 in that month); NULL before it or when it is NULL. -#}
{% macro months_since(start_month, month) -%}
    case when {{ start_month }} is not null and {{ month }} >= {{ start_month }}
        then {{ dbt.datediff(start_month, month, 'month') }}
    end
{%- endmacro %}

{#- Cluster x month exposure aggregated from practice-months (int_practice_months' columns),
    one row per combination of group_by (the cluster key, month and period, in output order).
    aggregated names further cluster columns and the aggregate that gives each. Only practices
    meeting `member` count towards the cluster's start month and practices taking part or in
    scope (n_practices counts all); the cluster is in scope once one of them is. -#}
{% macro cluster_months(practice_months, group_by, aggregated={}, member='1 = 1') -%}
select
    {%- for column in group_by %}
    {{ column }},
    {%- endfor %}
    {%- for column, aggregate in aggregated.items() %}
    {{ column }},
    {%- endfor %}
    mdg_start_month,
    n_practices,
    n_practices_taking_part,
    n_practices_in_scope,
    cast(n_practices_in_scope as {{ type_double() }}) / n_practices as share_practices_in_scope,
    case when n_practices_in_scope > 0 then 1 else 0 end as in_mdg_scope,
    {{ months_since('mdg_start_month', 'month') }} as months_since_start
from (
    select
        {%- for column in group_by %}
        {{ column }},
        {%- endfor %}
        {%- for column, aggregate in aggregated.items() %}
        {{ aggregate }} as {{ column }},
        {%- endfor %}
        min(case when {{ member }} then mdg_start_month end) as mdg_start_month,
        count(*) as n_practices,
        sum(case when {{ member }} then 1 - never_treated else 0 end) as n_practices_taking_part,
        sum(case when {{ member }} then in_mdg_scope else 0 end) as n_practices_in_scope
    from {{ practice_months }}
    group by {{ group_by | join(', ') }}
) as clusters
{%- endmacro %}

{#- The practice a cohort member was with on a date, for each row of `dated` (one row per keys,
    with person_id): the latest practice spell (int_cohort_practice_spells) that started on or
    before the date, or for a date before recruitment the first spell (the recruitment practice).
    Returns the rows of `dated` that have a spell, with practice_code (and spell_rank, always 1). -#}
{% macro practice_on_date(dated, keys, date_column) -%}
select ranked.*
from (
    select
        d.*,
        s.practice_code,
        row_number() over (
            partition by d.{{ keys | join(', d.') }}
            order by case when s.from_date <= d.{{ date_column }} then 0 else 1 end,
                     case when s.from_date <= d.{{ date_column }} then s.from_date end desc,
                     s.from_date
        ) as spell_rank
    from {{ dated }} as d
    inner join {{ ref('int_cohort_practice_spells') }} as s
        on s.person_id = d.person_id
) as ranked
where ranked.spell_rank = 1
{%- endmacro %}

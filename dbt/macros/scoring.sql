{#- Questionnaire scoring rules, each written once. Items arrive with user-missing codes already
    NULL. A scale score is computed from the answered items when at least min_answered of them
    were answered, and is NULL otherwise. -#}

{% macro _items(prefix, n_items) -%}
    {%- set cols = [] -%}
    {%- for i in range(1, n_items + 1) -%}{%- do cols.append(prefix ~ '_' ~ '%02d' % i) -%}{%- endfor -%}
    {{ return(cols) }}
{%- endmacro %}

{#- Number of answered (non-NULL) items of a scale. -#}
{% macro n_answered(prefix, n_items) -%}
    ({%- for c in _items(prefix, n_items) %}{% if not loop.first %} + {% endif %}case when {{ c }} is null then 0 else 1 end{% endfor -%})
{%- endmacro %}

{#- Mean of the answered items, NULL when fewer than min_answered were answered. -#}
{% macro item_mean(prefix, n_items, min_answered) -%}
    case when {{ n_answered(prefix, n_items) }} >= {{ min_answered }} then
        cast(({%- for c in _items(prefix, n_items) %}{% if not loop.first %} + {% endif %}coalesce({{ c }}, 0){% endfor -%}) as {{ type_double() }})
        / {{ n_answered(prefix, n_items) }}
    end
{%- endmacro %}

{#- Sum of all items, NULL when any item is missing. -#}
{% macro item_sum_complete(prefix, n_items) -%}
    case when {{ n_answered(prefix, n_items) }} = {{ n_items }} then
        ({%- for c in _items(prefix, n_items) %}{% if not loop.first %} + {% endif %}{{ c }}{% endfor -%})
    end
{%- endmacro %}

{#- Double-precision type name (dbt's type_float() is single precision on DuckDB). -#}
{% macro type_double() -%}
    {{ return(adapter.dispatch('type_double')()) }}
{%- endmacro %}

{% macro default__type_double() -%}double{%- endmacro %}

{% macro postgres__type_double() -%}double precision{%- endmacro %}

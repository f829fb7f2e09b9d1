{#- A sum of doubles (money, QALYs) that does not depend on the order rows arrive in: each value
    is fixed to 1e-10 as DECIMAL, summed exactly, and returned as DOUBLE. A floating-point sum
    changes in its last bits with row order, which DuckDB does not fix between builds, and the
    results store must be byte-identical after a rebuild. -#}
{% macro exact_sum(value) -%}
    cast(sum(cast({{ value }} as decimal(38, 10))) as double)
{%- endmacro %}

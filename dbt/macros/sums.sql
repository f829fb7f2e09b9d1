{#- A sum of doubles (money, QALYs) that does not depend on the order rows arrive in: each value
    is fixed to 1e-10 as DECIMAL, summed exactly, and returned as DOUBLE. A floating-point sum
    changes in its last bits with row order, which DuckDB does not fix between builds, and the
    results store must be byte-identical after a rebuild. -#}
{% macro exact_sum(value) -%}
    cast(sum(cast({{ value }} as decimal(38, 10))) as double)
{%- endmacro %}

{#- The cost of `quantity` units at `unit_cost` as an exact DECIMAL: equal to exact_sum over
    `quantity` rows each priced at `unit_cost`, without reading those rows. Sized so that a sum
    of a few such terms stays exact in DuckDB and in Spark (whose decimals lose scale past 38
    digits): quantities below 1e9, unit costs below 1e6 GBP. -#}
{% macro exact_cost(quantity, unit_cost) -%}
    cast({{ quantity }} as decimal(9, 0)) * cast({{ unit_cost }} as decimal(16, 10))
{%- endmacro %}

{#- Date helpers built on dbt's cross-database macros, so the models stay portable (Spark). -#}

{#- First day of the month containing a date, as a date. -#}
{% macro month_of(date_expr) -%}
    cast({{ dbt.date_trunc('month', date_expr) }} as date)
{%- endmacro %}

{#- Add a number of months/days to a date, returning a date. -#}
{% macro add_to_date(datepart, interval, date_expr) -%}
    cast({{ dbt.dateadd(datepart, interval, date_expr) }} as date)
{%- endmacro %}

{#- Last day of the month that starts on month_expr. -#}
{% macro month_end(month_expr) -%}
    {{ add_to_date('day', -1, add_to_date('month', 1, month_expr)) }}
{%- endmacro %}

{#- date_expr lies in [anchor + months_from, anchor + months_to) months: e.g. (-6, 0) is the six
    months before the anchor date, (0, 12) the twelve months from it. -#}
{% macro in_month_window(date_expr, anchor, months_from, months_to) -%}
    {{ date_expr }} >= {{ _months_after(anchor, months_from) }}
    and {{ date_expr }} < {{ _months_after(anchor, months_to) }}
{%- endmacro %}

{% macro _months_after(date_expr, months) -%}
    {%- if months == 0 -%}{{ date_expr }}{%- else -%}{{ add_to_date('month', months, date_expr) }}{%- endif -%}
{%- endmacro %}

{#- Panel month index of a month: 1 for the study window's first month (int_study_window), so
    periods follow the data's calendar; months before the window get 0 or less. -#}
{% macro period_of(month_expr) -%}
    ({{ dbt.datediff("(select start_month from " ~ ref('int_study_window') ~ ")", month_expr, 'month') }} + 1)
{%- endmacro %}

{#- Calendar part (year, month, ...) of a date: ANSI extract, portable to DuckDB, Spark,
    Postgres and Snowflake (dbt-core ships no date_part macro). -#}
{% macro date_part(datepart, date_expr) -%}
    extract({{ datepart }} from {{ date_expr }})
{%- endmacro %}

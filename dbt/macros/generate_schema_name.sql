{#- Use the configured schema name verbatim (staging, intermediate, marts, ...), not
    "<target schema>_<custom>", so that analysts and protocols can name marts.practice_month_panel. -#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name is none -%}{{ target.schema }}{%- else -%}{{ custom_schema_name | trim }}{%- endif -%}
{%- endmacro %}

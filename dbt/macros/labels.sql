{#- Decode a labelled integer column with the labels ingest stored in raw.value_labels (from the
    SPSS metadata, or the data contract). Label values are text and may arrive as '1' or '1.0'
    (SPSS stores numbers as doubles); both forms match. Compared as text so that a label with a
    non-numeric value can never break the cast. -#}
{% macro decode_label(source_name, column, relation_alias) -%}
    {%- set as_text = dbt.cast(relation_alias ~ '.' ~ column, api.Column.translate_type('string')) -%}
    (
        select max(vl.label)
        from {{ source('raw', 'value_labels') }} as vl
        where vl.source_name = '{{ source_name }}'
          and vl.column_name = '{{ column }}'
          and vl.value in ({{ as_text }}, {{ dbt.concat([as_text, "'.0'"]) }})
    )
{%- endmacro %}

{#- Seeds on Spark. dbt-spark's session mode substitutes seed values into the INSERT by quoting
    them without escaping, so a value holding an apostrophe (outcome_measures.csv has several)
    breaks the statement. This override of dbt-spark's spark__load_csv_rows writes each value as
    an escaped literal instead of a binding; the rows and types are the same. Other adapters are
    unaffected (dispatch picks spark__ only on Spark). -#}
{% macro spark__load_csv_rows(model, agate_table) %}
    {%- set batch_size = get_batch_size() -%}
    {%- set column_override = model['config'].get('column_types', {}) -%}
    {%- set statements = [] -%}
    {%- for chunk in agate_table.rows | batch(batch_size) -%}
        {%- set sql -%}
            insert into {{ this.render() }} values
            {% for row in chunk -%}
                ({%- for col_name in agate_table.column_names -%}
                    {%- set type = column_override.get(col_name, adapter.convert_type(agate_table, loop.index0)) -%}
                    cast({{ spark_seed_literal(row[loop.index0]) }} as {{ type }})
                    {%- if not loop.last %},{% endif -%}
                {%- endfor -%})
                {%- if not loop.last %},{% endif %}
            {% endfor %}
        {%- endset -%}
        {%- do adapter.add_query(sql, abridge_sql_log=True) -%}
        {%- if loop.first -%}{%- do statements.append(sql) -%}{%- endif -%}
    {%- endfor -%}
    {{ return(statements[0]) }}
{% endmacro %}

{#- A seed value as a Spark SQL string literal (backslash and quote escaped), or null. -#}
{% macro spark_seed_literal(value) -%}
    {%- if value is none -%}null{%- else -%}'{{ value | string | replace("\\", "\\\\") | replace("'", "\\'") }}'{%- endif -%}
{%- endmacro %}

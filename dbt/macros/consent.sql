{#- The one place consent is applied. Every staging model of a person-level source filters with
    it, so no excluded person passes staging and nothing downstream needs to think about consent.
      scope 'cohort'  : drop people who withdrew all consent (raw.consent_exclusions scope 'all');
      scope 'records' : also drop people without record-linkage consent (scope 'records'). -#}
{% macro consented(person_column, scope) -%}
    {%- if scope not in ('cohort', 'records') -%}
        {{ exceptions.raise_compiler_error("consented(): scope must be 'cohort' or 'records', got " ~ scope) }}
    {%- endif -%}
    {{ person_column }} not in (
        select ce.person_id
        from {{ source('raw', 'consent_exclusions') }} as ce
        where ce.person_id is not null
          and ce.scope in ('all'{% if scope == 'records' %}, 'records'{% endif %})
    )
{%- endmacro %}

{#- A count or cost taken from linked records: NULL for a person without record-linkage consent
    (their records are unknown, not absent), else the value with no records counted as 0. -#}
{% macro linked_total(value, consent_linkage) -%}
    case when {{ consent_linkage }} = 1 then coalesce({{ value }}, 0) end
{%- endmacro %}

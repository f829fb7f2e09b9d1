{#- The contract's input sources (sicp/contract.py SOURCES), as dbt knows them in
    models/staging/_sources.yml; used by the data-quality models to visit every raw table. -#}
{% macro raw_source_names() -%}
    {{ return(['practices', 'practice_population', 'study_area', 'recruitment', 'practice_moves', 'survey_wave', 'population', 'hospital_spells', 'ae_attendances', 'gp_contacts', 'care_home_admissions', 'deaths', 'flu_vaccinations', 'risk_scores', 'mdg_caseload', 'coaching_randomisation', 'coaching_uptake', 'community_assets', 'contact_centre_calls', 'milestones', 'unit_costs', 'area_month_indicators']) }}
{%- endmacro %}

{#- A composite key is unique: no combination of the columns occurs twice (dbt-core ships only
    single-column unique; dbt packages cannot be fetched here). -#}
{% test unique_combination(model, columns) %}
select {{ columns | join(', ') }}, count(*) as n_rows
from {{ model }}
group by {{ columns | join(', ') }}
having count(*) > 1
{% endtest %}

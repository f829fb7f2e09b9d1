{#- Within each unit, once the flag is 1 it stays 1 over time (an exposure never switches off):
    no unit has a 0 later than its first 1. An aggregate rather than a window, so it stays
    cheap on millions of person-months. -#}
{% test never_switches_off(model, column_name, unit, time) %}
select
    {{ unit }} as unit_key,
    min(case when {{ column_name }} = 1 then {{ time }} end) as first_on,
    max(case when {{ column_name }} = 0 then {{ time }} end) as last_off
from {{ model }}
group by {{ unit }}
having max(case when {{ column_name }} = 0 then {{ time }} end)
     > min(case when {{ column_name }} = 1 then {{ time }} end)
{% endtest %}

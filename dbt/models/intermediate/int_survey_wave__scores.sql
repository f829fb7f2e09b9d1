{#- Instrument scores for each returned questionnaire, each by its published rule:
      eq5d_index      : EQ-5D-5L England value set (Devlin et al. 2018): 1 - the five decrements,
                        rounded to the value set's 3 decimals (removes floating-point noise);
                        NULL when any dimension is missing.
      pacic_score     : PACIC short form, mean of the answered items (1-5); NULL when fewer than 6
                        of the 11 were answered.
      selfman_score   : self-management 0-100 = (mean item - 1) / 3 * 100 over the answered items
                        (1-4); NULL when fewer than 4 of the 6 were answered.
      wellbeing_score : mean of the answered items (1-4); NULL when fewer than 3 of 5 answered.
      loneliness_score: sum of the 3 items (3-9); NULL when any item is missing. -#}
{%- set dims = ['mobility', 'selfcare', 'activities', 'pain', 'anxiety'] %}
select
    w.person_id,
    w.wave,
    w.returned_on,
    w.mode,
    w.mode_label,
    {%- for d in dims %}
    w.eq_{{ d }},
    {%- endfor %}
    case when {% for d in dims %}v_{{ d }}.decrement is not null{% if not loop.last %} and {% endif %}{% endfor %}
        then round(1 - ({% for d in dims %}v_{{ d }}.decrement{% if not loop.last %} + {% endif %}{% endfor %}), 3)
    end as eq5d_index,
    w.eq_vas,
    {{ n_answered('w.pacic', 11) }} as pacic_n_answered,
    {{ item_mean('w.pacic', 11, 6) }} as pacic_score,
    {{ n_answered('w.selfman', 6) }} as selfman_n_answered,
    ({{ item_mean('w.selfman', 6, 4) }} - 1) / 3 * 100 as selfman_score,
    {{ n_answered('w.wellbeing', 5) }} as wellbeing_n_answered,
    {{ item_mean('w.wellbeing', 5, 3) }} as wellbeing_score,
    {{ item_sum_complete('w.lonely', 3) }} as loneliness_score,
    w.satisfied_care,
    w.supported_selfcare,
    w.has_care_plan,
    w.gp_visits_6m,
    w.ae_visits_6m,
    w.nights_in_hospital_6m
from {{ ref('stg_survey_wave__responses') }} as w
{%- for d in dims %}
left join {{ ref('eq5d_5l_england_value_set') }} as v_{{ d }}
    on v_{{ d }}.dimension = '{{ d }}' and v_{{ d }}.level = w.eq_{{ d }}
{%- endfor %}

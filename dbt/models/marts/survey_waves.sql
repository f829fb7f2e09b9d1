{#- The survey waves delivered, one row per wave, with their return windows: the report's
    description of the cohort's waves. -#}
select wave, first_returned_on, last_returned_on, wave_month, n_returned
from {{ ref('int_survey_waves') }}

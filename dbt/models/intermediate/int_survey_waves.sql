{#- Survey waves as periods: the window in which each wave's questionnaires came back. The
    reference month of a wave is the month its first questionnaire was returned. -#}
select
    wave,
    min(returned_on) as first_returned_on,
    max(returned_on) as last_returned_on,
    {{ month_of('min(returned_on)') }} as wave_month,
    count(*) as n_returned
from {{ ref('stg_survey_wave__responses') }}
group by wave

{#- The design of the trial within the cohort, derived from the data (one row): the baseline wave
    is the last wave whose first questionnaire came back before the first randomisation; the
    follow-up wave is the wave whose reference month is closest to var('twic_followup_months')
    after the first randomisation month (the later one on a tie). The realised gaps are kept
    so reports can state them. -#}
with randomisation as (
    select
        min(randomised_on) as first_randomised_on,
        max(randomised_on) as last_randomised_on,
        {{ month_of('min(randomised_on)') }} as randomisation_month
    from {{ ref('stg_coaching_randomisation__allocations') }}
),

baseline as (
    select max(w.wave) as baseline_wave
    from {{ ref('int_survey_waves') }} as w
    cross join randomisation as r
    where w.first_returned_on < r.first_randomised_on
),

followup as (
    select wave as followup_wave
    from (
        select
            w.wave,
            row_number() over (
                order by abs({{ dbt.datediff(add_to_date('month', var('twic_followup_months'), 'r.randomisation_month'), 'w.wave_month', 'month') }}),
                         w.wave desc
            ) as closeness
        from {{ ref('int_survey_waves') }} as w
        cross join randomisation as r
        cross join baseline as b
        where w.wave > b.baseline_wave
    ) as ranked
    where closeness = 1
)

select
    r.first_randomised_on,
    r.last_randomised_on,
    b.baseline_wave,
    bw.wave_month as baseline_wave_month,
    f.followup_wave,
    fw.wave_month as followup_wave_month,
    {{ var('twic_followup_months') }} as planned_followup_months,
    {{ dbt.datediff('r.randomisation_month', 'fw.wave_month', 'month') }} as months_randomisation_to_followup,
    {{ dbt.datediff('bw.wave_month', 'fw.wave_month', 'month') }} as months_baseline_to_followup
from randomisation as r
cross join baseline as b
cross join followup as f
inner join {{ ref('int_survey_waves') }} as bw
    on bw.wave = b.baseline_wave
inner join {{ ref('int_survey_waves') }} as fw
    on fw.wave = f.followup_wave

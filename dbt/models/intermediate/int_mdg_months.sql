{#- MDG x month: the cluster view at the level of the MDG teams (two neighbourhoods share one
    MDG; the Care Homes Practice is its own). In scope from the month its first practice
    started. -#}
{{ cluster_months(ref('int_practice_months'), ['mdg', 'month', 'period'],
                  aggregated={'rollout_wave': 'max(rollout_wave)'}) }}

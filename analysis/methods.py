"""The method names a protocol may use, each bound to one estimator function.

A protocol's ``method.options`` are passed to the estimator as keyword arguments, so the
estimator's own signature is the schema of its options: :func:`check_options` rejects unknown
or missing ones when a protocol is loaded, before any data is read. Options that are time
points (:data:`TIME_POINT_OPTIONS`) are written as calendar months and resolved against the
data being fitted (:mod:`analysis.calendar`).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pandas as pd
from threadpoolctl import threadpool_limits

from analysis import did, dose_response, economics, its, stepped_wedge, synthetic_control, trial
from analysis.calendar import is_milestone, is_month, resolve_options
from analysis.results import EstimationResult

Estimator = Callable[..., EstimationResult]

METHODS: dict[str, Estimator] = {
    "sw_lmm": stepped_wedge.hussey_hughes_lmm,
    "sw_gee": stepped_wedge.stepped_wedge_gee,
    "sw_exposure_time": stepped_wedge.exposure_time_model,
    "sw_permutation": stepped_wedge.permutation_test,
    "trial_itt": trial.itt_ancova,
    "trial_cace": trial.cace_2sls,
    "trial_per_protocol": trial.per_protocol,
    "trial_as_treated": trial.as_treated,
    "trial_itt_ipw": trial.itt_ipw_delta,
    "its_segmented": its.segmented_its,
    "its_controlled": its.controlled_its,
    "did_twfe": did.twfe,
    "did_event_study": did.event_study,
    "did_group_time": did.callaway_santanna,
    "synthetic_control": synthetic_control.synthetic_control,
    "dose_response_did": dose_response.dose_response_did,
    "cost_effectiveness": economics.cost_effectiveness,
}

#: Arguments the runner supplies itself rather than the protocol's options.
SUPPLIED = ("data", "outcome", "covariates")

#: Options that are time points: a protocol writes them as calendar months (YYYY-MM), each
#: mapped to the option naming the time column it is resolved on.
TIME_POINT_OPTIONS: dict[str, dict[str, str]] = {
    "its_segmented": {"interventions": "time"},
    "its_controlled": {"intervention": "time"},
    "synthetic_control": {"treatment_start": "time"},
}


def check_options(name: str, options: Mapping[str, Any]) -> list[str]:
    """Problems with a method's options (unknown or missing arguments); empty when fine."""
    params = inspect.signature(METHODS[name]).parameters
    problems = [
        f"unknown option {key!r} for {name}; allowed: "
        f"{', '.join(p for p in params if p not in SUPPLIED)}"
        for key in options
        if key not in params or key in SUPPLIED
    ]
    problems += [
        f"{name} needs option {p.name!r}"
        for p in params.values()
        if p.default is inspect.Parameter.empty
        and p.name not in SUPPLIED
        and p.kind is inspect.Parameter.KEYWORD_ONLY
        and p.name not in options
    ]
    for option in TIME_POINT_OPTIONS.get(name, {}):
        value = options.get(option)
        values = value if isinstance(value, list) else [value]
        if value is not None and not all(is_month(v) or is_milestone(v) for v in values):
            problems.append(
                f"option {option!r} of {name} is a time point: name the calendar "
                f"month (e.g. 2014-03) or a milestone ({{milestone: mdg_launch}}), "
                f"not a period number ({value!r})"
            )
    return problems


def fit(
    method: Any, data: pd.DataFrame, *, outcome: str, covariates: Sequence[str] = ()
) -> EstimationResult:
    """Fit ``method`` (a protocol MethodSpec) on ``data`` for ``outcome``.

    BLAS runs on one thread: the estimators' matrices are small, where threads gain nothing
    and, with other work on the cores, made the stepped-wedge SVDs 20-25 times slower
    (docs/benchmark.md); and a threaded BLAS sums in an order that depends on the core count,
    so results would differ in their last bits between machines.
    """
    estimator = METHODS[method.name]
    kwargs = resolve_options(method.options, TIME_POINT_OPTIONS.get(method.name, {}), data)
    if "covariates" in inspect.signature(estimator).parameters:
        kwargs["covariates"] = list(covariates)
    with threadpool_limits(limits=1, user_api="blas"):
        return estimator(data, outcome=outcome, **kwargs)

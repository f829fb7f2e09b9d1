"""Shared helpers: coupled (observed / counterfactual) event draws and event days.

Common random numbers: the counterfactual world draws Poisson(lambda) events; the observed world
keeps each one with probability min(ratio, 1) and adds Poisson(lambda * max(ratio - 1, 0)) extra
ones. Each world is then exactly Poisson with its own rate, and the two differ only where the
programme acts, so realised effects are observed minus counterfactual on the same draws. While
effects only reduce rates (ratios <= 1, as in every shipped scenario) the number of draws does not
depend on the effect sizes, so the ``null`` scenario's world is the ``default`` scenario's
counterfactual world.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Events:
    """Events as parallel arrays: person index, month index, and which world(s) hold them."""

    person: np.ndarray
    month: np.ndarray
    in_obs: np.ndarray
    in_cf: np.ndarray

    def __len__(self) -> int:
        return len(self.person)

    def take(self, mask: np.ndarray) -> Events:
        return Events(self.person[mask], self.month[mask], self.in_obs[mask], self.in_cf[mask])


def expand(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Person and month index of each unit of a person x month count matrix."""
    i, t = np.nonzero(counts)
    reps = counts[i, t]
    return np.repeat(i, reps), np.repeat(t, reps)


def _poisson(lam: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Poisson counts drawn only where the rate is positive (most cells are empty)."""
    flat = np.flatnonzero(lam > 0)
    counts = rng.poisson(lam.ravel()[flat])
    hit = counts > 0
    cell = np.repeat(flat[hit], counts[hit])
    return np.divmod(cell, lam.shape[1])


def coupled(lam: np.ndarray, ratio: np.ndarray | None, rng: np.random.Generator) -> Events:
    """Counterfactual Poisson(lam) and observed Poisson(lam * ratio) events on common draws."""
    i, t = _poisson(lam, rng)
    keep = rng.random(len(i))
    if ratio is None:
        xi, xt = np.zeros(0, int), np.zeros(0, int)
    else:
        xi, xt = _poisson(lam * np.maximum(ratio - 1.0, 0.0), rng)
    in_obs = keep < (1.0 if ratio is None else np.minimum(ratio[i, t], 1.0))
    return Events(
        np.concatenate([i, xi]),
        np.concatenate([t, xt]),
        np.concatenate([in_obs, np.ones(len(xi), bool)]),
        np.concatenate([np.ones(len(i), bool), np.zeros(len(xi), bool)]),
    )


def first_crossing(cum: np.ndarray, threshold: np.ndarray, never: int) -> np.ndarray:
    """Index of the first column where a cumulative hazard exceeds the person's threshold."""
    crossed = cum > threshold[:, None]
    return np.where(crossed.any(axis=1), crossed.argmax(axis=1), never)


def sigmoid(x: np.ndarray | float) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(x)))

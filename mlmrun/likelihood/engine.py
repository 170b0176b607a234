"""The doors every engine room opens to estimate/ and distributed/ (DESIGN.md section 5).

An engine answers questions about a free parameter vector (the partable's free
parameters in order, `ParTable.n_free` of them): the log likelihood, its
gradient, per-top-level-unit scores (the sandwich's meat, and what a map over
partitions of top-level units sums), and the posterior of the latent variables
per unit. Rooms implement it on their own objects; nothing here knows a room.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Engine(Protocol):
    """The small interface estimate/ drives every engine through."""

    n_free: int

    def loglik(self, free: np.ndarray) -> float:
        """Log likelihood (weighted: the log pseudolikelihood) at `free`."""

    def loglik_gradient(self, free: np.ndarray) -> tuple[float, np.ndarray]:
        """Log likelihood and its exact gradient in `free`."""

    def unit_scores(self, free: np.ndarray) -> np.ndarray:
        """Gradient contributions per top-level unit (units x n_free); their column sums are the gradient."""

    def posterior(self, free: np.ndarray) -> Sequence[Any]:
        """Per latent level, the posterior location and spread of each unit's latent variables
        (mlmrun.predict.LevelPrediction rows: means or modes with their SDs)."""

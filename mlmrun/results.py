"""FitResult: the immutable outcome of estimation, read by results JSON and reports."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mlmrun.compile.model import CompiledModel


@dataclass(frozen=True)
class FitResult:
    """Estimates on the parameter table plus fit statistics.

    `values` are natural-scale values of every partable row; `free` the optimiser's
    vector at the optimum; `cov_free` its covariance (inverse observed information),
    from which SEs of rows and of derived quantities (var, cov, corr) follow by the
    delta method.
    """

    model: CompiledModel
    values: np.ndarray
    free: np.ndarray
    cov_free: np.ndarray | None
    loglik: float
    method: str
    integration: dict[str, Any]
    converged: bool
    iterations: int
    n_evaluations: int
    fit_seconds: float
    warnings: tuple[str, ...] = ()
    extras: dict[str, Any] = field(default_factory=dict)
    """Method-specific extras: 'lr_test' (vs. model without latent variables), 'point_check',
    'empirical_bayes', 'fixed_vcov' (exact path: vcov of beta) and so on."""

    @property
    def n_params(self) -> int:
        return int(self.model.partable.n_free)

    @property
    def n_obs(self) -> int:
        return self.model.n

    @property
    def aic(self) -> float:
        return -2 * self.loglik + 2 * self.n_params

    @property
    def bic(self) -> float:
        return -2 * self.loglik + np.log(self.n_obs) * self.n_params

    def se(self) -> np.ndarray:
        """Standard error of every partable row (nan for fixed rows or when unavailable)."""
        pt = self.model.partable
        out = np.full(len(pt), np.nan)
        if self.cov_free is None:
            return out
        J = pt.jacobian(self.free)
        var = np.einsum("ik,kl,il->i", J, self.cov_free, J)
        out = np.sqrt(np.clip(var, 0, None))
        out[pt.frame["free"].to_numpy() == 0] = np.nan
        return out

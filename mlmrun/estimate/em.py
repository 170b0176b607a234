"""EM for discrete latent distributions: posterior point weights, then a partial maximisation of Q.

E-step: the posterior weights w_jk of each unit's points (likelihood/quadrature/discrete.py).
M-step: a few L-BFGS-B iterations on EM's complete-data objective
Q(theta) = sum_jk w_jk (log p_jk + sum_i log f_ik) with its analytic gradient
(a generalised EM step: Q rises, so the log likelihood does). EM is robust far
from the optimum and slow near it, so it only gets close; the quasi-Newton
stage (estimate/discrete_fit.py) converges.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize

from mlmrun.likelihood.quadrature.discrete import DiscreteObjective
from mlmrun.likelihood.quadrature.discrete_mixed import MixedObjective

M_STEP_ITERATIONS = 1


def em(obj: DiscreteObjective | MixedObjective, x: np.ndarray, weights: np.ndarray | None = None, iterations: int = 15,
       tol: float = 1e-8) -> np.ndarray:
    """`iterations` EM steps from `x` (the first M-step uses `weights` when given); returns the free vector."""
    x = np.asarray(x, dtype=float).copy()
    bounds = obj.model.partable.free_bounds()
    if not len(x):
        return x
    previous = -np.inf
    for it in range(iterations):
        if weights is None or it > 0:
            if hasattr(obj, "readapt"):
                obj.readapt(x)
            ev = obj.evaluate(x)
            if abs(ev.loglik - previous) <= tol * max(1.0, abs(ev.loglik)):
                break
            previous, weights = ev.loglik, ev.posterior
        w = weights

        def neg(y: np.ndarray, w: np.ndarray = w) -> tuple[float, np.ndarray]:
            e = obj.evaluate(y, weights=w)
            if not np.isfinite(e.value):
                return 1e300, np.zeros_like(y)
            return -e.value, -e.gradient

        res = minimize(neg, x, jac=True, method="L-BFGS-B", bounds=bounds,
                       options={"maxiter": M_STEP_ITERATIONS, "maxcor": 20})
        x = res.x
    return x

"""An independent, dense Laplace approximation for small models (test helper, not the engine).

All random effects of all levels, crossed or nested, are stacked into one
standardised vector u ~ N(0, I); row i's linear predictor is
nu_i = fixed_i + a_i' u, with a_i the row's loadings times each level's
Cholesky factor L (eta = L u per unit). The Laplace log likelihood is

    max_u [ sum_i log f(y_i | nu_i) - u'u / 2 ] - log det(I + A' W A) / 2,

W = diag(-d2 log f / d nu^2) at the mode, found by dense Newton steps. The
per-row log densities come from the model's families (tested on their own);
nothing here shares code with likelihood/laplace.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mlmrun.compile.matrices import model_matrices
from mlmrun.compile.model import CompiledModel
from mlmrun.likelihood.quadrature.objective import QuadratureObjective
from mlmrun.likelihood.quadrature.plan import IntegrationPlan


@dataclass
class DenseLaplace:
    """The dense Laplace log likelihood of a compiled model at natural parameter values."""

    model: CompiledModel

    def __post_init__(self) -> None:
        self.obj = QuadratureObjective(self.model, IntegrationPlan("laplace", "mode", (), (), ()), merge=False)
        self.levels = sorted({lat.level for lat in self.model.latent})

    def design(self, values: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[tuple[int, int, int]]]:
        """(fixed part per row, dense A, [(level, first column, q)]) at `values`."""
        model = self.model
        free = model.partable.pack(values)
        pc = self.obj.pieces(free)
        mm = model_matrices(model, values)
        ZT = pc.Z @ pc.T
        n = len(pc.pred.fixed)
        blocks, cols, start = [], [], 0
        for lvl in self.levels:
            members = model.latent_at(lvl)
            level = model.levels[lvl]
            q = len(members)
            load = ZT[:, members] @ mm.L[lvl]
            block = np.zeros((n, level.n_units * q))
            codes = level.codes[self.obj.lay.rows.original]
            for j in range(q):
                block[np.arange(n), codes * q + j] = load[:, j]
            cols.append(block)
            blocks.append((lvl, start, q))
            start += level.n_units * q
        return pc.pred.fixed, np.concatenate(cols, axis=1), blocks

    def loglik(self, values: np.ndarray, tol: float = 1e-12) -> tuple[float, np.ndarray, np.ndarray]:
        """(Laplace log likelihood, mode u, the covariance (I + A'WA)^-1 of u) at `values`."""
        fixed, A, _ = self.design(values)
        fam = self.obj.pieces(self.model.partable.pack(values)).fam
        u = np.zeros(A.shape[1])
        for _ in range(200):
            ll, d1, d2 = fam.derivs(fixed + A @ u, 2)
            H = A.T @ (-d2[:, None] * A) + np.eye(len(u))
            step = np.linalg.solve(H, A.T @ d1 - u)
            t, f0 = 1.0, float(ll.sum() - u @ u / 2)
            while t > 1e-8:
                cand = u + t * step
                if float(fam.derivs(fixed + A @ cand, 0)[0].sum() - cand @ cand / 2) >= f0 - 1e-12:
                    break
                t /= 2
            u = u + t * step
            if np.max(np.abs(t * step)) < tol:
                break
        ll, d1, d2 = fam.derivs(fixed + A @ u, 2)
        H = A.T @ (-d2[:, None] * A) + np.eye(len(u))
        sign, logdet = np.linalg.slogdet(H)
        assert sign > 0
        return float(ll.sum() - u @ u / 2 - logdet / 2), u, np.linalg.inv(H)

    def modes(self, values: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Per level name: posterior modes of eta = L u (units x q) and their conditional SDs."""
        _, u, V = self.loglik(values)
        mm = model_matrices(self.model, values)
        _, _, blocks = self.design(values)
        out = {}
        for lvl, start, q in blocks:
            n_units = self.model.levels[lvl].n_units
            L = mm.L[lvl]
            uu = u[start:start + n_units * q].reshape(n_units, q)
            sd = np.zeros((n_units, q))
            for c in range(n_units):
                sl = slice(start + c * q, start + (c + 1) * q)
                sd[c] = np.sqrt(np.diag(L @ V[sl, sl] @ L.T))
            out[self.model.levels[lvl].name] = (uu @ L.T, sd)
        return out

    def unit_loglik(self, values: np.ndarray) -> np.ndarray:
        """Per unit of a model with ONE latent level: its Laplace contribution (H is block diagonal by unit),
        sum_(rows in c) log f - |u_c|^2 / 2 - log det(H_cc) / 2; their sum is `loglik`."""
        assert len(self.levels) == 1
        fixed, A, blocks = self.design(values)
        _, u, _ = self.loglik(values)
        fam = self.obj.pieces(self.model.partable.pack(values)).fam
        ll, _, d2 = fam.derivs(fixed + A @ u, 2)
        H = A.T @ (-d2[:, None] * A) + np.eye(len(u))
        lvl, _, q = blocks[0]
        level = self.model.levels[lvl]
        codes = level.codes[self.obj.lay.rows.original]
        out = np.bincount(codes, weights=ll, minlength=level.n_units)
        for c in range(level.n_units):
            sl = slice(c * q, (c + 1) * q)
            out[c] -= u[sl] @ u[sl] / 2 + np.linalg.slogdet(H[sl, sl])[1] / 2
        return out

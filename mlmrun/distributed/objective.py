"""The likelihood of one fit as a map over worker-resident partitions and a sum on the client.

Worker side: `QuadraturePart` and `GaussianPart` wrap one partition's
CompiledModel in the single-process engine (likelihood/quadrature's
QuadratureObjective; likelihood/gaussian's design and factorisation) and
answer with sums over their rows. Client side: `DistributedQuadrature` has
the methods estimate/quadrature_fit.py and quadrature_opt.py call on a
QuadratureObjective (adapt, frozen, readapted, glm), and
`DistributedGaussian` those estimate/gaussian_fit.py calls on its Objective
(fit, value_and_grad), so the single-process drivers (optimisers, rounds of
re-adaptation, standard errors) run unchanged on the client.

Adaptation (per-unit modes and curvatures) belongs to the units, so it stays
on the workers: the client holds `RemoteAdaptation` handles (a key and the
rules), the workers the arrays, the last KEEP of them.

The exact Gaussian deviance of a nested model is not itself a sum, but its
pieces are (likelihood/gaussian/deviance.py): V is block diagonal over
top-level units, so log|M|, log|S| and the Schur complement F'V^-1F are sums
of the partitions' pieces, from which the client profiles beta and sigma
exactly as `profile_schur` does. The gradient is linear in the matrix P the
client forms from those sums (likelihood/gaussian/gradient.py), so a second
map with P returns per-partition gradients that add up. Every partition
shifts y by the same data-wide OLS fit (`ShiftedDesign`), so the pieces are
in one coordinate system.
"""

from __future__ import annotations

import itertools
from collections import OrderedDict
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import numpy as np

from mlmrun.compile.matrices import model_matrices, values_gradient
from mlmrun.compile.model import CompiledModel
from mlmrun.estimate.gaussian_fit import PENALTY, Objective
from mlmrun.estimate.gaussian_params import GaussianParams
from mlmrun.likelihood.gaussian.design import GaussianDesign
from mlmrun.likelihood.gaussian.deviance import Profiled, factor_system, profile_schur
from mlmrun.likelihood.gaussian.gradient import _matrix_gradient, _solve_schur, system_gradient
from mlmrun.likelihood.quadrature.objective import QuadratureObjective
from mlmrun.likelihood.quadrature.plan import IntegrationPlan, integration_plan
from mlmrun.likelihood.sparse.selected_inverse import selected_inverse

KEEP = 64
"""Adaptations a worker keeps (the drivers only go back a few rounds)."""


@dataclass(frozen=True)
class RemoteAdaptation:
    """A handle on an adaptation held by every worker (each for its own units), with the rules to use it with.

    `pending` = (free, warm handle, rules) is how to compute it: a worker adapts when a call first uses the
    handle, so adapting costs no round trip of its own (the drivers always evaluate right after adapting)."""

    key: int
    rules: tuple
    pending: tuple | None = None

    def with_rules(self, rules: tuple) -> RemoteAdaptation:
        """Same placement, other rules (as Adaptation.with_rules)."""
        return RemoteAdaptation(self.key, rules, self.pending)


class QuadraturePart:
    """Worker side of the quadrature path: one partition's QuadratureObjective and its adaptations."""

    def __init__(self, model: CompiledModel) -> None:
        self.obj = QuadratureObjective(model, integration_plan(model))
        self.ads: OrderedDict[int, Any] = OrderedDict()

    def _ad(self, handle: RemoteAdaptation | None) -> Any:
        if handle is None:
            return None
        if handle.key not in self.ads:
            if handle.pending is None:
                raise RuntimeError(f"adaptation {handle.key} is no longer held by this worker (it keeps {KEEP})")
            free, warm, rules = handle.pending
            self._keep(handle.key, self.obj.adapt(free, self._ad(warm), rules))
        self.ads.move_to_end(handle.key)
        return self.ads[handle.key].with_rules(handle.rules)

    def _keep(self, key: int, ad: Any) -> None:
        self.ads[key] = ad
        while len(self.ads) > KEEP:
            self.ads.popitem(last=False)

    def readapted(self, handle: RemoteAdaptation) -> float:
        """Log likelihood with the (pending) adaptation `handle`, adapting first."""
        assert handle.pending is not None
        return self.obj.frozen(handle.pending[0], self._ad(handle), gradient=False)[0]

    def frozen(self, free: np.ndarray, handle: RemoteAdaptation, gradient: bool) -> tuple[float, np.ndarray | None]:
        return self.obj.frozen(free, self._ad(handle), gradient)

    def louis_applies(self) -> bool:
        return self.obj.louis_applies()

    def hessian(self, free: np.ndarray, handle: RemoteAdaptation) -> np.ndarray:
        """This partition's share of the frozen log likelihood's Hessian (Louis' identity per unit)."""
        return self.obj.hessian(free, self._ad(handle))

    def glm(self, free: np.ndarray) -> tuple[float, np.ndarray]:
        return self.obj.glm(free)


class LaplacePart(QuadraturePart):
    """Worker side of the Laplace path: the partition's joint Laplace engine (its units' share of the log
    likelihood and gradient: the Hessian of the random effects is block-diagonal over top-level units), and
    the quadrature part for the GLM start."""

    def __init__(self, model: CompiledModel) -> None:
        super().__init__(model)
        from mlmrun.likelihood.laplace.objective import LaplaceEngine

        self.engine = LaplaceEngine(model)

    def laplace_loglik_gradient(self, free: np.ndarray) -> tuple[float, np.ndarray]:
        return self.engine.loglik_gradient(free)


class DistributedLaplace:
    """The joint Laplace engine over partitions of top-level units (nested models): sums on the client."""

    def __init__(self, model: CompiledModel, pool: Any) -> None:
        self.n_free = model.partable.n_free
        self.pool = pool

    def loglik_gradient(self, free: np.ndarray) -> tuple[float, np.ndarray]:
        parts = self.pool.map("laplace_loglik_gradient", np.asarray(free, float))
        ll = float(sum(p[0] for p in parts))
        if not np.isfinite(ll):
            return -np.inf, np.zeros(len(free))
        return ll, np.sum([p[1] for p in parts], axis=0)

    def loglik(self, free: np.ndarray) -> float:
        return self.loglik_gradient(free)[0]

    def unit_scores(self, free: np.ndarray) -> np.ndarray:
        raise ValueError("a distributed fit keeps the unit scores on the workers (robust SEs are refused there)")

    def posterior(self, free: np.ndarray) -> None:
        """None: empirical Bayes predictions stay on the workers in a distributed fit."""
        return None


_keys = itertools.count(1)


class DistributedQuadrature:
    """A QuadratureObjective whose every evaluation is a map over the partitions and a sum on the client."""

    def __init__(self, model: CompiledModel, pool: Any) -> None:
        self.model = model
        self.plan: IntegrationPlan = integration_plan(model)
        self.pool = pool
        self.lay = SimpleNamespace(hierarchy=True, row_weight=None)  # the drivers only ask whether levels exist
        self.n_evaluations = 0
        self.resolved: set[int] = set()
        """Keys every worker has computed: their handles travel without `pending`."""

    def _sent(self, handle: RemoteAdaptation | None) -> RemoteAdaptation | None:
        """The handle as sent: resolved ones bare, pending ones with their (shortened) warm-start chain."""
        if handle is None or handle.key in self.resolved or handle.pending is None:
            return None if handle is None else RemoteAdaptation(handle.key, handle.rules)
        free, warm, rules = handle.pending
        return RemoteAdaptation(handle.key, handle.rules, (free, self._sent(warm), rules))

    def _used(self, handle: RemoteAdaptation | None) -> None:
        while handle is not None:
            self.resolved.add(handle.key)
            handle = handle.pending[1] if handle.pending else None

    def adapt(self, free: np.ndarray, warm: RemoteAdaptation | None = None, rules: tuple | None = None
              ) -> RemoteAdaptation:
        rules = self.plan.rules if rules is None else rules
        return RemoteAdaptation(next(_keys), rules, (np.asarray(free, float).copy(), warm, rules))

    def frozen(self, free: np.ndarray, ad: RemoteAdaptation, gradient: bool = True) -> tuple[float, np.ndarray | None]:
        self.n_evaluations += 1
        parts = self.pool.map("frozen", np.asarray(free, float), self._sent(ad), gradient)
        self._used(ad)
        ll = float(sum(p[0] for p in parts))
        if not gradient:
            return ll, None
        if not np.isfinite(ll):
            return -np.inf, np.zeros(len(free))
        return ll, np.sum([p[1] for p in parts], axis=0)

    def louis_applies(self) -> bool:
        """Whether the partitions' Hessians are analytic (the same answer on every worker: it depends on the spec)."""
        return all(self.pool.map("louis_applies"))

    def hessian(self, free: np.ndarray, ad: RemoteAdaptation, keep_moments: bool = False) -> np.ndarray:
        """The frozen log likelihood's Hessian: a sum over units, so the sum of the partitions' (empirical Bayes
        moments are not kept: a distributed fit leaves them on the workers)."""
        self.n_evaluations += 1
        parts = self.pool.map("hessian", np.asarray(free, float), self._sent(ad))
        self._used(ad)
        return np.sum(parts, axis=0)

    def readapted(self, free: np.ndarray, warm: RemoteAdaptation | None = None) -> tuple[float, RemoteAdaptation]:
        ad = self.adapt(free, warm)
        self.n_evaluations += 1
        ll = float(sum(self.pool.map("readapted", self._sent(ad))))
        self._used(ad)
        return ll, ad

    def glm(self, free: np.ndarray) -> tuple[float, np.ndarray]:
        self.n_evaluations += 1
        parts = self.pool.map("glm", np.asarray(free, float))
        return float(sum(p[0] for p in parts)), np.sum([p[1] for p in parts], axis=0)


class ShiftedDesign(GaussianDesign):
    """A partition's Gaussian design with y shifted by the data-wide OLS fit instead of its own."""

    def __init__(self, model: CompiledModel, shift: np.ndarray) -> None:
        self._shift = np.asarray(shift, float)
        super().__init__(model)

    def _fixed_columns(self, model: CompiledModel, reach: np.ndarray) -> None:
        super()._fixed_columns(model, reach)
        if self.p:
            self.F[:, -1] += self.F[:, :self.p] @ (self.beta_shift - self._shift)
            self.beta_shift = self._shift.copy()


class GaussianPart:
    """Worker side of the exact Gaussian path: sums for the start, the deviance pieces and the gradient."""

    def __init__(self, model: CompiledModel) -> None:
        self.model = model
        self.params = GaussianParams(model)
        self.design: ShiftedDesign | None = None
        self.state: tuple | None = None

    def normal_equations(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, float, float]:
        """X'X, X'(y - offset) of all columns; Xf'Xf, Xf'y0 and y0'y0 of the free columns (y0: y less the
        fixed betas), and n."""
        m = self.model
        X, y = m.X, m.y - m.offset
        pt = m.partable
        free = pt.frame["free"].to_numpy()[m.beta_rows] > 0
        y0 = y - X[:, ~free] @ pt.start_values[m.beta_rows][~free]
        Xf = X[:, free]
        return X.T @ X, X.T @ y, Xf.T @ Xf, Xf.T @ y0, float(y0 @ y0), float(m.n)

    def residual_sums(self, beta: np.ndarray) -> dict[str, Any]:
        """Sums the moment start needs (estimate/gaussian_params.start_values) at the data-wide OLS beta."""
        m = self.model
        e = m.y - m.offset - m.X @ beta
        out: dict[str, Any] = {"ee": float(e @ e), "levels": {}, "rms": {}}
        for lvl in sorted({lat.level for lat in m.latent}):
            idx = m.levels[lvl]
            size = np.maximum(idx.sizes(), 1)
            means = np.bincount(idx.codes, weights=e, minlength=idx.n_units) / size
            out["levels"][lvl] = (float(np.sum((e - means[idx.codes]) ** 2)), float(means.sum()),
                                  float(means @ means), idx.n_units, float(np.sum(size)))
        values = m.partable.start_values
        for k, lat in enumerate(m.latent):
            if lat.Z.shape[1]:
                z = lat.Z @ values[lat.loading_rows]
                out["rms"][k] = float(z @ z)
        return out

    def set_shift(self, shift: np.ndarray) -> bool:
        """Build the design with the data-wide shift; True when the selected inverse (analytic gradient) exists."""
        from mlmrun.likelihood.sparse import blocks as sparse_blocks

        self.design = ShiftedDesign(self.model, shift)
        return self.design.structure.q_remainder <= sparse_blocks.DENSE_MAX

    def _mats(self, free: np.ndarray, phi: np.ndarray | None) -> tuple[np.ndarray, Any]:
        values = self.model.partable.unpack(free)
        mats = model_matrices(self.model, values)
        return values, (mats if phi is None else self.params.with_factors(mats, phi))

    def pieces(self, free: np.ndarray, phi: np.ndarray | None, profile_sigma: bool) -> tuple | None:
        """(S = F'V^-1F, log|M|, log|S|) of this partition, its factorisation kept for `gradient`."""
        assert self.design is not None
        values, mats = self._mats(free, phi)
        if not mats.valid:
            return None
        try:
            design = self.design.whitened(mats)
            weights, log_s, E, system, factor = factor_system(design, mats, profile_sigma)
            U, S = _solve_schur(factor, system)
        except np.linalg.LinAlgError:
            return None
        self.state = (design, mats, values, weights, E, factor, U, profile_sigma)
        return S, float(factor.logdet), float(log_s)

    def gradient(self, P: np.ndarray) -> tuple[np.ndarray, dict]:
        """This partition's gradient of -deviance/2 on the partable values, and on the L matrices, given P."""
        assert self.state is not None
        design, mats, values, weights, E, factor, U, profile_sigma = self.state
        inv = selected_inverse(factor, design.inverse_plan)
        if inv is None:
            raise RuntimeError("no selected inverse for this partition (sparse-LU remainder)")
        sg = system_gradient(design, inv, U, P)
        grad = _matrix_gradient(design, mats, E, weights, sg, profile_sigma, beta_given=False)
        return values_gradient(self.model, values, grad), {k: np.asarray(v) for k, v in grad.L.items()}


@dataclass(frozen=True)
class Dims:
    """What profile_schur reads of a design: rows, free fixed effects and the shift of y (data-wide)."""

    n: int
    p: int
    beta_shift: np.ndarray


class DistributedGaussian(Objective):
    """gaussian_fit.Objective over the partitions: the deviance profiled on the client from summed pieces."""

    def __init__(self, model: CompiledModel, params: GaussianParams, reml: bool, pool: Any, dims: Dims) -> None:
        self.model, self.design, self.params, self.reml = model, None, params, reml
        self.pool, self.dims = pool, dims
        self.n_evaluations = 0
        self.iterations = 0
        self.last: dict[bytes, float] = {}
        lo = [-np.inf if b[0] is None else b[0] for b in params.bounds]
        hi = [np.inf if b[1] is None else b[1] for b in params.bounds]
        self.lo, self.hi = np.array(lo, float), np.array(hi, float)
        self.analytic = True

    def summed(self, free: np.ndarray, phi: np.ndarray | None, reml: bool, profile_sigma: bool
               ) -> tuple[Profiled, np.ndarray] | None:
        """The profiled criterion at the partable free vector `free` (relative scale at `phi` when given), and the
        summed Schur complement F'V^-1F; None where a partition finds no valid model."""
        parts = self.pool.map("pieces", free, phi, profile_sigma)
        if any(q is None for q in parts):
            return None
        S = np.sum([q[0] for q in parts], axis=0)
        S = 0.5 * (S + S.T)
        try:
            prof = profile_schur(self.dims, S, float(sum(q[1] for q in parts)), float(sum(q[2] for q in parts)),
                                 reml=reml, profile_sigma=profile_sigma)
        except np.linalg.LinAlgError:
            return None
        return prof, S

    def pieces_and_gradient(self, free: np.ndarray, phi: np.ndarray | None, reml: bool, profile_sigma: bool
                            ) -> tuple[Profiled, np.ndarray, dict] | None:
        """Profiled criterion and the summed gradient of -deviance/2 on the partable values and on L (two maps).

        The gradient is linear in P (likelihood/gaussian/gradient.py), formed here from the summed pieces
        exactly as `profiled_gradient` forms it from the whole data's."""
        out = self.summed(free, phi, reml, profile_sigma)
        if out is None:
            return None
        prof, S = out
        p = self.dims.p
        e = np.concatenate([-np.linalg.solve(prof.xtvx, S[:p, p]) if p else np.zeros(0), [1.0]])
        dof = self.dims.n - p if reml else self.dims.n
        coef = dof / max(float(e @ S @ e), 1e-300) if profile_sigma else 1.0
        P = coef * np.outer(e, e)
        if reml and p:
            Q = np.linalg.inv(prof.xtvx)
            P[:p, :p] += 0.5 * (Q + Q.T)
        parts = self.pool.map("gradient", P)
        g_values = np.sum([q[0] for q in parts], axis=0)
        L = {k: np.sum([q[1][k] for q in parts], axis=0) for k in parts[0][1]}
        return prof, g_values, L

    def fit(self, phi: np.ndarray) -> Profiled | None:
        phi = np.asarray(phi, float)
        if self.matrices(phi) is None:
            return None
        out = self.summed(self.params.free_vector(phi), phi, self.reml, self.params.profile_sigma)
        return None if out is None else out[0]

    def value_and_grad(self, phi: np.ndarray) -> tuple[float, np.ndarray]:
        phi = np.asarray(phi, float)
        self.n_evaluations += 1
        dev, g = PENALTY, np.zeros(len(phi))
        at = self.matrices(phi)
        if at is not None:
            free = self.params.free_vector(phi)
            out = self.pieces_and_gradient(free, phi, self.reml, self.params.profile_sigma)
            if out is not None and np.isfinite(out[0].deviance):
                prof, g_values, L = out
                g_free = self.model.partable.jacobian(free).T @ g_values
                dev, g = prof.deviance, -2.0 * self.params.phi_gradient(g_free, L, phi)
        self._remember(phi, dev)
        return dev, g

"""LaplaceEngine: the joint Laplace approximation over all random effects, its exact gradient, EB and scores.

With g(u) = sum_i ll_i(nu_i) - u'u/2 (u ~ N(0, I) the standardised random
effects of every level, crossed or nested) and its mode u*,

    log L ~= g(u*) - 1/2 log|H|,   H = I + A'WA,   W = diag(-ll_i'') at u*,

with log|H| from the block factorisation (mlmrun.likelihood.sparse.blocks).
The gradient is exact (implicit differentiation through the mode):

    dl/dtheta = d_theta F|u* + (A'c)' du*/dtheta,   c_i = h_i ll_i''' / 2,   h_i = a_i' H^-1 a_i,
    du*/dtheta = H^-1 d_theta(A's)|u*,   s = ll',

so with v = H^-1 A'c (one solve) and t_i = a_i . v the whole gradient is one
call of the linear-predictor adjoint (mlmrun.likelihood.laplace.adjoint) with

    es  = s + c + t ll'',
    esu = (s + c + t ll'') u_(i) + s v_(i) - w_i H^-1 a_i   (restricted to row i's units),
    phi = d ll/d phi + h/2 d ll''/d phi + t d ll'/d phi.

The blocks of H^-1 on the units each row touches (diagonal and unit-pair
blocks) come from the selected inverse (mlmrun.likelihood.sparse.selected_inverse);
nothing of size (random effects)^2 is formed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mlmrun.compile.model import CompiledModel
from mlmrun.likelihood.laplace.adjoint import family_terms, free_gradient, row_jacobians
from mlmrun.likelihood.laplace.mode import Mode, ModeFailure, find_mode
from mlmrun.likelihood.laplace.rowfamilies import model_kernels
from mlmrun.likelihood.laplace.structure import LaplaceStructure
from mlmrun.likelihood.laplace.system import Pieces, gather, pieces, scatter
from mlmrun.likelihood.sparse.selected_inverse import SelectedInverse


@dataclass(frozen=True)
class LaplacePosterior:
    """Empirical Bayes for one latent level: posterior modes and conditional SDs (lme4's ranef with condVar)."""

    level: int
    """Index into CompiledModel.levels."""
    members: tuple[int, ...]
    """Latent variables of the level (CompiledModel.latent_at order)."""
    mode_u: np.ndarray
    """(units, k): modes of the standardised disturbances u."""
    cov_u: np.ndarray
    """(units, k, k): their conditional covariance, the unit's diagonal block of H^-1."""
    mode: np.ndarray
    """(units, k): modes of the latent variables (eta = T L u within the level, plus the mean of the rows' Gamma w term)."""
    sd: np.ndarray
    """(units, k): conditional SDs of the latent variables."""
    cov: np.ndarray
    """(units, k, k): conditional covariance of the latent variables."""



class LaplaceEngine:
    """The Laplace approximation of a compiled model's marginal log likelihood (implements likelihood.engine.Engine)."""

    def __init__(self, model: CompiledModel) -> None:
        self.model = model
        self.structure = LaplaceStructure(model)
        self.n_free = model.partable.n_free
        self._warm: list[np.ndarray] | None = None
        self._cache: tuple[np.ndarray, Pieces, Mode] | None = None
        self.n_evaluations = 0
        self._kernels = model_kernels(model)

    def describe(self) -> str:
        """One line for logs: levels in elimination order and how H is factorised."""
        st, model = self.structure, self.model
        names = [f"{model.levels[lv.level].name} ({lv.n_units} x {lv.k})" for lv in st.levels]
        how = (f"one Schur complement, dense remainder of {st.schur.q_r}" if st.schur is not None
               else "blocked elimination (likelihood/sparse)")
        return f"joint Laplace over {st.q} random effects: levels {', '.join(names)}; {how}"

    def _mode(self, free: np.ndarray, third: bool) -> tuple[Pieces, Mode] | None:
        free = np.asarray(free, dtype=float)
        if self._cache is not None and np.array_equal(self._cache[0], free):
            pc, md = self._cache[1], self._cache[2]
            if third and md.rd.d3 is None:
                md.rd = pc.fam.derivs(md.nu, third=True)
            return pc, md
        pc = pieces(self.model, free, self._kernels)
        if not pc.mm.valid:
            return None
        try:
            md = find_mode(self.structure, pc, self._warm, third)
        except (ModeFailure, np.linalg.LinAlgError, FloatingPointError):
            return None
        self._warm = [x.copy() for x in md.u]
        self._cache = (free.copy(), pc, md)
        return pc, md

    @staticmethod
    def _value(md: Mode) -> float:
        return md.g - 0.5 * md.factor.logdet

    def loglik(self, free: np.ndarray) -> float:
        """Laplace approximation of the marginal log likelihood at `free` (-inf where undefined)."""
        self.n_evaluations += 1
        got = self._mode(free, third=False)
        return -np.inf if got is None else self._value(got[1])

    def modes(self, free: np.ndarray) -> list[np.ndarray]:
        """Per latent level (CompiledModel.levels order of the latent levels), the modes of u, (units, k)."""
        got = self._mode(free, third=False)
        if got is None:
            raise ValueError("the random-effect modes could not be found at these parameter values")
        md = got[1]
        order = sorted(range(len(self.structure.levels)), key=lambda j: self.structure.levels[j].level)
        return [md.u[j].copy() for j in order]

    def _selected(self, md: Mode) -> SelectedInverse:
        diag, pairs = self.structure.selected(md.factor)
        return SelectedInverse(diag, pairs)

    def _leverage(self, md: Mode, sel: SelectedInverse) -> tuple[np.ndarray, list[np.ndarray]]:
        """h_i = a_i' H^-1 a_i and r_i = H^-1 a_i on row i's units (per level, (n, k))."""
        st = self.structure
        coef = md.coef
        r = [np.einsum("ijk,ik->ij", sel.diag[j][lv.codes], coef[j]) for j, lv in enumerate(st.levels)]
        for (a, b), rp in st.row_pair.items():
            Zab = sel.pairs[(a, b)][rp]
            r[a] += np.einsum("ijk,ik->ij", Zab, coef[b])
            r[b] += np.einsum("ikj,ik->ij", Zab, coef[a])
        h = sum(np.einsum("ij,ij->i", c, x) for c, x in zip(coef, r, strict=True))
        return np.asarray(h, float) if len(coef) else np.zeros(self.model.n), r

    def _sensitivities(self, pc: Pieces, md: Mode) -> tuple[np.ndarray, np.ndarray, list, np.ndarray, np.ndarray]:
        """es, esu, family terms of the gradient (module docstring), and the rows' leverage h and t."""
        st, model = self.structure, self.model
        M = len(model.latent)
        rd = md.rd
        sel = self._selected(md)
        h, r = self._leverage(md, sel)
        c = 0.5 * h * rd.d3
        b = scatter(st, md.coef, c)
        v = [x[:, :, 0] for x in md.factor.solve([x[:, :, None] for x in b])]
        v_row = gather(st, v, M)
        u_row = gather(st, md.u, M)
        t = np.einsum("im,im->i", pc.A, v_row)
        common = rd.d1 + c + t * rd.d2
        r_row = np.zeros((model.n, M))
        for lv, x in zip(st.levels, r, strict=True):
            r_row[:, lv.members] = x
        esu = common[:, None] * u_row + rd.d1[:, None] * v_row + rd.d2[:, None] * r_row
        fam = family_terms(pc.fam.params(md.nu), (np.ones(model.n), t, 0.5 * h), model)
        return common, esu, fam, h, t

    def loglik_gradient(self, free: np.ndarray) -> tuple[float, np.ndarray]:
        """Laplace log likelihood and its exact gradient on the free vector."""
        self.n_evaluations += 1
        free = np.asarray(free, dtype=float)
        got = self._mode(free, third=True)
        if got is None:
            return -np.inf, np.zeros(self.n_free)
        pc, md = got
        try:
            es, esu, fam, _, _ = self._sensitivities(pc, md)
        except np.linalg.LinAlgError:
            return -np.inf, np.zeros(self.n_free)
        return self._value(md), free_gradient(self.model, pc, es, esu, fam)

    def unit_scores(self, free: np.ndarray) -> np.ndarray:
        """Per top-level unit gradient contributions (units x n_free); nested models only."""
        top = self.structure.top_units()
        if top is None:
            raise ValueError("per-unit scores need nested levels: crossed random effects do not split into "
                             "independent top-level units")
        n_top, codes = top
        free = np.asarray(free, dtype=float)
        got = self._mode(free, third=True)
        if got is None:
            raise ValueError("the Laplace approximation is not defined at these parameter values")
        pc, md = got
        es, esu, fam, _, _ = self._sensitivities(pc, md)
        d_fixed, d_A, d_phi = row_jacobians(self.model, free)
        per_row = es[:, None] * d_fixed + np.einsum("im,imf->if", esu, d_A)
        for (e, f), (e2, dphi) in zip(fam, d_phi, strict=True):
            assert e == e2
            rows = self.model.equations[e].rows
            per_row[rows] += np.einsum("ip,ipf->if", f, dphi)
        out = np.zeros((n_top, self.n_free))
        np.add.at(out, codes, per_row)
        return out

    def posterior(self, free: np.ndarray) -> list[LaplacePosterior]:
        """Per latent level (CompiledModel.levels order): modes and conditional covariances at the joint mode."""
        got = self._mode(free, third=False)
        if got is None:
            raise ValueError("the random-effect modes could not be found at these parameter values")
        pc, md = got
        sel = self._selected(md)
        st = self.structure
        G = pc.T @ pc.Lfull
        base_rows = pc.WG @ pc.T.T
        out = []
        for j in sorted(range(len(st.levels)), key=lambda j: st.levels[j].level):
            lv = st.levels[j]
            Gk = G[np.ix_(lv.members, lv.members)]
            counts = np.maximum(np.bincount(lv.codes, minlength=lv.n_units), 1)
            base = np.stack([np.bincount(lv.codes, weights=base_rows[:, m], minlength=lv.n_units)
                             for m in lv.members], axis=1) / counts[:, None]
            cov = np.einsum("qd,cde,pe->cqp", Gk, sel.diag[j], Gk)
            mode = md.u[j] @ Gk.T + base
            out.append(LaplacePosterior(lv.level, tuple(int(m) for m in lv.members), md.u[j].copy(),
                                        sel.diag[j].copy(), mode, np.sqrt(np.clip(np.einsum("cqq->cq", cov), 0, None)),
                                        cov))
        return out

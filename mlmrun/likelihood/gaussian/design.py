"""The linear Gaussian model as cross products grouped by random-effect level.

For row i (notation of mlmrun.compile.model), with xi_i the loading-design
values Z_m[i] of all latent variables and z_m(i) = Z_m[i] @ lambda_m,

    y_i - offset_i = x_i' beta + z_i' T Gamma w_i + sum_l a_l(i)' u_l(unit_l(i)) + e_i,
    a_l(i) = G_l' z_i = H_l' xi_{l,i},   G = T blockdiag(L_l),   e_i ~ N(0, sigma_i^2),

so A (n x q, one column per unit and coefficient) is sparse and linear in xi
once the parameters fix H_l = Lambda_blk G_l. Everything the likelihood needs
is A'WA (by unit blocks), A'WF and F'WF, F = [X, y~] with y~ = y - offset -
Gamma term (W = diag(1/sigma_i^2)). They are formed either from raw sums of
xi xi' per unit and residual class, computed once (cheap per evaluation, the
usual case: Z does not depend on the parameters), or from the rows at every
evaluation when raw sums would be larger than the data. The reverse of
`system` (for the analytic gradient) is mlmrun.likelihood.gaussian.adjoint.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace
from functools import cached_property

import numpy as np
import scipy.sparse as sp

from mlmrun.compile.layout import level_layout
from mlmrun.compile.matrices import ModelMatrices
from mlmrun.compile.model import CompiledModel
from mlmrun.likelihood.gaussian.residual_structures import ResidualPlan
from mlmrun.likelihood.sparse.blocks import BlockStructure, BlockSystem
from mlmrun.likelihood.sparse.order import elimination_order
from mlmrun.likelihood.sparse.selected_inverse import InversePlan


@dataclass(frozen=True)
class LevelDesign:
    """One level with latent variables, in elimination order."""

    level: int
    """Index into CompiledModel.levels."""
    members: tuple[int, ...]
    """Latent variables at this level (CompiledModel.latent_at order): the k coefficients per unit."""
    sources: tuple[int, ...]
    """Latent variables whose loadings carry this level's disturbances (members and those reaching them via B)."""
    xi: np.ndarray
    """(n, K): loading-design columns of the sources, concatenated."""
    codes: np.ndarray
    n_units: int


def _wsum(S: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weighted sum over the class axis (axis 1) of raw sums."""
    if len(weights) == 1:
        return S[:, 0] * weights[0]
    return np.tensordot(S, weights, axes=([1], [0]))


def _outer(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a[:, :, None] * b[:, None, :]).reshape(len(a), -1)


def _grouped_outer(keys: np.ndarray, n_groups: int, a: np.ndarray, b: np.ndarray, symmetric: bool = False
                   ) -> np.ndarray:
    """sum of a_i b_i' over the rows i of every key, (n_groups, K_a * K_b) as `_outer` rows summed by key.

    One bincount per product column (the upper triangle only when a is b, `symmetric`) instead of a
    sparse 0/1 aggregation matrix times the n x K_a K_b outer products: within each key the rows are
    added in data order, as the sparse product adds them, so the sums are the same to the last bit,
    without the fixed cost of building sparse matrices or the wide row-wise products.
    """
    ka, kb = a.shape[1], b.shape[1]
    out = np.empty((n_groups, ka, kb))
    aT, bT = np.ascontiguousarray(a.T), np.ascontiguousarray(b.T)
    for i in range(ka):
        for j in range(i if symmetric else 0, kb):
            out[:, i, j] = np.bincount(keys, weights=aT[i] * bT[j], minlength=n_groups)
            if symmetric and j > i:
                out[:, j, i] = out[:, i, j]
    return out.reshape(n_groups, ka * kb)


def _reach(model: CompiledModel) -> np.ndarray:
    """reach[m, j]: T = (I - B)^-1 can be structurally non-zero at (m, j)."""
    M = len(model.latent)
    R = np.eye(M, dtype=bool)
    for i, j, _ in model.B_entries:
        R[i, j] = True
    for _ in range(M):
        R = R | ((R.astype(int) @ R.astype(int)) > 0)
    return R


class GaussianDesign:
    """Parameter-free arrays of a linear Gaussian CompiledModel (built once, reused every evaluation)."""

    def __init__(self, model: CompiledModel, with_levels: bool = True):
        self.model = model
        n = self.n = model.n
        reach = _reach(model)
        used = sorted({lat.level for lat in model.latent}) if with_levels else []
        self.levels: list[LevelDesign] = []
        for lv in elimination_order(model, used):
            members = tuple(model.latent_at(lv))
            sources = tuple(m for m in range(len(model.latent)) if reach[m, list(members)].any()
                            and model.latent[m].Z.shape[1] > 0)
            xi = np.hstack([model.latent[m].Z for m in sources]) if sources else np.zeros((n, 0))
            idx = model.levels[lv]
            self.levels.append(LevelDesign(lv, members, sources, xi, idx.codes, idx.n_units))
        self.pairs: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}
        self.row_pair: dict[tuple[int, int], np.ndarray] = {}
        for a, la in enumerate(self.levels):
            for b in range(a + 1, len(self.levels)):
                lb = self.levels[b]
                keys, inverse = np.unique(la.codes.astype(np.int64) * lb.n_units + lb.codes, return_inverse=True)
                self.pairs[(a, b)] = divmod(keys, lb.n_units)
                self.row_pair[(a, b)] = inverse.ravel()
        self.residual = ResidualPlan(model.residual, n) if with_levels and model.residual is not None else None
        """Residual covariance structure: the rows are whitened per cluster at every evaluation (`whitened`)."""
        self.is_whitened = False
        self.residual_logdet = 0.0
        self._fixed_columns(model, reach)
        self._classes(model)
        self.raw = self._choose_raw()
        if self.raw:
            self._raw_sums()
        elif self.residual is not None and self.residual.perm is not None:
            self.agg_level, self.agg_pair = None, None  # only whitened copies form the system, in `perm` order
        else:
            self.agg_level = [self._agg(lv.codes, lv.n_units) for lv in self.levels]
            self.agg_pair = {p: self._agg(r, len(self.pairs[p][0])) for p, r in self.row_pair.items()}

    @cached_property
    def structure(self) -> BlockStructure:
        """Block structure of the random-effects system (built on first use: the affine kernel's LMMs never need it)."""
        return BlockStructure([lv.n_units for lv in self.levels], [len(lv.members) for lv in self.levels], self.pairs)

    @cached_property
    def inverse_plan(self) -> InversePlan:
        """Index arrays of the selected inversion (built on first use: only gradients and predictions need it)."""
        return InversePlan(self.structure)

    def _fixed_columns(self, model: CompiledModel, reach: np.ndarray) -> None:
        """F_raw = [X (free beta), Gamma columns xi_a * w_c, y - offset - X_fixed beta_fixed]."""
        pt = model.partable
        free = pt.column("free")[model.beta_rows] > 0
        fixed_beta = pt.start_values[model.beta_rows][~free]
        self.beta_rows = model.beta_rows[free]
        self.p = int(free.sum())
        y0 = model.y - model.offset - model.X[:, ~free] @ fixed_beta
        Xf = model.X[:, free]
        # Profiling beta is invariant to y -> y - X b; taking b by OLS keeps F'V^-1F free of the
        # cancellation that would otherwise cost digits in r'V^-1r = y'V^-1y - (...).
        self.beta_shift = np.linalg.lstsq(Xf, y0, rcond=None)[0] if self.p else np.zeros(0)
        y0 = y0 - Xf @ self.beta_shift
        gamma_targets = sorted({m for m, _, _ in model.Gamma_entries})
        w_cols = sorted({c for _, c, _ in model.Gamma_entries})
        self.gamma_cols: list[tuple[int, int, int]] = []
        cols = []
        for m, lat in enumerate(model.latent):
            if not any(reach[m, t] for t in gamma_targets):
                continue
            for a in range(lat.Z.shape[1]):
                for c in w_cols:
                    self.gamma_cols.append((m, a, c))
                    cols.append(lat.Z[:, a] * model.W[:, c])
        gamma = np.column_stack(cols) if cols else np.zeros((self.n, 0))
        self.F = np.column_stack([Xf, gamma, y0])

    def _classes(self, model: CompiledModel) -> None:
        """Residual classes: rows sharing one residual-SD partable row share a weight.

        Rows of an equation with a `variance:` design have SDs that differ
        row by row (sd * exp(s_i' alpha)), so each is a class of its own
        (`hetero`; the cross products are then formed row-wise). `base_class`
        and `hetero_design` keep the baseline SD row and s_i of every row for
        the regression comparison model.
        """
        scale_row = np.full(self.n, -1)
        base_row = np.full(self.n, -1)
        k_all = sum(eq.hetero.shape[1] for eq in model.equations if eq.hetero is not None)
        self.hetero_design = np.zeros((self.n, k_all))
        start = 0
        for eq in model.equations:
            scale_row[eq.rows] = eq.scale_rows if model.residual is None else 0  # structures: whitened, one class
            base_row[eq.rows] = eq.scale_rows if model.residual is None else 0
            if eq.hetero is not None:
                scale_row[eq.rows] = -2 - eq.rows
                K = eq.hetero.shape[1]
                self.hetero_design[eq.rows, start:start + K] = eq.hetero
                start += K
        self.hetero = k_all > 0
        self.class_rows, self.class_first, self.classes = np.unique(scale_row, return_index=True, return_inverse=True)
        self.classes = self.classes.ravel()
        self.class_counts = np.bincount(self.classes, minlength=len(self.class_rows))
        self.base_rows, self.base_class = np.unique(base_row, return_inverse=True)
        self.base_class = self.base_class.ravel()

    def _agg(self, codes: np.ndarray, n_units: int) -> sp.csr_matrix:
        return sp.csr_matrix((np.ones(self.n), (codes, np.arange(self.n))), shape=(n_units, self.n))

    def _choose_raw(self) -> bool:
        """Raw sums when their per-evaluation work is below that of recomputing from the rows."""
        if self.hetero or self.residual is not None:
            return False
        G, c_raw = len(self.class_rows), self.F.shape[1]
        K = [lv.xi.shape[1] for lv in self.levels]
        k = [len(lv.members) for lv in self.levels]
        raw = sum(lv.n_units * Kl * (Kl + c_raw) for lv, Kl in zip(self.levels, K, strict=True))
        raw += sum(len(ia) * K[a] * K[b] for (a, b), (ia, _) in self.pairs.items())
        rows = sum(Kl * kl + kl * (kl + 2) for Kl, kl in zip(K, k, strict=True)) + c_raw
        rows += sum(k[a] * k[b] for (a, b) in self.pairs)
        return G * raw <= self.n * rows

    def _raw_sums(self) -> None:
        """Sums of xi xi', xi F' per (unit, class) and per (pair, class); F'F per class."""
        G = len(self.class_rows)
        self.S, self.SF, self.Sp = [], [], {}
        c = self.F.shape[1]
        for lv in self.levels:
            K = lv.xi.shape[1]
            keys = lv.codes * G + self.classes
            self.S.append(_grouped_outer(keys, lv.n_units * G, lv.xi, lv.xi, symmetric=True).reshape(
                lv.n_units, G, K, K))
            self.SF.append(_grouped_outer(keys, lv.n_units * G, lv.xi, self.F).reshape(lv.n_units, G, K, c))
        for (a, b), rp in self.row_pair.items():
            P = len(self.pairs[(a, b)][0])
            xa, xb = self.levels[a].xi, self.levels[b].xi
            self.Sp[(a, b)] = _grouped_outer(rp * G + self.classes, P * G, xa, xb).reshape(
                P, G, xa.shape[1], xb.shape[1])
        self.FF = _grouped_outer(self.classes, G, self.F, self.F, symmetric=True).reshape(G, c, c)

    def whitened(self, mats: ModelMatrices) -> GaussianDesign:
        """This design with every cluster's rows of F and xi multiplied by L_j^-1 (R_j = L_j L_j'), or itself.

        The copy has unit residual weights and carries log|R| (`residual_logdet`)
        and the factors for the adjoint (likelihood/gaussian/residual_structures.py).
        Raises LinAlgError where the residual covariance is not positive definite.
        """
        if self.residual is None or self.is_whitened:
            return self
        _ = self.inverse_plan  # built once on the base design, shared by every whitened copy
        layout = self._whitening_layout()
        rows, logdet, factors = self.residual.whiten(mats.values, layout["arrays"])
        out = copy.copy(self)
        c = self.F.shape[1]
        out.F = rows[:, :c]
        levels, start = [], c
        for lv, codes in zip(self.levels, layout["codes"], strict=True):
            K = lv.xi.shape[1]
            levels.append(replace(lv, xi=rows[:, start:start + K], codes=codes))
            start += K
        out.levels = levels
        out.agg_level, out.agg_pair, out.row_pair = layout["agg_level"], layout["agg_pair"], layout["row_pair"]
        out.is_whitened = True
        out.residual_logdet = logdet
        out.residual_factors = factors
        out.whitened_rows = rows
        return out

    def _whitening_layout(self) -> dict:
        """The rows to whiten, [F, xi...], and the level codes and aggregation matrices in the same row order.

        Built once. When the residual plan orders rows by pattern blocks (`perm`), everything row-wise is
        permuted to that order, so each evaluation whitens contiguous slices.
        """
        if getattr(self, "_layout", None) is None:
            arrays = np.hstack([self.F] + [lv.xi for lv in self.levels])
            perm = self.residual.perm
            if perm is None:
                self._layout = {"arrays": arrays, "codes": [lv.codes for lv in self.levels],
                                "agg_level": self.agg_level, "agg_pair": self.agg_pair, "row_pair": self.row_pair}
            else:
                codes = [lv.codes[perm] for lv in self.levels]
                row_pair = {p: r[perm] for p, r in self.row_pair.items()}
                self._layout = {"arrays": arrays[perm], "codes": codes,
                                "agg_level": [self._agg(cd, lv.n_units) for cd, lv in zip(codes, self.levels, strict=True)],
                                "agg_pair": {p: self._agg(r, len(self.pairs[p][0])) for p, r in row_pair.items()},
                                "row_pair": row_pair}
        return self._layout

    def loading_maps(self, mats: ModelMatrices) -> list[np.ndarray]:
        """H_l (K_l x k_l) with a_l(i) = H_l' xi_{l,i}: loadings times G = T blockdiag(L)."""
        model = self.model
        M = len(model.latent)
        members_at = level_layout(model).members
        only = next(iter(mats.L)) if len(mats.L) == 1 else None
        if only is not None and not len(model.B_entries) and members_at[only] == list(range(M)):
            Gm = mats.L[only]
        else:
            Lblk = np.zeros((M, M))
            for lvl, L in mats.L.items():
                members = members_at[lvl]
                Lblk[np.ix_(members, members)] = L
            Gm = mats.T @ Lblk if len(model.B_entries) else Lblk
        out = []
        for lv in self.levels:
            cols = list(lv.members)
            if len(lv.sources) == 1:
                m = lv.sources[0]
                out.append(mats.lambdas[m][:, None] * Gm[m, cols][None, :])
                continue
            blocks = [mats.lambdas[m][:, None] * Gm[m, cols][None, :] for m in lv.sources]
            out.append(np.vstack(blocks) if blocks else np.zeros((0, len(lv.members))))
        return out

    def fixed_map(self, mats: ModelMatrices, beta: np.ndarray | None = None) -> np.ndarray:
        """E with F_raw @ E = [X, y~ - X b] (beta profiled; b = beta_shift) or [y~ - X beta] (beta given)."""
        p, g = self.p, len(self.gamma_cols)
        h = np.zeros(g)
        if g:
            TG = (mats.T if len(self.model.B_entries) else np.eye(len(mats.B))) @ mats.Gamma
            h = np.array([mats.lambdas[m][a] * TG[m, c] for m, a, c in self.gamma_cols])
        if beta is None:
            E = np.zeros((p + g + 1, p + 1))
            E[:p, :p] = np.eye(p)
            E[p:p + g, p] = -h
            E[-1, p] = 1.0
        else:
            E = np.concatenate([self.beta_shift - np.asarray(beta, float), -h, [1.0]])[:, None]
        return E

    def class_sd(self, mats: ModelMatrices) -> np.ndarray:
        """Residual SD of each residual class."""
        return mats.scale[self.class_first]

    def system(self, mats: ModelMatrices, E: np.ndarray, weights: np.ndarray) -> BlockSystem:
        """A'WA, A'WF, F'WF for the given matrices; `weights` per residual class (1/sigma_g^2)."""
        H = self.loading_maps(mats)
        if self.raw:
            diag = [Hl.T @ _wsum(S, weights) @ Hl for Hl, S in zip(H, self.S, strict=True)]
            rhs = [Hl.T @ _wsum(SF, weights) @ E for Hl, SF in zip(H, self.SF, strict=True)]
            off = {(a, b): H[a].T @ _wsum(S, weights) @ H[b] for (a, b), S in self.Sp.items()}
            ff = E.T @ _wsum(self.FF[None], weights)[0] @ E
            return BlockSystem(diag, off, rhs, ff)
        w = weights[self.classes]
        coef = [lv.xi @ Hl for lv, Hl in zip(self.levels, H, strict=True)]
        wcoef = [a * w[:, None] for a in coef]
        Fe = self.F @ E
        diag = [(agg @ _outer(wa, a)).reshape(lv.n_units, a.shape[1], a.shape[1])
                for agg, a, wa, lv in zip(self.agg_level, coef, wcoef, self.levels, strict=True)]
        rhs = [(agg @ _outer(wa, Fe)).reshape(lv.n_units, wa.shape[1], Fe.shape[1])
               for agg, wa, lv in zip(self.agg_level, wcoef, self.levels, strict=True)]
        off = {(a, b): (agg @ _outer(wcoef[a], coef[b])).reshape(-1, coef[a].shape[1], coef[b].shape[1])
               for (a, b), agg in self.agg_pair.items()}
        return BlockSystem(diag, off, rhs, Fe.T @ (w[:, None] * Fe))

    def describe(self, kernel: str | None = None) -> str:
        """One line for logs: levels in elimination order and the factorisation plan (or the affine kernel's
        layout, `kernel`, which then replaces it)."""
        names = [self.model.levels[lv.level].name for lv in self.levels]
        if kernel is not None:
            plan = f"affine kernel ({kernel} layout)"
        else:
            st = self.structure
            plan = f"{st.n_blockwise} eliminated blockwise, remainder q={st.q_remainder}"
        return (f"levels {names}; {plan}; "
                f"{'raw sums' if self.raw else 'row-wise'} cross products; {len(self.class_rows)} residual class(es)"
                + (" (log-linear residual SDs)" if self.hetero else ""))


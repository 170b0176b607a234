"""The symbolic part of the Laplace engine: levels, the joint random-effects design and its block pattern.

Built once per model. Every latent level (crossed or nested) contributes one
block row of H = I + A'WA with k_l coefficients per unit; levels are ordered
for elimination with the most units first (nested chains then eliminate
without fill, and a large crossed factor is eliminated before the small one
it meets, leaving only the small factor for the final dense factorisation; the
same order as the exact gaussian engine). `pairs` are the unit pairs of two
levels that share a row: the off-diagonal blocks of H. The per-evaluation
numbers (A, W) come from mlmrun.likelihood.laplace.system.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import scipy.sparse as sp

from mlmrun.compile.model import CompiledModel
from mlmrun.likelihood.laplace.schur import SchurFactor, SchurLayout
from mlmrun.likelihood.laplace.scope import unsupported
from mlmrun.likelihood.sparse.blocks import BlockFactor, BlockStructure, BlockSystem, factorize
from mlmrun.likelihood.sparse.order import elimination_order
from mlmrun.likelihood.sparse.selected_inverse import InversePlan, selected_inverse


@dataclass(frozen=True)
class LevelBlock:
    """One latent level in elimination order."""

    level: int
    """Index into CompiledModel.levels."""
    members: np.ndarray
    """Latent variables of the level (CompiledModel.latent_at order): its k coefficients per unit."""
    codes: np.ndarray
    """Unit of every row."""
    n_units: int
    agg: sp.csr_matrix
    """units x rows: sums rows into their unit."""

    @property
    def k(self) -> int:
        return len(self.members)


def _summing(codes: np.ndarray, n_units: int) -> sp.csr_matrix:
    n = len(codes)
    return sp.csr_matrix((np.ones(n), (codes, np.arange(n))), shape=(n_units, n))


class LaplaceStructure:
    """Levels in elimination order, their unit pairs, the BlockStructure of H and the selected-inverse plan."""

    def __init__(self, model: CompiledModel) -> None:
        why = unsupported(model)
        if why is not None:
            raise ValueError(f"the Laplace engine does not take this model: {why}")
        self.model = model
        self.n = model.n
        used = sorted({lat.level for lat in model.latent})
        self.levels: list[LevelBlock] = []
        for lv in elimination_order(model, used):
            idx = model.levels[lv]
            codes = np.asarray(idx.codes, dtype=np.int64)
            self.levels.append(LevelBlock(lv, np.array(model.latent_at(lv), dtype=int), codes, idx.n_units,
                                          _summing(codes, idx.n_units)))
        self.pairs: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}
        self.pair_agg: dict[tuple[int, int], sp.csr_matrix] = {}
        self.row_pair: dict[tuple[int, int], np.ndarray] = {}
        for a, la in enumerate(self.levels):
            for b in range(a + 1, len(self.levels)):
                lb = self.levels[b]
                keys, inverse = np.unique(la.codes * lb.n_units + lb.codes, return_inverse=True)
                inverse = inverse.ravel()
                self.pairs[(a, b)] = divmod(keys, lb.n_units)
                self.row_pair[(a, b)] = inverse
                self.pair_agg[(a, b)] = _summing(inverse, len(keys))
        self.q = int(sum(lv.n_units * lv.k for lv in self.levels))
        schur = SchurLayout.build([lv.n_units for lv in self.levels], [lv.k for lv in self.levels], self.pairs)
        crossed = any(model.levels[lv.level].crossed for lv in self.levels)
        self.schur: SchurLayout | None = schur if crossed and schur.fits() else None
        """Crossed designs with a small remainder: one Schur complement (laplace/schur.py); else `blocks`."""

    @cached_property
    def blocks(self) -> BlockStructure:
        """The blocked elimination of likelihood/sparse (nested chains, large remainders); built on first use."""
        return BlockStructure([lv.n_units for lv in self.levels], [lv.k for lv in self.levels], self.pairs)

    def factorize(self, system: BlockSystem) -> BlockFactor | SchurFactor:
        """Numeric factor of H = I + A'WA (LinAlgError where not positive definite)."""
        return SchurFactor(self.schur, system) if self.schur is not None else factorize(self.blocks, system)

    def selected(self, factor: BlockFactor | SchurFactor) -> tuple[list[np.ndarray], dict]:
        """Unit blocks per level and unit-pair blocks (at `pairs`) of H^-1."""
        if isinstance(factor, SchurFactor):
            return factor.selected()
        sel = selected_inverse(factor, self.inverse_plan)
        if sel is None:
            raise ValueError("the random effects leave too large a remainder for the selected inverse "
                             f"({self.blocks.q_remainder} coefficients)")
        return sel.diag, sel.pairs

    @cached_property
    def inverse_plan(self) -> InversePlan:
        """Index arrays of the selected inversion (built on first use)."""
        return InversePlan(self.blocks)

    def top_units(self) -> tuple[int, np.ndarray] | None:
        """For a purely nested model: (units of the top latent level, model.nested_levels[-1], and the top unit
        of every row); None when a latent level is crossed."""
        model = self.model
        if not self.levels or any(model.levels[lv.level].crossed for lv in self.levels):
            return None
        top = model.levels[model.nested_levels[-1]]
        return top.n_units, np.asarray(top.codes)

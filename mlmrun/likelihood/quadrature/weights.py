"""Weights inside the nested integral: the log pseudolikelihood of Rabe-Hesketh & Skrondal (2006).

For a unit c of level k with weight w_c (given its parent), and rows i with weight w_i,

    log L_c(anc) = log int exp( sum_{d child of c} w_d log L_d(u_c, anc) ) phi(u_c) du_c,

rows being the children of the lowest level (log L_i = log f(y_i | nu_i)), and the
objective sum_top w_top log L_top. Row weights act on the family's log density
(`WeightedFamilies`, so the posterior modes and the adaptive nodes are those of the
weighted integrand); unit weights act where a level sums its children's log
integrals (the weighted `child_sum` of adaptive.Hierarchy) and on the top units.
With the adaptation frozen, d log L_top = E[sum_d w_d d log L_d], so a row's score
expectation is scaled by the product of the weights of all its units
(`Hierarchy.row_scale`), and the mode search's objective by those of the units below the
top (`below_top`).
"""

from __future__ import annotations

import numpy as np

from mlmrun.likelihood.quadrature.adaptive import Hierarchy, RowFamily


class WeightedFamilies:
    """A RowFamily whose log densities, derivatives and family-parameter scores are multiplied by row weights."""

    def __init__(self, inner: RowFamily, weight: np.ndarray) -> None:
        self.inner = inner
        self.weight = weight
        self.param_rows = inner.param_rows
        self.param_eqs = getattr(inner, "param_eqs", [])

    def _w(self, nu: np.ndarray, rows: slice | np.ndarray) -> np.ndarray:
        w = self.weight[rows]
        return w.reshape(w.shape + (1,) * (nu.ndim - 1))

    def derivs(self, nu: np.ndarray, order: int, rows: slice | np.ndarray = slice(None)) -> tuple:
        w = self._w(nu, rows)
        return tuple(None if part is None else w * part for part in self.inner.derivs(nu, order, rows))

    def param_expect(self, nu: np.ndarray, weight: np.ndarray, rows: slice | np.ndarray = slice(None)) -> list:
        return self.inner.param_expect(nu, weight * self._w(weight, rows), rows)

    def cross(self, nu: np.ndarray) -> tuple | None:
        """The inner family's choice-set curvature entries, weighted (a set's rows share its weight)."""
        inner = getattr(self.inner, "cross", None)
        out = None if inner is None else inner(nu)
        if out is None:
            return None
        rows, group, p = out
        return rows, group, p * np.sqrt(self.weight[rows])


def below_top(h: Hierarchy) -> tuple[list[np.ndarray], np.ndarray]:
    """Weights of the mode search's terms: per level, each unit's product of its own and its ancestors'
    weights below the top (1 for top units); per row, the product over all its units below the top."""
    K = h.depth
    units = [np.ones(n) for n in h.n_units]
    if h.unit_weight is None:
        return units, np.ones(h.n_rows)
    for k in range(K - 2, -1, -1):
        units[k] = h.unit_weight[k] * units[k + 1][h.parent[k]]
    return units, units[0][h.unit_of_row[0]]

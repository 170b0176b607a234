"""Gauss-Hermite rules for the standard normal, product rules over several dimensions, and pruning.

A rule here integrates against the standard normal density phi: for a
function g, E[g(x)] = sum_r w_r g(x_r) with weights summing to one. The
likelihood integrates in the standardised disturbances u ~ N(0, I) of each
level (DESIGN.md section 1), so this is the only rule it needs; adaptive
quadrature moves and scales these nodes per unit (likelihood/adaptive.py).

A rule with n points integrates polynomials of degree up to 2n - 1 exactly
(Golub-Welsch). Product rules for q dimensions have n^q nodes; many carry
negligible weight (the corners), and `product_rule(..., prune=tol)` drops
nodes whose weight is below tol times the largest, which is what makes
20 x 20 rules per unit affordable (issue 4's two-factor person level).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np

LOG_2PI = float(np.log(2.0 * np.pi))


@dataclass(frozen=True)
class Rule:
    """Nodes and log weights of a rule for the q-variate standard normal.

    `log_ratio[r] = log w_r - log phi(x_r)`: the term adaptive quadrature adds
    to log phi(u_r) + log|C| for moved nodes u_r = mu + C x_r.
    """

    nodes: np.ndarray
    """Shape (R, q)."""
    log_weights: np.ndarray
    """Shape (R,); exp sums to one (before pruning)."""
    log_ratio: np.ndarray
    """Shape (R,): log w_r - log phi_q(x_r)."""
    points: int
    """Points per dimension the rule was built from."""

    @property
    def size(self) -> int:
        return len(self.log_weights)

    @property
    def dim(self) -> int:
        return self.nodes.shape[1]


@cache
def _hermite(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights of the n-point rule for N(0, 1) (probabilists' Hermite, Golub-Welsch)."""
    if n < 1:
        raise ValueError(f"a Gauss-Hermite rule needs at least 1 point, got {n}")
    if n == 1:
        return np.zeros(1), np.ones(1)
    k = np.arange(1, n)
    jacobi = np.diag(np.sqrt(k), 1) + np.diag(np.sqrt(k), -1)
    nodes, vecs = np.linalg.eigh(jacobi)
    weights = vecs[0] ** 2
    nodes = 0.5 * (nodes - nodes[::-1])  # exact symmetry about 0
    weights = 0.5 * (weights + weights[::-1])
    weights = weights / weights.sum()
    nodes.setflags(write=False)
    weights.setflags(write=False)
    return nodes, weights


def gauss_hermite(n: int) -> tuple[np.ndarray, np.ndarray]:
    """n-point rule for the standard normal: (nodes, weights), weights summing to one; cached, read-only."""
    return _hermite(int(n))


@cache
def product_rule(points: int, dim: int, prune: float = 0.0) -> Rule:
    """Cartesian product of `points`-point rules over `dim` dimensions, optionally pruned.

    Pruning keeps nodes with weight >= prune * (largest weight). The kept
    weights are not renormalised: the dropped mass is below prune * R_total
    times the largest weight, i.e. negligible against quadrature error when
    prune is small (1e-12 keeps the likelihood to about 1e-10 relative).
    """
    if dim < 1:
        raise ValueError(f"a product rule needs dim >= 1, got {dim}")
    x, w = gauss_hermite(points)
    grids = np.meshgrid(*([x] * dim), indexing="ij")
    nodes = np.stack([g.reshape(-1) for g in grids], axis=1)
    logw = np.log(w)
    log_weights = sum(np.meshgrid(*([logw] * dim), indexing="ij")).reshape(-1)
    if prune > 0.0 and dim > 1:
        keep = log_weights >= log_weights.max() + np.log(prune)
        nodes, log_weights = nodes[keep], log_weights[keep]
    log_phi = -0.5 * np.sum(nodes**2, axis=1) - 0.5 * dim * LOG_2PI
    for arr in (nodes, log_weights):
        arr.setflags(write=False)
    ratio = log_weights - log_phi
    ratio.setflags(write=False)
    return Rule(nodes=nodes, log_weights=log_weights, log_ratio=ratio, points=points)

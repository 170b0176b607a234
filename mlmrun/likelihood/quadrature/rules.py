"""Gauss-Hermite rules for the standard normal, and product rules over several dimensions.

A rule here integrates against the standard normal density phi: for a
function g, E[g(x)] = sum_r w_r g(x_r) with weights summing to one. The
likelihood integrates in the standardised disturbances u ~ N(0, I) of each
level (DESIGN.md section 1), so this is the only rule it needs; adaptive
quadrature moves and scales these nodes per unit (likelihood/quadrature/adaptive.py).

A rule with n points integrates polynomials of degree up to 2n - 1 exactly.
Nodes are the eigenvalues of the Jacobi matrix (Golub-Welsch) polished by
Newton steps on the orthonormal Hermite polynomial; weights come from the
Christoffel formula w_i = 1 / (n p_{n-1}(x_i)^2), evaluated in log space.
(The eigenvector formula w_i = v_0i^2 loses all relative accuracy in the
outer weights, which are far below the eigenvectors' rounding: 63x too large
at 60 points, 1e14x at 80.)

Product rules for q dimensions have n^q nodes. `product_rule(..., prune=tol)`
drops the lightest nodes whose weights sum to at most tol; that bounds the
dropped prior mass, NOT the integration error of adaptive quadrature, whose
integrand grows towards the corners (posterior tails heavier than the
Gaussian approximation). The fitted rules are therefore unpruned
(likelihood/quadrature/plan.py); pruning is for exploratory, cheaper evaluations only.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np
from scipy.linalg import eigh_tridiagonal

LOG_2PI = float(np.log(2.0 * np.pi))
NEWTON_STEPS = 3


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


def _orthonormal_pair(n: int, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """p_n(x) and p_{n-1}(x) up to a common positive factor exp(-log_scale), and log_scale.

    p_k are the Hermite polynomials orthonormal under N(0, 1): p_0 = 1, p_1 = x,
    sqrt(k + 1) p_{k+1} = x p_k - sqrt(k) p_{k-1}. Both values are rescaled at
    every step so that nothing overflows for any n.
    """
    prev, cur = np.zeros_like(x), np.ones_like(x)
    log_scale = np.zeros_like(x)
    for k in range(n):
        prev, cur = cur, (x * cur - np.sqrt(k) * prev) / np.sqrt(k + 1.0)
        s = np.maximum(np.abs(cur), np.abs(prev))
        prev, cur = prev / s, cur / s
        log_scale += np.log(s)
    return cur, prev, log_scale


@cache
def _hermite(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and log weights of the n-point rule for N(0, 1) (probabilists' Hermite)."""
    if n < 1:
        raise ValueError(f"a Gauss-Hermite rule needs at least 1 point, got {n}")
    if n == 1:
        return _frozen(np.zeros(1)), _frozen(np.zeros(1))
    x = eigh_tridiagonal(np.zeros(n), np.sqrt(np.arange(1.0, n)), eigvals_only=True)
    for _ in range(NEWTON_STEPS):
        pn, pm, _ = _orthonormal_pair(n, x)
        x = x - pn / (np.sqrt(n) * pm)  # p_n' = sqrt(n) p_{n-1}
    x = 0.5 * (x - x[::-1])  # exact symmetry about 0
    _, pm, log_scale = _orthonormal_pair(n, x)
    log_w = -np.log(n) - 2.0 * (np.log(np.abs(pm)) + log_scale)
    log_w = 0.5 * (log_w + log_w[::-1])
    top = log_w.max()
    log_w -= top + np.log(np.sum(np.exp(log_w - top)))
    return _frozen(x), _frozen(log_w)


def _frozen(a: np.ndarray) -> np.ndarray:
    a.setflags(write=False)
    return a


def gauss_hermite_log(n: int) -> tuple[np.ndarray, np.ndarray]:
    """n-point rule for the standard normal: (nodes, log weights), weights summing to one; cached, read-only."""
    return _hermite(int(n))


@cache
def gauss_hermite(n: int) -> tuple[np.ndarray, np.ndarray]:
    """n-point rule for the standard normal: (nodes, weights), weights summing to one; cached, read-only.

    Outer weights underflow to 0 beyond about 1400 points; use `gauss_hermite_log` where they matter.
    """
    x, log_w = _hermite(int(n))
    return x, _frozen(np.exp(log_w))


@cache
def product_rule(points: int, dim: int, prune: float = 0.0) -> Rule:
    """Cartesian product of `points`-point rules over `dim` dimensions, optionally pruned.

    With prune > 0 (dim >= 2 only), the lightest nodes are dropped as long as
    their weights sum to at most `prune` (a bound on the dropped weight; the
    kept weights are not renormalised). See the module docstring for why this
    does not bound the error of adaptive quadrature.
    """
    if dim < 1:
        raise ValueError(f"a product rule needs dim >= 1, got {dim}")
    x, logw = gauss_hermite_log(points)
    grids = np.meshgrid(*([x] * dim), indexing="ij")
    nodes = np.stack([g.reshape(-1) for g in grids], axis=1)
    log_weights = sum(np.meshgrid(*([logw] * dim), indexing="ij")).reshape(-1)
    if prune > 0.0 and dim > 1:
        order = np.argsort(log_weights, kind="stable")
        dropped = np.cumsum(np.exp(log_weights[order])) <= prune
        keep = np.sort(order[~dropped])
        nodes, log_weights = nodes[keep], log_weights[keep]
    log_phi = -0.5 * np.sum(nodes**2, axis=1) - 0.5 * dim * LOG_2PI
    ratio = log_weights - log_phi
    for arr in (nodes, log_weights, ratio):
        arr.setflags(write=False)
    return Rule(nodes=nodes, log_weights=log_weights, log_ratio=ratio, points=points)

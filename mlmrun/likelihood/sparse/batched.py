"""Batched small dense blocks and summing matrices: the vectorised kernels of the block factorisation.

Every level of the exact Gaussian likelihood holds one small k x k block per
unit; these helpers factor, invert and multiply whole stacks of them at once
(no per-unit Python or LAPACK call), and `summing` builds the sparse matrices
that add per-pair or per-row products into their units.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def summing(targets: np.ndarray, n_targets: int, sign: float = 1.0) -> sp.csr_matrix:
    """Sparse matrix summing source i into row targets[i] (n_targets x len(targets))."""
    n = len(targets)
    return sp.csr_matrix((np.full(n, sign), (targets, np.arange(n))), shape=(n_targets, n))


SMALL_K = 6
"""Unit blocks up to this size are factorised by loops over k vectorised across units (no per-unit LAPACK calls)."""


def chol(D: np.ndarray) -> np.ndarray:
    """Cholesky factors of a stack of SPD matrices (U, k, k); LinAlgError if one is not positive definite."""
    k = D.shape[1]
    if k == 1:
        if np.any(D[:, 0, 0] <= 0):
            raise np.linalg.LinAlgError("matrix is not positive definite")
        return np.sqrt(D)
    if k > SMALL_K:
        return np.linalg.cholesky(D)
    L = np.zeros_like(D)
    for j in range(k):
        d = D[:, j, j] - np.sum(L[:, j, :j] ** 2, axis=1)
        if np.any(d <= 0):
            raise np.linalg.LinAlgError("matrix is not positive definite")
        L[:, j, j] = np.sqrt(d)
        for i in range(j + 1, k):
            L[:, i, j] = (D[:, i, j] - np.sum(L[:, i, :j] * L[:, j, :j], axis=1)) / L[:, j, j]
    return L


def tinv(L: np.ndarray) -> np.ndarray:
    """Inverses of a stack of lower-triangular matrices (U, k, k) by forward substitution."""
    k = L.shape[1]
    if k == 1:
        return 1.0 / L
    if k > SMALL_K:
        return np.linalg.inv(L)
    inv = np.zeros_like(L)
    for i in range(k):
        inv[:, i, i] = 1.0 / L[:, i, i]
        for j in range(i):
            inv[:, i, j] = -np.sum(L[:, i, j:i] * inv[:, j:i, j], axis=1) / L[:, i, i]
    return inv


def bmm(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """Stacked products A[i] @ B[i]: a broadcast product when the inner dimension is 1, else matmul.

    (numpy 2's batched matmul beats einsum several-fold even for 2 x 2 blocks.)
    """
    if A.shape[2] == 1:
        return A * B
    return A @ B

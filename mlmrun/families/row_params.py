"""Per-row family parameters given as columns: the convention of the count and censored families.

The newer families (negative binomial, zero inflation, censoring) take their
parameters as an array with one row per observation and one column per
parameter (a dispersion, a zero-inflation logit, a censoring bound), so a
parameter may vary over rows (a zero-inflation formula) or carry data (bounds).
A vector of length P is broadcast to every row.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

FloatArray = NDArray[np.float64]


def columns(params: ArrayLike | None, n: int, ndim: int, width: int, what: str) -> list[FloatArray]:
    """The `width` parameter columns, each shaped (n, 1, ..., 1) to broadcast against nu (ndim axes)."""
    if params is None:
        raise ValueError(f"the {what} family needs its parameters as params")
    p = np.asarray(params, dtype=np.float64)
    if p.ndim <= 1:
        p = np.broadcast_to(p.reshape(1, -1), (n, p.size))
    if p.shape != (n, width):
        raise ValueError(f"the {what} family needs params of shape ({n}, {width}) or ({width},), got {p.shape}")
    return [p[:, j].reshape((n,) + (1,) * (ndim - 1)) for j in range(width)]


def full(x: FloatArray, shape: tuple[int, ...]) -> FloatArray:
    """x materialised with nu's shape."""
    return x if x.shape == shape else np.array(np.broadcast_to(x, shape))


def stack(parts: list[FloatArray], shape: tuple[int, ...]) -> FloatArray:
    """Scores per parameter column stacked on a last axis: shape ``shape + (len(parts),)``."""
    return np.stack([full(p, shape) for p in parts], axis=-1)

"""Cumulative-link ordinal response with per-row thresholds and latent scale (clm's nominal= and scale=).

P(y <= k | nu) = F((kappa_ik - nu) / s_i): the thresholds kappa_ik = kappa_k + w_i'g_k may
depend on covariates (non-proportional odds, gllamm's thresh()) and the latent
response may be heteroscedastic, log s_i = z_i'delta (clm's scale=, gllamm's s()).
The compiled model builds kappa_ik and s_i per row (compile/ordinal_ext.py); this
family takes them as per-row params of shape (n, K): the K-1 thresholds, then s.
Its parameter score is d ll / d (kappa_i1..kappa_i,K-1, s_i) per row, which the
model maps back onto the cut points, threshold shifts and log-scale coefficients.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from mlmrun.families.families import Curvature, Derivs, FloatArray, Ordinal, _rows, _to_thresholds
from mlmrun.families.links import CdfLink, IntervalLogProb, scaled_interval_curvature, scaled_interval_slopes


class OrdinalRows(Ordinal):
    """Ordinal family whose thresholds and latent SD are given per row (see module docstring)."""

    __slots__ = ()

    def _pieces(self, y: ArrayLike, nu: ArrayLike, params: ArrayLike | None, order: int
                ) -> tuple[FloatArray, NDArray[np.intp], FloatArray, FloatArray, FloatArray, IntervalLogProb]:
        """nu, codes, the bounds a, b on the standardised scale, s, and log P with its derivatives."""
        if params is None:
            raise ValueError("the ordinal family with row thresholds needs per-row (thresholds, scale) params")
        link: CdfLink = self._link  # type: ignore[assignment]
        nu = np.asarray(nu, dtype=np.float64)
        p = np.asarray(params, dtype=np.float64).reshape(nu.shape[0], -1)
        n, K = p.shape
        codes = np.asarray(y).astype(np.intp)
        if codes.size and (codes.min() < 0 or codes.max() > K - 1):
            raise ValueError(f"ordinal codes must lie in 0..{K - 1} for {K - 1} thresholds")
        cuts = np.concatenate([np.full((n, 1), -np.inf), p[:, :-1], np.full((n, 1), np.inf)], axis=1)
        s = _rows(p[:, -1], nu.ndim)
        r = np.arange(n)
        a = (_rows(cuts[r, codes], nu.ndim) - nu) / s
        b = (_rows(cuts[r, codes + 1], nu.ndim) - nu) / s
        return nu, codes, a, b, s, link.log_interval(a, b, order)

    def loglik_derivs(self, y, nu, params=None, trials=None, order=2) -> Derivs:
        nu, _, _, _, s, res = self._pieces(y, nu, params, order)
        if order < 1:
            return res.ll, None, None
        return res.ll, -res.d_shift / s, (res.d2_shift / s**2 if order >= 2 else None)

    def param_score(self, y, nu, params=None, trials=None) -> FloatArray:
        nu, codes, a, b, s, res = self._pieces(y, nu, params, 1)
        K = np.asarray(params).reshape(nu.shape[0], -1).shape[1]
        k = np.arange(K - 1)
        node_axes = (1,) * (nu.ndim - 1)
        is_upper = (codes[:, None] == k).reshape(codes.shape + node_axes + k.shape)
        is_lower = (codes[:, None] == k + 1).reshape(codes.shape + node_axes + k.shape)
        d_lo, d_hi = res.d_lower / s, res.d_upper / s
        cut_score = np.where(is_upper, d_hi[..., None], 0.0) + np.where(is_lower, d_lo[..., None], 0.0)
        with np.errstate(invalid="ignore"):
            d_s = -(np.where(np.isfinite(a), res.d_lower * a, 0.0) + np.where(np.isfinite(b), res.d_upper * b, 0.0)) / s
        return np.concatenate([cut_score, d_s[..., None]], axis=-1)

    def curvature_derivs(self, y, nu, params=None, trials=None) -> Curvature:
        """d2 = d2_shift(a, b) / s^2 on the standardised bounds (links.scaled_interval_curvature); columns as param_score."""
        link: CdfLink = self._link  # type: ignore[assignment]
        nu, codes, a, b, s, _ = self._pieces(y, nu, params, 0)
        third, d_s, d_lo, d_hi = scaled_interval_curvature(link, a, b, s)
        n_cuts = np.asarray(params).reshape(nu.shape[0], -1).shape[1] - 1
        cuts = _to_thresholds(codes, n_cuts, np.broadcast_to(d_hi, nu.shape), np.broadcast_to(d_lo, nu.shape))
        return third, np.concatenate([cuts, np.broadcast_to(d_s, nu.shape)[..., None]], axis=-1)

    def cross_derivs(self, y, nu, params=None, trials=None) -> FloatArray:
        """d1 = -d_shift(a, b) / s on the standardised bounds (links.scaled_interval_slopes); columns as param_score."""
        link: CdfLink = self._link  # type: ignore[assignment]
        nu, codes, a, b, s, _ = self._pieces(y, nu, params, 0)
        d_s, d_lo, d_hi = scaled_interval_slopes(link, a, b, s)
        n_cuts = np.asarray(params).reshape(nu.shape[0], -1).shape[1] - 1
        cuts = _to_thresholds(codes, n_cuts, np.broadcast_to(d_hi, nu.shape), np.broadcast_to(d_lo, nu.shape))
        return np.concatenate([cuts, np.broadcast_to(d_s, nu.shape)[..., None]], axis=-1)

    def probabilities(self, nu: ArrayLike, params: ArrayLike) -> FloatArray:
        """P(y = k | nu) per row and category, shape (n, ..., K) for per-row params (n, K)."""
        link: CdfLink = self._link  # type: ignore[assignment]
        nu = np.asarray(nu, dtype=np.float64)
        p = np.asarray(params, dtype=np.float64).reshape(nu.shape[0], -1)
        n = p.shape[0]
        cuts = np.concatenate([np.full((n, 1), -np.inf), p[:, :-1], np.full((n, 1), np.inf)], axis=1)
        shape = (n,) + (1,) * (nu.ndim - 1) + (cuts.shape[1],)
        c = cuts.reshape(shape)
        s = p[:, -1].reshape(shape[:-1] + (1,))
        z = (c - nu[..., None]) / s
        return np.exp(link.log_interval(z[..., :-1], z[..., 1:], order=0).ll)

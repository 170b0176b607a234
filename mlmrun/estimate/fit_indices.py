"""The fit measures lavaan reports by default, for a model fitted from the sufficient statistics.

The saturated model (h1) has free item means and an unrestricted covariance:
with complete data the sample moments, with missing data their ML estimates
by EM over the patterns (lavaan's `missing = "fiml"` h1). The baseline model
has free means and independent items (with missing data ML per item from the
units observing it, since that likelihood factorises). With N the number of
independent units (lavaan's ntotal):

- chisq = 2 (logl_h1 - logl), df = moments - npar, with moments p(p+1)/2,
  plus p when the means are modelled (`meanstructure: true`);
- CFI = 1 - max(chisq - df, 0) / max(chisq - df, chisq_b - df_b, 0),
  TLI = (chisq_b/df_b - chisq/df) / (chisq_b/df_b - 1);
- RMSEA = sqrt(max(chisq/N/df - 1/N, 0)), its 90% interval from the
  noncentral chi-square (ncp solving P(chisq; df, ncp) = 0.95 and 0.05) and
  p-close = P(X > chisq) under ncp = N df 0.05^2;
- SRMR (Bentler's, lavaan's default): root mean square of the residuals
  (S - Sigma) / sqrt(s_ii s_jj) over the lower triangle with diagonal, and of
  (m - mu) / sqrt(s_ii) when the means are modelled;
- AIC = -2 logl + 2 npar, BIC = -2 logl + npar log N.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import special

from mlmrun.compile.model import CompiledModel
from mlmrun.likelihood.moments.data import MomentsData
from mlmrun.likelihood.moments.likelihood import LOG2PI, Implied


def pattern_loglik(data: MomentsData, mu: np.ndarray, Sigma: np.ndarray) -> float:
    """Log likelihood of N(mu, Sigma) over the patterns (-inf where Sigma_oo is not positive definite)."""
    ll = 0.0
    for pat in data.patterns:
        o = pat.items
        try:
            C = np.linalg.cholesky(Sigma[np.ix_(o, o)])
        except np.linalg.LinAlgError:
            return -np.inf
        Cinv = np.linalg.inv(C)
        Si = Cinv.T @ Cinv
        dev = pat.mean - mu[o]
        ll -= 0.5 * pat.n * (len(o) * LOG2PI + 2 * np.sum(np.log(np.diag(C))) + np.sum(Si * pat.cov) + dev @ Si @ dev)
    return float(ll)


def _available(data: MomentsData) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per item: units observing it, their mean and (divisor n) variance."""
    p = data.p
    n, s1, s2 = np.zeros(p), np.zeros(p), np.zeros(p)
    for pat in data.patterns:
        n[pat.items] += pat.n
        s1[pat.items] += pat.n * pat.mean
        s2[pat.items] += pat.n * (np.diag(pat.cov) + pat.mean ** 2)
    mean = s1 / n
    return n, mean, s2 / n - mean ** 2


def saturated(data: MomentsData, max_iter: int = 2000, tol: float = 1e-10) -> tuple[float, np.ndarray, np.ndarray]:
    """(logl_h1, means, covariance) of the unrestricted model: sample moments, or EM over the patterns
    (until no mean or covariance moves by more than `tol` relative to the largest covariance)."""
    if data.complete:
        pat = data.patterns[0]
        return pattern_loglik(data, pat.mean, pat.cov), pat.mean.copy(), pat.cov.copy()
    p = data.p
    _, mu, var = _available(data)
    S = np.diag(var)
    N = sum(pat.n for pat in data.patterns)
    parts = []
    for pat in data.patterns:
        o = pat.items
        m = np.setdiff1d(np.arange(p), o)
        parts.append((pat, o, m, np.ix_(o, o), np.ix_(o, m), np.ix_(m, m), np.ix_(m, o),
                      pat.cov + np.outer(pat.mean, pat.mean)))
    for _ in range(max_iter):
        T1, T2 = np.zeros(p), np.zeros((p, p))
        for pat, o, m, oo, om, mm_, mo, second in parts:
            T1[o] += pat.n * pat.mean
            T2[oo] += pat.n * second
            if not len(m):
                continue
            B = np.linalg.solve(S[oo], S[om]).T
            a = mu[m] - B @ mu[o]
            c = a + B @ pat.mean
            T1[m] += pat.n * c
            T2[mm_] += pat.n * (np.outer(c, c) + B @ pat.cov @ B.T + S[mm_] - B @ S[om])
            cross = pat.n * (second @ B.T + np.outer(pat.mean, a))
            T2[om] += cross
            T2[mo] += cross.T
        new_mu = T1 / N
        new_S = T2 / N - np.outer(new_mu, new_mu)
        change = max(np.max(np.abs(new_mu - mu)), np.max(np.abs(new_S - S)))
        mu, S = new_mu, new_S
        if change < tol * max(1.0, float(np.max(np.abs(S)))):
            break
    return pattern_loglik(data, mu, S), mu, S


def baseline_loglik(data: MomentsData) -> float:
    """Independence model (free means and variances, zero covariances): ML per item."""
    n, _, var = _available(data)
    return float(-0.5 * np.sum(n * (LOG2PI + np.log(var) + 1.0)))


def rmsea_interval(chisq: float, df: int, N: int, level: float = 0.90) -> tuple[float, float, float]:
    """(lower, upper, p-close) of RMSEA from the noncentral chi-square, as lavaan computes them."""
    if df <= 0:
        return np.nan, np.nan, np.nan
    lo_p, hi_p = 1 - (1 - level) / 2, (1 - level) / 2

    def ncp_for(target: float) -> float:
        if special.chdtr(df, chisq) < target:
            return 0.0
        return float(special.chndtrinc(chisq, df, target))

    lower = np.sqrt(ncp_for(lo_p) / (N * df))
    upper = np.sqrt(ncp_for(hi_p) / (N * df))
    pclose = float(1.0 - special.chndtr(chisq, df, N * df * 0.05 ** 2))
    return float(lower), float(upper), pclose


def srmr(S: np.ndarray, m: np.ndarray, imp: Implied, means: bool) -> float:
    """Bentler's SRMR: residual covariances scaled by the sample SDs (and mean residuals when modelled)."""
    sd = np.sqrt(np.diag(S))
    R = (S - imp.Sigma) / np.outer(sd, sd)
    rows, cols = np.tril_indices(len(S))
    parts = [R[rows, cols]]
    if means:
        parts.append((m - imp.mu) / sd)
    res = np.concatenate(parts)
    return float(np.sqrt(np.mean(res ** 2)))


def fit_measures(model: CompiledModel, data: MomentsData, imp: Implied, loglik: float, npar: int,
                 h1: tuple[float, np.ndarray, np.ndarray] | None = None) -> dict[str, Any]:
    """lavaan's default fitMeasures (names as lavaan's) at the estimates; `h1` is `saturated(data)` when known."""
    p, N = data.p, data.n_units
    means = bool(model.spec.estimation.meanstructure)
    moments = p * (p + 1) // 2 + (p if means else 0)
    ll_h1, m1, S1 = h1 if h1 is not None else saturated(data)
    ll_b = baseline_loglik(data)
    df = moments - npar
    df_b = moments - 2 * p if means else moments - p
    chisq = max(2.0 * (ll_h1 - loglik), 0.0)
    chisq_b = 2.0 * (ll_h1 - ll_b)
    out: dict[str, Any] = {"npar": npar, "ntotal": N, "logl": loglik, "unrestricted.logl": ll_h1,
                           "baseline.logl": ll_b, "chisq": chisq, "df": df,
                           "pvalue": float(special.chdtrc(df, chisq)) if df > 0 else None,
                           "baseline.chisq": chisq_b, "baseline.df": df_b,
                           "baseline.pvalue": float(special.chdtrc(df_b, chisq_b)) if df_b > 0 else None}
    d, d_b = chisq - df, chisq_b - df_b
    denom = max(d, d_b, 0.0)
    out["cfi"] = 1.0 - max(d, 0.0) / denom if denom > 0 else 1.0
    out["tli"] = ((chisq_b / df_b - chisq / df) / (chisq_b / df_b - 1.0)) if df > 0 and df_b > 0 else None
    out["rmsea"] = float(np.sqrt(max(chisq / N / df - 1.0 / N, 0.0))) if df > 0 else None
    lo, hi, pclose = rmsea_interval(chisq, df, N)
    out["rmsea.ci.lower"], out["rmsea.ci.upper"], out["rmsea.pvalue"] = lo, hi, pclose
    out["srmr"] = srmr(S1, m1, imp, means)
    out["aic"] = -2.0 * loglik + 2.0 * npar
    out["bic"] = -2.0 * loglik + npar * float(np.log(N))
    return out

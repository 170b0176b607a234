"""Gaussian latent-variable models against a dense multivariate-normal density built here from the definition.

y_i = beta_item(i) + lambda_i' eta_u(i) + e_i, eta = B eta + Gamma w + zeta, zeta ~ N(0, Psi) per unit
of each level, e_i ~ N(0, sigma^2). So eta = T (Gamma w + zeta) with T = (I - B)^-1 (computed here by
a dense inverse), and y ~ N(mu, V) with mu_i = beta_item + a_i' Gamma w_i, a_i' = lambda_i' T and
V_ij = sigma^2 [i = j] + sum over levels of a_iL' Psi_L a_jL [i, j in the same unit of L]. The log
density of all rows at once (scipy.stats.multivariate_normal) is compared with mlmrun's exact
gaussian log likelihood at the same fixed values. The B chains f <- g <- h (across two levels) and
f <- g <- h <- k (one level) make T differ from I + B by B^2 (and B^3), so a first-order structural
map, a transposed B, a Gamma applied to the wrong factor or a dropped cross-level covariance all move
the log likelihood by far more than the 1e-9 relative tolerance (rounding only: both are exact).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import multivariate_normal

from tests.pins.fixed import fit_fixed, write_case

ITEMS = ["a1", "a2", "a3", "b1", "b2", "c1", "c2"]


def long_data(seed: int) -> pd.DataFrame:
    """6 schools x 3 persons x 7 items; person-level covariates w and v."""
    rng = np.random.default_rng(seed)
    rows = []
    for s in range(6):
        for p in range(3):
            w, v = round(rng.normal(), 3), round(rng.normal(), 3)
            rows += [{"school": f"s{s}", "person": f"s{s}p{p}", "item": item, "w": w, "v": v,
                      "y": round(rng.normal(), 3)} for item in ITEMS]
    return pd.DataFrame(rows)


def dense_loglik(frame: pd.DataFrame, *, beta: dict[str, float], sigma: float, latent: list[str],
                 level_of: dict[str, str], loadings: dict[str, dict[str, float]], B: dict[tuple[str, str], float],
                 Gamma: dict[tuple[str, str], float], psi: dict[str, np.ndarray]) -> float:
    """log N(y; mu, V) of every row jointly, from the model's definition (see the module docstring)."""
    q = len(latent)
    pos = {name: k for k, name in enumerate(latent)}
    Bm = np.zeros((q, q))
    for (outcome, pred), b in B.items():
        Bm[pos[outcome], pos[pred]] = b
    T = np.linalg.inv(np.eye(q) - Bm)
    lam = np.array([[loadings[name].get(item, 0.0) for name in latent] for item in frame["item"]])
    a = lam @ T  # (N, q): row i's coefficients on zeta
    gw = np.zeros((len(frame), q))
    for (name, col), g in Gamma.items():
        gw[:, pos[name]] += g * frame[col].to_numpy()
    mu = frame["item"].map(beta).to_numpy() + np.sum(a * gw, axis=1)
    V = sigma**2 * np.eye(len(frame))
    for level, cov in psi.items():
        members = [pos[name] for name in latent if level_of[name] == level]
        units = frame[level].to_numpy()
        same = (units[:, None] == units[None, :]).astype(float)
        A = a[:, members]
        V += (A @ cov @ A.T) * same
    return float(multivariate_normal(mean=mu, cov=V).logpdf(frame["y"].to_numpy()))


BETA = dict(zip(ITEMS, [0.3, -0.2, 0.1, 0.5, -0.4, 0.2, 0.0], strict=True))


def beta_fix() -> dict[str, float]:
    return {f"C(item)[{item}]": b for item, b in BETA.items()}


def test_chain_f_g_h_across_levels_with_gamma_matches_dense_density(tmp_path: Path) -> None:
    frame = long_data(3)
    body = """
levels:
  - {name: person, id: person}
  - {name: school, id: school}
responses:
  - {name: y, family: gaussian}
fixed: "y ~ 0 + C(item)"
latent:
  - {name: f, level: person, loadings: {by: item, only: [a1, a2, a3], fix: {a1: 1}}}
  - {name: g, level: person, loadings: {by: item, only: [b1, b2], fix: {b1: 1}}}
  - {name: h, level: school, variance: 0.64}
structural:
  B: {f: {g: free}, g: {h: free}}
  Gamma: {g: {w: free}, f: {v: free}}
"""
    sd_f, sd_g, r = 0.7, 1.1, 0.35
    fix = {**beta_fix(), "sd(Residual)": 0.6, "loading(f->a2)": 1.3, "loading(f->a3)": -0.8,
           "loading(g->b2)": 0.9, "B(f<-g)": 0.7, "B(g<-h)": -1.2, "Gamma(g<-w)": 0.5, "Gamma(f<-v)": -0.3,
           "sd(f)@person": sd_f, "sd(g)@person": sd_g, "corr(g,f)@person": r}
    fit = fit_fixed(write_case(tmp_path, frame, body, fix))
    assert fit.integration["method"] == "exact"
    target = dense_loglik(
        frame, beta=BETA, sigma=0.6, latent=["f", "g", "h"], level_of={"f": "person", "g": "person", "h": "school"},
        loadings={"f": {"a1": 1.0, "a2": 1.3, "a3": -0.8}, "g": {"b1": 1.0, "b2": 0.9}, "h": {}},
        B={("f", "g"): 0.7, ("g", "h"): -1.2}, Gamma={("g", "w"): 0.5, ("f", "v"): -0.3},
        psi={"person": np.array([[sd_f**2, r * sd_f * sd_g], [r * sd_f * sd_g, sd_g**2]]),
             "school": np.array([[0.64]])})
    assert fit.loglik == pytest.approx(target, rel=1e-9)


def test_chain_of_four_at_one_level_matches_dense_density(tmp_path: Path) -> None:
    frame = long_data(4)
    body = """
levels:
  - {name: person, id: person}
responses:
  - {name: y, family: gaussian}
fixed: "y ~ 0 + C(item)"
latent:
  - {name: f, level: person, loadings: {by: item, only: [a1, a2], fix: {a1: 1}}}
  - {name: g, level: person, loadings: {by: item, only: [a3, b1], fix: {a3: 1}}}
  - {name: h, level: person, loadings: {by: item, only: [b2, c1], fix: {b2: 1}}}
  - {name: k, level: person, loadings: {by: item, only: [c2], fix: {c2: 1}}}
structural:
  B: {f: {g: free}, g: {h: free}, h: {k: free}}
  Gamma: {k: {w: free}, f: {v: free}}
covariance: {person: independent}
"""
    sds = {"f": 0.5, "g": 0.8, "h": 0.6, "k": 1.2}
    fix = {**beta_fix(), "sd(Residual)": 0.7, "loading(f->a2)": 1.4, "loading(g->b1)": -0.6,
           "loading(h->c1)": 0.8, "B(f<-g)": 0.9, "B(g<-h)": 1.1, "B(h<-k)": -0.7, "Gamma(k<-w)": 0.4,
           "Gamma(f<-v)": 0.6, **{f"sd({n})@person": s for n, s in sds.items()}}
    fit = fit_fixed(write_case(tmp_path, frame, body, fix))
    assert fit.integration["method"] == "exact"
    target = dense_loglik(
        frame, beta=BETA, sigma=0.7, latent=["f", "g", "h", "k"], level_of=dict.fromkeys(sds, "person"),
        loadings={"f": {"a1": 1.0, "a2": 1.4}, "g": {"a3": 1.0, "b1": -0.6}, "h": {"b2": 1.0, "c1": 0.8},
                  "k": {"c2": 1.0}},
        B={("f", "g"): 0.9, ("g", "h"): 1.1, ("h", "k"): -0.7}, Gamma={("k", "w"): 0.4, ("f", "v"): 0.6},
        psi={"person": np.diag([s**2 for s in sds.values()])})
    assert fit.loglik == pytest.approx(target, rel=1e-9)

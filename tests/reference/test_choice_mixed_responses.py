"""A multinomial equation in mixed responses, sharing a latent variable with a gaussian equation.

The data are simulated here; the fit's log likelihood at its optimum is recomputed by an independent
dense Gauss-Hermite integral over the region variable (choice probabilities by softmax, gaussian
densities), and the quadrature gradient is checked against finite differences.
"""

from __future__ import annotations

import tempfile
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.special import logsumexp
from scipy.stats import norm

from mlmrun.estimate import estimate
from mlmrun.likelihood.quadrature.objective import QuadratureObjective
from mlmrun.likelihood.quadrature.plan import integration_plan
from mlmrun.pipeline import prepare
from mlmrun.results import FitResult

SPEC = """
name: choice_mixed
data: {path: mixed.csv}
levels:
  - {name: region, id: region}
responses:
  - name: resp
    family: multinomial
    select: {kind: [c]}
    choice: {layout: per_alternative, alternatives: alt, set: id, base: A}
  - {name: resp, family: gaussian, select: {kind: [g]}}
fixed: "resp ~ 0 + g + price"
latent:
  - {name: u, level: region, loadings: {by: alt, only: [B, m], fix: {B: 1}}}
estimation: {integration: {method: adaptive, points: 15}}
"""


def simulate() -> pd.DataFrame:
    rng = np.random.default_rng(11)
    rows = []
    ident = 0
    for r in range(40):
        u = rng.normal(0.0, 0.8)
        for _ in range(8):
            ident += 1
            price = rng.uniform(0, 2, 3)
            util = np.array([0.0, 0.3 + u, -0.2]) - 0.7 * price + rng.gumbel(size=3)
            for a, alt in enumerate("ABC"):
                rows.append(dict(region=r, id=ident, kind="c", alt=alt, g=0.0, price=price[a],
                                 resp=float(a == np.argmax(util))))
        for _ in range(5):
            ident += 1
            rows.append(dict(region=r, id=ident, kind="g", alt="m", g=1.0, price=0.0,
                             resp=1.0 + 0.6 * u + rng.normal(0.0, 0.5)))
    return pd.DataFrame(rows).sample(frac=1.0, random_state=2)


@cache
def fit_mixed() -> FitResult:
    folder = Path(tempfile.mkdtemp(prefix="mlmrun-choice-mixed-"))
    data = simulate()
    data.to_csv(folder / "mixed.csv", index=False)
    (folder / "model.yaml").write_text(SPEC)
    return estimate(prepare(folder / "model.yaml").model)


def named(fit: FitResult) -> dict[str, float]:
    return dict(zip(fit.model.partable.frame["name"], fit.values, strict=True))


def dense_loglik(p: dict[str, float], data: pd.DataFrame, points: int = 120) -> float:
    """Independent: sum over regions of log int prod(choice probs) prod(normal densities) phi(u) du."""
    x, w = np.polynomial.hermite_e.hermegauss(points)
    w = w / np.sqrt(2 * np.pi)
    sd_u = p["sd(u)@region"]
    lam = p["loading(u->m)"]
    sigma = [v for k, v in p.items() if k.startswith("sd(Residual")][0]
    total = 0.0
    for _, d in data.groupby("region"):
        logf = np.zeros(points)
        for _, s in d[d.kind == "c"].groupby("id"):
            s = s.sort_values("alt")
            nu = (p["price"] * s["price"].to_numpy()[:, None]
                  + np.array([0.0, p["B:Intercept"], p["C:Intercept"]])[:, None]
                  + np.array([0.0, 1.0, 0.0])[:, None] * sd_u * x[None, :])
            chosen = int(np.argmax(s["resp"].to_numpy()))
            logf += nu[chosen] - logsumexp(nu, axis=0)
        gy = d[d.kind == "g"]["resp"].to_numpy()
        logf += norm.logpdf(gy[:, None], p["g"] + lam * sd_u * x[None, :], sigma).sum(axis=0)
        total += logsumexp(logf + np.log(w))
    return float(total)


def test_mixed_choice_and_gaussian_fit_matches_a_dense_integral() -> None:
    fit = fit_mixed()
    assert fit.converged, fit.warnings
    p = named(fit)
    assert p["loading(u->m)"] > 0.0
    assert fit.loglik == pytest.approx(dense_loglik(p, simulate()), abs=1e-6)


def test_mixed_choice_and_gaussian_gradient_matches_finite_differences() -> None:
    fit = fit_mixed()
    obj = QuadratureObjective(fit.model, integration_plan(fit.model))
    x0 = fit.model.partable.pack(fit.values)
    x = x0 + 0.05 * np.cos(np.arange(len(x0)))
    ad = obj.adapt(x)
    _, g = obj.frozen(x, ad)
    h = 1e-6
    fd = np.array([(obj.frozen(x + h * e, ad, gradient=False)[0] - obj.frozen(x - h * e, ad, gradient=False)[0]) / (2 * h)
                   for e in np.eye(len(x))])
    np.testing.assert_allclose(g, fd, rtol=1e-5, atol=1e-5)

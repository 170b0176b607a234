"""Nested adaptive quadrature against independent computations.

- many points == direct numerical integration (scipy quad), two and three levels;
- one point == the Laplace approximation computed directly (joint mode and
  log-determinant), one level with two correlated effects and three levels;
- plain Gauss-Hermite with many points == adaptive;
- posterior means/SDs (empirical Bayes) == quad moments;
- merged rows (rows.py) give the same log likelihood; the fast kernels equal the families.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import integrate, optimize
from scipy.special import gammaln, log_expit

from mlmrun.compile.matrices import model_matrices
from mlmrun.families import get_family
from mlmrun.likelihood.quadrature.kernels import kernel_for
from mlmrun.likelihood.quadrature.objective import QuadratureObjective
from mlmrun.likelihood.quadrature.plan import integration_plan
from mlmrun.likelihood.quadrature.rules import product_rule
from mlmrun.predict import empirical_bayes
from tests.likelihood.test_adaptive_gradient import STRUCTURES, make_model, random_free

RI_BINOMIAL = """
levels:
  - {name: unit, id: id2}
responses:
  - {name: ysucc, family: binomial, link: logit, trials: ntr}
fixed: "ysucc ~ x"
random:
  - {level: unit, terms: [1]}
"""


def binomial_rows(model, values):
    """Per row: fixed part and binomial log density as a function of the random part."""
    mm = model_matrices(model, values)
    fixed = model.X @ mm.beta + model.offset
    y, n = model.y, model.trials
    coef = gammaln(n + 1) - gammaln(y + 1) - gammaln(n - y + 1)

    def ll(rows, extra):
        nu = fixed[rows] + extra
        return float(np.sum(y[rows] * log_expit(nu) + (n[rows] - y[rows]) * log_expit(-nu) + coef[rows]))

    return mm, ll


def readapted(model, free, points_per_level):
    obj = QuadratureObjective(model, integration_plan(model))
    rules = tuple(product_rule(p, q) for p, q in zip(points_per_level, obj.plan.dims, strict=True))
    ad = obj.adapt(free, rules=rules)
    return obj, obj.frozen(free, ad, gradient=False)[0]


def test_two_level_matches_direct_integration(tmp_path: Path) -> None:
    model = make_model(tmp_path, RI_BINOMIAL, "ri")
    free = random_free(model, 4)
    values = model.partable.unpack(free)
    mm, ll = binomial_rows(model, values)
    sd = mm.L[0][0, 0]
    codes = model.levels[0].codes
    total = 0.0
    for c in range(model.levels[0].n_units):
        rows = codes == c
        val, _ = integrate.quad(lambda u, r=rows: np.exp(ll(r, sd * u)) * np.exp(-0.5 * u * u) / np.sqrt(2 * np.pi),
                                -12, 12, epsabs=0, epsrel=1e-12, limit=200)
        total += np.log(val)
    assert readapted(model, free, (30,))[1] == pytest.approx(total, abs=1e-8)
    obj = QuadratureObjective(model, integration_plan(model))
    plain = obj.frozen(free, obj.plan.plain(obj.lay.hierarchy, (product_rule(60, 1),)), gradient=False)[0]
    assert plain == pytest.approx(total, abs=1e-6)


def test_three_level_matches_nested_direct_integration(tmp_path: Path) -> None:
    """Nested integral by the trapezoid rule on a fine grid (spectrally accurate for these smooth integrands)."""
    body = RI_BINOMIAL.replace("  - {name: unit, id: id2}\n", "  - {name: unit, id: id2}\n  - {name: top, id: id3}\n")
    body = body.replace("  - {level: unit, terms: [1]}\n", "  - {level: unit, terms: [1]}\n  - {level: top, terms: [1]}\n")
    model = make_model(tmp_path, body, "ri3")
    free = random_free(model, 5)
    mm = model_matrices(model, model.partable.unpack(free))
    s2, s3 = mm.L[0][0, 0], mm.L[1][0, 0]
    c2, c3 = model.levels[0].codes, model.levels[1].codes
    fixed = model.X @ mm.beta
    grid = np.linspace(-10, 10, 501)
    step = grid[1] - grid[0]
    log_phi = -0.5 * grid**2 - 0.5 * np.log(2 * np.pi)
    total = 0.0
    for d in range(model.levels[1].n_units):
        inner = np.zeros(len(grid))
        for c in np.unique(c2[c3 == d]):
            r = np.flatnonzero(c2 == c)
            nu = fixed[r, None, None] + s2 * grid[None, :, None] + s3 * grid[None, None, :]
            y, n = model.y[r, None, None], model.trials[r, None, None]
            coef = gammaln(n + 1) - gammaln(y + 1) - gammaln(n - y + 1)
            ll = np.sum(y * log_expit(nu) + (n - y) * log_expit(-nu) + coef, axis=0) + log_phi[:, None]
            top = ll.max(axis=0)
            inner += top + np.log(np.sum(np.exp(ll - top), axis=0) * step)
        outer = inner + log_phi
        total += outer.max() + np.log(np.sum(np.exp(outer - outer.max())) * step)
    assert readapted(model, free, (20, 20))[1] == pytest.approx(total, abs=1e-6)


def joint_laplace(model, free) -> float:
    """Laplace approximation of every top unit's integral, from scipy's joint mode and a dense Hessian."""
    obj = QuadratureObjective(model, integration_plan(model))
    pc = obj.pieces(free)
    h = obj.lay.hierarchy
    fam = pc.fam
    total = 0.0
    tops = h.unit_of_row[-1]
    for t in range(h.n_units[-1]):
        rows = np.flatnonzero(tops == t)
        cols, design = [], []
        for k, q in enumerate(h.dims):
            units = np.unique(h.unit_of_row[k][rows])
            for c in units:
                for j in range(q):
                    col = np.zeros(len(rows))
                    hit = h.unit_of_row[k][rows] == c
                    col[hit] = pc.pred.A[rows[hit], h.offset(k) + j]
                    design.append(col)
                    cols.append((k, c, j))
        Z = np.array(design).T

        def neg(u, Z=Z, rows=rows):
            ll = fam.derivs(pc.pred.fixed[rows] + Z @ u, 0, rows)[0]
            return -(ll.sum() - 0.5 * u @ u)

        res = optimize.minimize(neg, np.zeros(Z.shape[1]), method="BFGS", options={"gtol": 1e-10})
        d2 = fam.derivs(pc.pred.fixed[rows] + Z @ res.x, 2, rows)[2]
        H = np.eye(Z.shape[1]) + Z.T @ (-d2[:, None] * Z)
        total += -res.fun - 0.5 * np.linalg.slogdet(H)[1]
    return total


@pytest.mark.parametrize("key", ["correlated_slope", "three_level", "factor_B_Gamma"])
def test_one_point_is_the_laplace_approximation(tmp_path: Path, key: str) -> None:
    model = make_model(tmp_path, STRUCTURES[key], key)
    free = random_free(model, 6)
    _, laplace = readapted(model, free, (1,) * len(model.nested_levels))
    assert laplace == pytest.approx(joint_laplace(model, free), abs=1e-6)


def test_many_points_agree_with_plain_gauss_hermite(tmp_path: Path) -> None:
    model = make_model(tmp_path, STRUCTURES["correlated_slope"], "slope")
    free = random_free(model, 7)
    obj, adaptive = readapted(model, free, (25,))
    plain = obj.frozen(free, obj.plan.plain(obj.lay.hierarchy, (product_rule(40, 2),)), gradient=False)[0]
    assert adaptive == pytest.approx(plain, abs=1e-5)


def test_posterior_means_and_sds_match_direct_integration(tmp_path: Path) -> None:
    model = make_model(tmp_path, RI_BINOMIAL, "eb")
    free = random_free(model, 8)
    mm, ll = binomial_rows(model, model.partable.unpack(free))
    sd = mm.L[0][0, 0]
    obj = QuadratureObjective(model, integration_plan(model))
    ad = obj.adapt(free, rules=(product_rule(30, 1),))
    pred = empirical_bayes(obj, free, ad)[0]
    codes = model.levels[0].codes
    for c in range(3):
        rows = codes == c

        def moment(k, r=rows):
            return integrate.quad(lambda u: (sd * u) ** k * np.exp(ll(r, sd * u) - 0.5 * u * u), -12, 12,
                                  epsabs=0, epsrel=1e-12)[0]

        mean = moment(1) / moment(0)
        var = moment(2) / moment(0) - mean**2
        assert pred.mean[c, 0] == pytest.approx(mean, abs=1e-7)
        assert pred.sd[c, 0] == pytest.approx(np.sqrt(var), abs=1e-7)


MERGEABLE = [
    RI_BINOMIAL.replace("~ x", "~ C(item)"),
    RI_BINOMIAL.replace("{name: ysucc, family: binomial, link: logit, trials: ntr}",
                        "{name: ycount, family: poisson, link: log}").replace("ysucc ~ x", "ycount ~ C(item)"),
    RI_BINOMIAL.replace("link: logit", "link: cloglog").replace("~ x", "~ C(item)"),
]


@pytest.mark.parametrize("body", MERGEABLE)
def test_merged_rows_give_the_same_loglik_and_gradient(tmp_path: Path, body: str) -> None:
    model = make_model(tmp_path, body, "merge")
    free = random_free(model, 9)
    plan = integration_plan(model)
    merged, plain = QuadratureObjective(model, plan), QuadratureObjective(model, plan, merge=False)
    assert merged.lay.rows.n < plain.lay.rows.n == model.n
    (ll1, g1), (ll2, g2) = (obj.frozen(free, obj.adapt(free)) for obj in (merged, plain))
    assert ll1 == pytest.approx(ll2, abs=1e-9)
    np.testing.assert_allclose(g1, g2, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("name,link", [("binomial", "logit"), ("poisson", "log")])
def test_fast_kernels_equal_the_families(name: str, link: str) -> None:
    rng = np.random.default_rng(0)
    n = 50
    trials = rng.integers(1, 9, n).astype(float) if name == "binomial" else None
    y = rng.binomial(trials.astype(int), 0.4).astype(float) if name == "binomial" else rng.poisson(3.0, n).astype(float)
    nu = rng.normal(0, 8, (n, 7))
    nu[0, :4] = [0.0, -0.0, -700.0, 700.0]  # the sign masks' edge, and far tails (exp(-|nu|) underflows to ~0)
    family = get_family(name, link)
    kernel = kernel_for(family, y, trials)
    for got, want in zip(kernel(nu, 2), family.loglik_derivs(y, nu, None, trials, 2), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    if name == "binomial":  # Bernoulli rows (no trials column)
        y01 = (y > trials / 2).astype(float)
        for got, want in zip(kernel_for(family, y01, None)(nu, 2), family.loglik_derivs(y01, nu, None, None, 2),
                             strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_three_level_predictions_are_the_gaussian_blups(tmp_path: Path) -> None:
    """Gaussian responses: posterior means/SDs have a closed form, E[b | y] = s^2 Z'V^-1 (y - X beta)."""
    body = STRUCTURES["three_level"].replace("{name: ycount, family: poisson, link: log}", "{name: yg, family: gaussian}")
    model = make_model(tmp_path, body.replace("ycount ~ x", "yg ~ x"), "blup", points=3)
    free = random_free(model, 10)
    mm = model_matrices(model, model.partable.unpack(free))
    obj = QuadratureObjective(model, integration_plan(model))
    preds = empirical_bayes(obj, free, obj.adapt(free))
    Z = [(model.levels[k].codes[:, None] == np.arange(model.levels[k].n_units)).astype(float) for k in (0, 1)]
    s = [mm.L[0][0, 0], mm.L[1][0, 0]]
    V = np.diag(mm.scale**2) + sum(sk**2 * Zk @ Zk.T for sk, Zk in zip(s, Z, strict=True))
    resid = model.y - model.X @ mm.beta
    for k, pred in enumerate(preds):
        mean = s[k] ** 2 * Z[k].T @ np.linalg.solve(V, resid)
        var = s[k] ** 2 - s[k] ** 4 * np.einsum("ic,ic->c", Z[k], np.linalg.solve(V, Z[k]))
        np.testing.assert_allclose(pred.mean[:, 0], mean, atol=1e-8)
        np.testing.assert_allclose(pred.sd[:, 0], np.sqrt(var), atol=1e-8)

"""Standard errors of ordinary LMMs from the affine kernel (estimate/gaussian_se.py `kernel_hessian`).

The SEs of the variance parameters (natural SDs, correlations, log residual
SD) are the inverse Hessian of deviance/2 with beta profiled. Here that is
computed independently: the full marginal deviance -2 log L(beta, theta)
(REML: the restricted criterion) is written with a dense n x n
V = Z Sigma Z' + sigma^2 I built from the data file, its Hessian over every
natural coordinate is taken by central second differences, and the
variance block of its inverse (the inverse of the beta-profiled Hessian) is
compared with the fit's cov_free. The fixed effects' block is the dense
(X'V^-1X)^-1.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest

from mlmrun.estimate import estimate, gaussian_se
from mlmrun.estimate.gaussian_fit import fit_gaussian
from mlmrun.pipeline import prepare
from tests.conftest import SPECS


def _indicators(codes: np.ndarray) -> np.ndarray:
    levels, inverse = np.unique(codes, return_inverse=True)
    return (inverse[:, None] == np.arange(len(levels))[None, :]).astype(float)


def _problem(spec: str) -> tuple[np.ndarray, np.ndarray, Callable[[np.ndarray], tuple[np.ndarray, float]]]:
    """y, X and (variance coordinates in free-vector order) -> (Z Sigma Z', sigma^2)."""
    if spec == "sleepstudy":  # log sd(Residual), sd(_cons), sd(Days), corr
        d = pd.read_csv(SPECS / "data" / "sleepstudy.csv")
        G = _indicators(d["Subject"].to_numpy())
        Z = np.hstack([G, G * d["Days"].to_numpy()[:, None]])
        u = G.shape[1]

        def zsz(t: np.ndarray) -> tuple[np.ndarray, float]:
            C = np.array([[t[1] ** 2, t[3] * t[1] * t[2]], [t[3] * t[1] * t[2], t[2] ** 2]])
            return Z @ np.kron(C, np.eye(u)) @ Z.T, float(np.exp(2 * t[0]))
        return d["Reaction"].to_numpy(float), np.column_stack([np.ones(len(d)), d["Days"]]), zsz
    if spec == "penicillin":  # log sd(Residual), sd(plate), sd(sample)
        d = pd.read_csv(SPECS / "data" / "penicillin.csv")
        Gp, Gs = _indicators(d["plate"].to_numpy()), _indicators(d["sample"].to_numpy())
        return (d["diameter"].to_numpy(float), np.ones((len(d), 1)),
                lambda t: (t[1] ** 2 * Gp @ Gp.T + t[2] ** 2 * Gs @ Gs.T, float(np.exp(2 * t[0]))))
    assert spec == "pig_slope_reml"  # log sd(Residual), sd(_cons), sd(week)
    d = pd.read_csv(SPECS / "data" / "pig.csv")
    G = _indicators(d["id"].to_numpy())
    Gw = G * d["week"].to_numpy()[:, None]
    return (d["weight"].to_numpy(float), np.column_stack([np.ones(len(d)), d["week"]]),
            lambda t: (t[1] ** 2 * G @ G.T + t[2] ** 2 * Gw @ Gw.T, float(np.exp(2 * t[0]))))


def _dense_deviance(y: np.ndarray, X: np.ndarray, zsz: Callable, reml: bool) -> Callable[[np.ndarray], float]:
    """x = (beta, variance coordinates) -> -2 log L (ML, nothing profiled) or the REML criterion (beta unused)."""
    n, p = X.shape

    def deviance(x: np.ndarray) -> float:
        beta, theta = x[:p], x[p:]
        B, s2 = zsz(theta)
        V = B + s2 * np.eye(n)
        Vi = np.linalg.inv(V)
        if reml:
            XtViX = X.T @ Vi @ X
            beta = np.linalg.solve(XtViX, X.T @ Vi @ y)
        r = y - X @ beta
        dev = np.linalg.slogdet(V)[1] + float(r @ Vi @ r) + (n - p if reml else n) * np.log(2 * np.pi)
        return float(dev + np.linalg.slogdet(XtViX)[1]) if reml else float(dev)
    return deviance


def _second_differences(f: Callable[[np.ndarray], float], x: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """Hessian of f by central second differences."""
    d = len(x)
    H = np.zeros((d, d))
    f0 = f(x)
    for i in range(d):
        ei = np.eye(d)[i] * steps[i]
        H[i, i] = (f(x + ei) - 2 * f0 + f(x - ei)) / steps[i] ** 2
        for j in range(i):
            ej = np.eye(d)[j] * steps[j]
            H[i, j] = H[j, i] = (f(x + ei + ej) - f(x + ei - ej) - f(x - ei + ej) + f(x - ei - ej)) / (4 * steps[i] * steps[j])
    return H


def _watch(monkeypatch: pytest.MonkeyPatch, where: object, name: str, original: Callable) -> list[bool]:
    """Replace `where.name` by a wrapper of `original` recording whether each call gave a result (not None)."""
    used: list[bool] = []

    def spy(*args):
        out = original(*args)
        used.append(out is not None)
        return out

    monkeypatch.setattr(where, name, spy)
    return used


@pytest.mark.parametrize("spec", ["sleepstudy", "penicillin", "pig_slope_reml"])
def test_kernel_standard_errors_match_a_dense_marginal_likelihood(spec: str, monkeypatch: pytest.MonkeyPatch):
    used = _watch(monkeypatch, gaussian_se, "kernel_hessian", gaussian_se.kernel_hessian)
    model = prepare(SPECS / f"{spec}.yaml").model
    fit = estimate(model)
    assert used == [True]
    reml = fit.method == "REML"
    y, X, zsz = _problem(spec)
    p = X.shape[1]
    x = np.asarray(fit.free, float)  # beta first, then log sd(Residual), SDs, correlations (free-vector order)
    deviance = _dense_deviance(y, X, zsz, reml)
    steps = 3e-4 * np.maximum(np.abs(x), 1.0)  # truncation ~1e-7, rounding below it
    if reml:
        H = 0.5 * _second_differences(lambda t: deviance(np.r_[x[:p], t]), x[p:], steps[p:])
        cov_var = np.linalg.inv(H)
    else:
        cov_var = np.linalg.inv(0.5 * _second_differences(deviance, x, steps))[p:, p:]
    got = fit.cov_free[p:, p:]
    se_ref = np.sqrt(np.diag(cov_var))
    np.testing.assert_allclose(np.sqrt(np.diag(got)), se_ref, rtol=2e-6)
    assert np.max(np.abs(got - cov_var) / np.outer(se_ref, se_ref)) < 4e-6
    B, s2 = zsz(x[p:])
    Vi = np.linalg.inv(B + s2 * np.eye(len(y)))
    np.testing.assert_allclose(fit.cov_free[:p, :p], np.linalg.inv(X.T @ Vi @ X), rtol=1e-7)


KERNEL_SPECS = ["sleepstudy", "penicillin", "productivity", "productivity_reml", "gcse_slope", "hsb_slope",
                "pig_intercept", "pig_slope", "pig_slope_reml", "pig_slope_unstructured", "pig_crossed",
                "productivity_blocks", "scotssec"]


@pytest.mark.parametrize("spec", KERNEL_SPECS)
def test_kernel_standard_errors_equal_the_general_pipelines(spec: str, monkeypatch: pytest.MonkeyPatch):
    """Every shipped LMM of the kernel's class: the kernel's covariance and the general pipeline's (forward
    differences of its analytic gradient over the natural coordinates) at the same optimum."""
    model = prepare(SPECS / f"{spec}.yaml").model
    pairs = []
    original = gaussian_se.covariance

    def both(design, params, reml, free, values, res, kernel=None, phi=None, g_phi=None):
        fast = original(design, params, reml, free, values, res, kernel, phi, g_phi)
        pairs.append((kernel, fast[0], original(design, params, reml, free, values, res)[0]))
        return fast

    from mlmrun.estimate import gaussian_fit
    monkeypatch.setattr(gaussian_fit, "covariance", both)
    fit_gaussian(model)
    (kernel, fast, general), = pairs
    assert kernel is not None
    se_fast, se_general = np.sqrt(np.diag(fast)), np.sqrt(np.diag(general))
    np.testing.assert_allclose(se_fast, se_general, rtol=1e-5)
    assert np.max(np.abs(fast - general) / np.outer(se_general, se_general)) < 1e-5


def test_coordinates_that_do_not_map_onto_phi_keep_the_general_path():
    """A variance coordinate missing from free[idx] (as one skipped at a boundary) gives no Jacobian."""
    from mlmrun.estimate.gaussian_params import GaussianParams

    model = prepare(SPECS / "sleepstudy.yaml").model
    params = GaussianParams(model)
    free = np.asarray(estimate(model).free, float)
    phi = params.phi_from_free(free, float(np.exp(free[params.residual_idx[0]])))
    variance = np.array([j for j in range(params.n_free) if j not in set(params.beta_idx)])
    assert gaussian_se.natural_jacobian(params, free, phi, variance) is not None
    assert gaussian_se.natural_jacobian(params, free, phi, variance[:-1]) is None


@pytest.mark.parametrize("spec", ["sleepstudy", "pig_slope_reml"])
def test_kernel_empirical_bayes_match_dense_conditional_moments(spec: str, monkeypatch: pytest.MonkeyPatch):
    """One grouping level: the kernel's unit blocks give E(b | y) = Sigma Z'V^-1(y - X beta) and the
    conditional SDs sqrt(diag(Sigma - Sigma Z'V^-1 Z Sigma)), computed here with a dense V."""
    from mlmrun.estimate import gaussian_eb, gaussian_fit

    used = _watch(monkeypatch, gaussian_fit, "kernel_empirical_bayes", gaussian_eb.kernel_empirical_bayes)
    fit = estimate(prepare(SPECS / f"{spec}.yaml").model)
    assert used == [True]
    d = pd.read_csv(SPECS / "data" / ("sleepstudy.csv" if spec == "sleepstudy" else "pig.csv"))
    unit, slope, response = ("Subject", "Days", "Reaction") if spec == "sleepstudy" else ("id", "week", "weight")
    labels, codes = np.unique(d[unit].to_numpy(), return_inverse=True)
    G = (codes[:, None] == np.arange(len(labels))[None, :]).astype(float)
    u = len(labels)
    Z = np.hstack([G, G * d[slope].to_numpy()[:, None]])
    X = np.column_stack([np.ones(len(d)), d[slope]])
    p = X.shape[1]
    x = np.asarray(fit.free, float)
    sd0, sd1 = x[p + 1], x[p + 2]
    rho = x[p + 3] if spec == "sleepstudy" else 0.0
    C = np.array([[sd0**2, rho * sd0 * sd1], [rho * sd0 * sd1, sd1**2]])
    Sigma = np.kron(C, np.eye(u))
    V = Z @ Sigma @ Z.T + np.exp(2 * x[p]) * np.eye(len(d))
    SZVi = Sigma @ Z.T @ np.linalg.inv(V)
    mean = SZVi @ (d[response].to_numpy(float) - X @ x[:p])
    sd = np.sqrt(np.diag(Sigma - SZVi @ Z @ Sigma))
    eb = next(iter(fit.extras["empirical_bayes"].values()))
    assert [str(v) for v in labels] == eb["units"]
    for j, name in enumerate(["_cons", slope]):
        np.testing.assert_allclose(eb[name]["mean"], mean[j * u:(j + 1) * u], rtol=1e-8, atol=1e-10 * np.max(np.abs(mean)))
        np.testing.assert_allclose(eb[name]["sd"], sd[j * u:(j + 1) * u], rtol=1e-8)


def test_dense_kernel_empirical_bayes_match_dense_conditional_moments(monkeypatch: pytest.MonkeyPatch):
    """Crossed random intercepts (penicillin, the Dense kernel): E(b | y) = Sigma Z'V^-1(y - X beta) and
    sqrt(diag(Sigma - Sigma Z'V^-1 Z Sigma)) for plate and sample, computed here with a dense V."""
    from mlmrun.estimate import gaussian_eb, gaussian_fit

    used = _watch(monkeypatch, gaussian_fit, "kernel_empirical_bayes", gaussian_eb.kernel_empirical_bayes)
    fit = estimate(prepare(SPECS / "penicillin.yaml").model)
    assert used == [True]
    d = pd.read_csv(SPECS / "data" / "penicillin.csv")
    x = np.asarray(fit.free, float)  # Intercept, log sd(Residual), sd plate, sd sample
    blocks, sds = [], []
    for column, sd in (("plate", x[2]), ("sample", x[3])):
        labels, codes = np.unique(d[column].to_numpy(), return_inverse=True)
        blocks.append((column, labels, (codes[:, None] == np.arange(len(labels))[None, :]).astype(float)))
        sds.append(np.full(len(labels), sd))
    Z = np.hstack([b[2] for b in blocks])
    Sigma = np.diag(np.concatenate(sds) ** 2)
    V = Z @ Sigma @ Z.T + np.exp(2 * x[1]) * np.eye(len(d))
    SZVi = Sigma @ Z.T @ np.linalg.inv(V)
    mean = SZVi @ (d["diameter"].to_numpy(float) - x[0])
    sd = np.sqrt(np.diag(Sigma - SZVi @ Z @ Sigma))
    start = 0
    for column, labels, _ in blocks:
        eb = fit.extras["empirical_bayes"][column]
        assert [str(v) for v in labels] == eb["units"]
        u = len(labels)
        np.testing.assert_allclose(eb["_cons"]["mean"], mean[start:start + u], rtol=1e-7, atol=1e-9)
        np.testing.assert_allclose(eb["_cons"]["sd"], sd[start:start + u], rtol=1e-7)
        start += u


def test_dense_kernel_empirical_bayes_with_several_effects_per_unit(monkeypatch: pytest.MonkeyPatch):
    """productivity_blocks (Dense kernel, three effects per region: hwy and unemp with one shared SD, and an
    intercept; state intercepts): the kernel's per-unit posterior blocks against a dense V."""
    from mlmrun.estimate import gaussian_eb, gaussian_fit

    used = _watch(monkeypatch, gaussian_fit, "kernel_empirical_bayes", gaussian_eb.kernel_empirical_bayes)
    model = prepare(SPECS / "productivity_blocks.yaml").model
    fit = estimate(model)
    assert used == [True]
    x = dict(zip(model.partable.free_names(), np.asarray(fit.free, float), strict=True))
    d = pd.read_csv(SPECS / "data" / "productivity.csv")
    fixed = ["private", "emp", "hwy", "water", "other", "unemp"]
    X = np.column_stack([np.ones(len(d))] + [d[c].to_numpy(float) for c in fixed])
    beta = np.array([x["Intercept"]] + [x[c] for c in fixed])
    layout = [("state", [(None, x["sd(_cons)@state"])]),
              ("region", [("hwy", x["sd(hwy)@region"]), ("unemp", x["sd(hwy)@region"]), (None, x["sd(_cons)@region"])])]
    columns, variances, where = [], [], {}
    for level, terms in layout:
        labels, codes = np.unique(d[level].astype(str).to_numpy(), return_inverse=True)
        G = (codes[:, None] == np.arange(len(labels))[None, :]).astype(float)
        for term, sd in terms:
            where[(level, term or "_cons")] = (labels, sum(c.shape[1] for c in columns))
            columns.append(G if term is None else G * d[term].to_numpy(float)[:, None])
            variances.append(np.full(len(labels), sd**2))
    Z = np.hstack(columns)
    Sigma = np.diag(np.concatenate(variances))
    V = Z @ Sigma @ Z.T + np.exp(2 * x["sd(Residual)"]) * np.eye(len(d))
    SZVi = Sigma @ Z.T @ np.linalg.inv(V)
    mean = SZVi @ (d["gsp"].to_numpy(float) - X @ beta)
    sd = np.sqrt(np.diag(Sigma - SZVi @ Z @ Sigma))
    for (level, term), (labels, start) in where.items():
        eb = fit.extras["empirical_bayes"][level]
        assert sorted(eb["units"]) == sorted(str(v) for v in labels)
        order = [list(labels).index(u) for u in eb["units"]]
        span = start + np.array(order)
        np.testing.assert_allclose(eb[term]["mean"], mean[span], rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(eb[term]["sd"], sd[span], rtol=1e-6)

"""The one-pass observed information (Louis' identity per unit, likelihood/quadrature/louis.py).

The analytic Hessian of the frozen-adaptation log likelihood must equal
- central differences of the analytic (Fisher-identity) gradient, for every family and link it covers,
  the latent structures of issue 4 (correlated effects, three levels, loadings with B and Gamma),
  plain Gauss-Hermite, and sampling weights at every level;
- second differences of the frozen log likelihood written out here directly (a brute-force sum over
  each cluster's nodes), independently of the quadrature module.
Families with parameters of their own (gaussian, gamma, ordinal) keep the numeric Jacobian.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.special import gammaln

from mlmrun.estimate.inference import hessian_from_gradient
from mlmrun.estimate.quadrature_fit import frozen_information
from mlmrun.likelihood.quadrature.adaptive import evaluate
from mlmrun.likelihood.quadrature.objective import QuadratureObjective
from mlmrun.likelihood.quadrature.plan import integration_plan
from mlmrun.pipeline import prepare
from tests.conftest import write_spec
from tests.likelihood.test_adaptive_gradient import FAMILIES, STRUCTURES, family_body, make_model, random_free
from tests.likelihood.test_weights_pseudolikelihood import _three_level

ANALYTIC = sorted(k for k in FAMILIES if k.startswith(("binomial", "poisson")))
NUMERIC = sorted(set(FAMILIES) - set(ANALYTIC))


def assert_same_hessian(analytic: np.ndarray, reference: np.ndarray, rtol: float, what: str) -> None:
    """Every entry within rtol of the scale sqrt(|H_ii H_jj|) of its row and column."""
    d = np.sqrt(np.abs(np.diag(reference)))
    worst = float(np.max(np.abs(analytic - reference) / np.outer(d, d)))
    assert worst < rtol, f"{what}: largest scaled difference {worst:.3g}"


def check_against_gradient_differences(obj: QuadratureObjective, free: np.ndarray, what: str) -> None:
    ad = obj.adapt(free)
    assert obj.louis_applies()
    analytic = obj.hessian(free, ad)
    numeric = hessian_from_gradient(lambda x: obj.frozen(x, ad)[1], free)
    assert_same_hessian(analytic, numeric, 1e-6, what)


@pytest.mark.parametrize("key", ANALYTIC)
def test_information_equals_gradient_differences_every_family_and_link(tmp_path: Path, key: str) -> None:
    model = make_model(tmp_path, family_body(key), key)
    obj = QuadratureObjective(model, integration_plan(model))
    for seed in (0, 1):
        check_against_gradient_differences(obj, random_free(model, seed), f"{key} seed {seed}")


@pytest.mark.parametrize("key", ["correlated_slope", "three_level", "factor_B_Gamma"])
def test_information_equals_gradient_differences_latent_structures(tmp_path: Path, key: str) -> None:
    model = make_model(tmp_path, STRUCTURES[key], key, points=3)
    obj = QuadratureObjective(model, integration_plan(model))
    check_against_gradient_differences(obj, random_free(model, 4), key)


def test_information_equals_gradient_differences_plain_gauss_hermite(tmp_path: Path) -> None:
    model = make_model(tmp_path, STRUCTURES["three_level"], "ghq", points=5, method="ghq")
    obj = QuadratureObjective(model, integration_plan(model))
    check_against_gradient_differences(obj, random_free(model, 5), "ghq")


def test_information_equals_gradient_differences_with_weights_at_every_level(spec_dir: Path) -> None:
    _, model = _three_level(spec_dir)
    obj = QuadratureObjective(model, integration_plan(model))
    check_against_gradient_differences(obj, model.partable.pack(model.partable.start_values) + 0.1, "weighted")


@pytest.mark.parametrize("key", NUMERIC)
def test_families_with_own_parameters_keep_the_numeric_jacobian(tmp_path: Path, key: str) -> None:
    model = make_model(tmp_path, family_body(key), key)
    obj = QuadratureObjective(model, integration_plan(model))
    assert not obj.louis_applies()
    free = random_free(model, 0)
    ad = obj.adapt(free)
    numeric = hessian_from_gradient(lambda x: obj.frozen(x, ad)[1], free)
    np.testing.assert_allclose(frozen_information(obj, free, ad), -numeric, rtol=1e-12, atol=1e-12)


LOGIT_RI = """\
name: brute
data: {path: data/brute.csv}
levels:
  - {name: cluster, id: cluster}
responses:
  - {name: y, family: binomial, trials: n}
fixed: "y ~ x"
random:
  - {level: cluster, terms: [1]}
estimation: {integration: {points: 7}}
"""


def test_information_equals_second_differences_of_a_brute_force_frozen_likelihood(tmp_path: Path) -> None:
    rng = np.random.default_rng(21)
    cluster = np.repeat(np.arange(6), 4)
    x = rng.normal(size=len(cluster))
    n = rng.integers(1, 5, size=len(cluster))
    y = rng.binomial(n, 1 / (1 + np.exp(-(0.2 + 0.9 * x + rng.normal(0, 1.1, 6)[cluster]))))
    (tmp_path / "data").mkdir()
    pd.DataFrame({"cluster": cluster, "x": x, "y": y, "n": n}).to_csv(tmp_path / "data" / "brute.csv", index=False)
    model = prepare(write_spec(tmp_path, LOGIT_RI, "brute.yaml")).model
    obj = QuadratureObjective(model, integration_plan(model))
    pt = model.partable
    free = pt.pack(pt.start_values) + np.array([0.1, 0.7, 0.9])[: pt.n_free]
    ad = obj.adapt(free)
    nodes, w = np.polynomial.hermite_e.hermegauss(7)
    w = w / np.sqrt(2 * np.pi)
    mode, scale = ad.mode[0][:, 0], ad.chol[0][:, 0, 0]
    codes = model.levels[model.nested_levels[0]].codes
    sd_row = list(pt.names).index("sd(_cons)@cluster")
    log_choose = gammaln(n + 1.0) - gammaln(y + 1.0) - gammaln(n - y + 1.0)

    def frozen_loglik(f: np.ndarray) -> float:
        values = pt.unpack(f)
        fixed = model.X @ values[model.beta_rows]
        total = 0.0
        for c in range(6):
            rows = codes == c
            u = mode[c] + scale[c] * nodes
            eta = fixed[rows, None] + values[sd_row] * u[None, :]
            logf = y[rows, None] * eta - n[rows, None] * np.logaddexp(0, eta) + log_choose[rows, None]
            log_w = np.log(w) + 0.5 * nodes ** 2 - 0.5 * u ** 2 + np.log(scale[c])
            total += np.log(np.sum(np.exp(log_w + logf.sum(axis=0))))
        return total

    assert abs(frozen_loglik(free) - obj.frozen(free, ad)[0]) < 1e-10
    p = len(free)

    def second_differences(h: float) -> np.ndarray:
        out = np.zeros((p, p))
        for i in range(p):
            for j in range(p):
                ei, ej = np.eye(p)[i] * h, np.eye(p)[j] * h
                out[i, j] = (frozen_loglik(free + ei + ej) - frozen_loglik(free + ei - ej)
                             - frozen_loglik(free - ei + ej) + frozen_loglik(free - ei - ej)) / (4 * h * h)
        return out

    brute = (4.0 * second_differences(1e-3) - second_differences(2e-3)) / 3.0  # Richardson: error O(h^4)
    assert_same_hessian(obj.hessian(free, ad), brute, 1e-7, "brute force")


def test_information_pass_keeps_the_posterior_moments_of_a_fresh_evaluation(tmp_path: Path) -> None:
    model = make_model(tmp_path, STRUCTURES["factor_B_Gamma"], "moments", points=3)
    obj = QuadratureObjective(model, integration_plan(model))
    free = random_free(model, 6)
    ad = obj.adapt(free)
    obj.hessian(free, ad, keep_moments=True)
    kept = obj.evaluation(free, ad).moments
    pc = obj.pieces(free)
    fresh = evaluate(obj.lay.hierarchy, pc.pred, pc.fam, ad, moments=True).moments
    assert kept is not None and len(kept) == len(fresh) == 2
    for (m1, s1), (m2, s2) in zip(kept, fresh, strict=True):
        np.testing.assert_allclose(m1, m2, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(s1, s2, rtol=1e-12, atol=1e-14)

"""Rules with many points give the same log likelihood as few points and as direct integration.

A binary Rasch model (random person intercept, one intercept per item) on simulated data with a
large person SD, so that plain (non-adaptive) Gauss-Hermite needs many points. The target is
computed here by scipy's adaptive quadrature per person, from the model's definition only:
log L = sum_j log int prod_i expit(+-(b_i + sigma u)) phi(u) du. With wrong outer weights (the old
eigenvector formula) 80 points gave a positive log likelihood, which no binary model can have.
Plain rules with `points: k` equal the same sum built from scipy's k-point rule, and differ from
k - 1 and k + 1 points: the points a spec asks for are the points used.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import integrate
from scipy.special import log_expit, logsumexp, roots_hermitenorm

from mlmrun import estimate
from mlmrun.likelihood.quadrature.objective import QuadratureObjective
from mlmrun.likelihood.quadrature.plan import integration_plan
from mlmrun.pipeline import prepare
from tests.conftest import write_spec

ITEMS = ["i1", "i2", "i3", "i4", "i5", "i6"]
SIGMA = 3.0
RASCH = """name: rasch_{tag}
data: {{path: rasch.csv}}
levels:
  - {{name: person, id: person}}
responses:
  - {{name: y, family: binomial, link: logit}}
fixed: "y ~ 0 + C(item)"
random:
  - {{level: person, terms: [1]}}
estimation: {{integration: {{method: {method}, points: {points}}}}}
"""


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rng = np.random.default_rng(80)
    n_persons = 40
    b = np.linspace(-1.5, 1.5, len(ITEMS))
    u = SIGMA * rng.normal(size=n_persons)
    rows = [(j, item, int(rng.uniform() < 1 / (1 + np.exp(-(b[i] + u[j])))))
            for j in range(n_persons) for i, item in enumerate(ITEMS)]
    path = tmp_path_factory.mktemp("rasch")
    pd.DataFrame(rows, columns=["person", "item", "y"]).to_csv(path / "rasch.csv", index=False)
    return path


def model_for(folder: Path, method: str, points: int):
    text = RASCH.format(tag=f"{method}{points}", method=method, points=points)
    return prepare(write_spec(folder, text, f"rasch_{method}{points}.yaml")).model


def direct_loglik(folder: Path, intercepts: dict[str, float], sigma: float) -> float:
    """sum over persons of log int prod_i f(y_i | b_i + sigma u) phi(u) du, by scipy.integrate.quad."""
    frame = pd.read_csv(folder / "rasch.csv")
    total = 0.0
    for _, rows in frame.groupby("person"):
        b = rows["item"].map(intercepts).to_numpy()
        sign = 2.0 * rows["y"].to_numpy() - 1.0

        def integrand(u: float, b=b, sign=sign) -> float:
            return float(np.exp(np.sum(log_expit(sign * (b + sigma * u))) - 0.5 * u * u)) / np.sqrt(2 * np.pi)

        val, _ = integrate.quad(integrand, -40, 40, points=[0.0], epsabs=0, epsrel=1e-13, limit=400)
        total += np.log(val)
    return total


def loglik_at(model, values: dict[str, float]) -> float:
    pt = model.partable
    full = np.array(pt.frame["value"], dtype=float)
    for name, v in values.items():
        full[list(pt.names).index(name)] = v
    obj = QuadratureObjective(model, integration_plan(model))
    free = pt.pack(full)
    return obj.readapted(free)[0]


PARAMS = {"C(item)[i1]": -1.2, "C(item)[i2]": -0.7, "C(item)[i3]": 0.1, "C(item)[i4]": 0.4,
          "C(item)[i5]": 0.9, "C(item)[i6]": 1.6, "sd(_cons)@person": SIGMA}


# adaptive rules are converged to ~1e-11 from 60 points on (measured: 4e-9 at 40, 2e-5 at 20); plain rules
# converge slowly for a person SD of 3 (2e-6 at 100 points, 1e-9 at 200)
@pytest.mark.parametrize(("method", "points", "tol"), [("adaptive", 60, 1e-9), ("adaptive", 80, 1e-9),
                                                       ("adaptive", 100, 1e-9), ("adaptive", 150, 1e-9),
                                                       ("adaptive", 200, 1e-9), ("ghq", 200, 1e-8)])
def test_log_likelihood_at_many_points_equals_direct_integration(folder: Path, method: str, points: int,
                                                                 tol: float) -> None:
    target = direct_loglik(folder, {k[8:-1]: v for k, v in PARAMS.items() if k.startswith("C(")}, SIGMA)
    ours = loglik_at(model_for(folder, method, points), PARAMS)
    assert ours < 0.0
    assert ours == pytest.approx(target, abs=tol)


def test_fit_with_80_points_has_the_log_likelihood_of_a_fit_with_fewer(folder: Path) -> None:
    many = estimate(model_for(folder, "adaptive", 80))
    few = estimate(model_for(folder, "adaptive", 40))
    assert many.converged and few.converged
    assert many.loglik < 0.0
    assert many.loglik == pytest.approx(few.loglik, abs=1e-6)
    names = list(many.model.partable.names)
    fitted = {n: float(many.values[names.index(n)]) for n in PARAMS}
    direct = direct_loglik(folder, {k[8:-1]: v for k, v in fitted.items() if k.startswith("C(")},
                           fitted["sd(_cons)@person"])
    assert many.loglik == pytest.approx(direct, abs=1e-7)


def scipy_rule_loglik(folder: Path, intercepts: dict[str, float], sigma: float, k: int) -> float:
    """Plain k-point Gauss-Hermite log likelihood from scipy's nodes and weights (not mlmrun's rule)."""
    x, w = roots_hermitenorm(k)
    w = w / w.sum()
    frame = pd.read_csv(folder / "rasch.csv")
    total = 0.0
    for _, rows in frame.groupby("person"):
        b = rows["item"].map(intercepts).to_numpy()[:, None]
        sign = (2.0 * rows["y"].to_numpy() - 1.0)[:, None]
        total += float(logsumexp(np.log(w) + np.sum(log_expit(sign * (b + sigma * x[None, :])), axis=0)))
    return total


@pytest.mark.parametrize("k", [2, 3, 7, 12])
def test_spec_points_are_the_points_used(folder: Path, k: int) -> None:
    intercepts = {key[8:-1]: v for key, v in PARAMS.items() if key.startswith("C(")}
    ours = loglik_at(model_for(folder, "ghq", k), PARAMS)
    assert ours == pytest.approx(scipy_rule_loglik(folder, intercepts, SIGMA, k), abs=1e-10)
    # one point fewer or more is a different number: the check would see a rule of the wrong size
    for other in (k - 1, k + 1):
        assert abs(ours - scipy_rule_loglik(folder, intercepts, SIGMA, other)) > 1e-6

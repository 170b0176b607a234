"""Latent classes with a class-specific residual SD (`class_scale: true`) on gaussian items.

The brute force written here sums each person's likelihood over the classes
directly: sum_k p_k prod_j N(y_j | alpha_kj, (sigma exp(delta_k))^2).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import norm

from mlmrun.estimate import estimate
from mlmrun.likelihood.quadrature.discrete import DiscreteObjective
from mlmrun.report.discrete import discrete_tables
from mlmrun.results import parameter_rows
from tests.discrete.data import compiled

SPEC = """\
name: scale
data: {path: data.csv}
levels: [{name: person, id: person}]
responses: [{name: y, family: gaussian}]
fixed: "y ~ 0"
latent:
  - {name: class, level: person, classes: 2, loadings: {by: item}, class_scale: true}
"""

MEANS = np.array([[0.0, 0.5, -0.5, 1.0], [2.0, 2.5, 1.0, 3.0]])
SDS = np.array([0.5, 1.2])
P2 = 0.4


def class_scale_data(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    cls = (rng.random(n) < P2).astype(int)
    y = MEANS[cls] + SDS[cls][:, None] * rng.normal(size=(n, 4))
    return pd.DataFrame({"person": np.repeat(np.arange(1, n + 1), 4), "item": np.tile(["a", "b", "c", "d"], n),
                         "y": y.reshape(-1)})


def brute_loglik(frame: pd.DataFrame, means: np.ndarray, sds: np.ndarray, probs: np.ndarray) -> float:
    y = frame.sort_values(["person", "item"])["y"].to_numpy().reshape(-1, 4)
    per_class = np.stack([norm.logpdf(y, means[k], sds[k]).sum(axis=1) for k in range(len(sds))], axis=1)
    return float(np.log(np.exp(per_class) @ probs).sum())


def _point(model, means: np.ndarray, sigma: float, shift: float, logit: float) -> np.ndarray:
    pt = model.partable
    values = pt.start_values
    for k in range(2):
        for j, item in enumerate("abcd"):
            values[pt.index(f"class{k + 1}({item})@person")] = means[k, j]
    values[pt.index("sd(Residual)")] = sigma
    values[pt.index("lnscale2(class)@person")] = shift
    values[pt.index("logit2(class)@person")] = logit
    return pt.pack(values)


def test_likelihood_matches_explicit_class_sum(tmp_path: Path) -> None:
    frame = class_scale_data(40, 1)
    model = compiled(tmp_path, SPEC, frame)
    x = _point(model, MEANS + 0.1, 0.6, 0.7, -0.3)
    ours = DiscreteObjective(model).evaluate(x, gradient=False).loglik
    p2 = 1.0 / (1.0 + np.exp(0.3))
    brute = brute_loglik(frame, MEANS + 0.1, np.array([0.6, 0.6 * np.exp(0.7)]), np.array([1 - p2, p2]))
    assert abs(ours - brute) < 1e-9


def test_gradient_matches_differences(tmp_path: Path) -> None:
    model = compiled(tmp_path, SPEC, class_scale_data(40, 1))
    obj = DiscreteObjective(model)
    x = _point(model, MEANS - 0.2, 0.8, -0.4, 0.5)
    analytic = obj.evaluate(x).gradient
    numeric = np.zeros_like(x)
    for j in range(len(x)):
        up, down = x.copy(), x.copy()
        up[j] += 1e-6
        down[j] -= 1e-6
        numeric[j] = (obj.evaluate(up, gradient=False).loglik - obj.evaluate(down, gradient=False).loglik) / 2e-6
    assert np.allclose(analytic, numeric, rtol=1e-6, atol=1e-6)


def independent_em(y: np.ndarray, iterations: int = 3000) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
    """Closed-form EM for two classes: item means per class, one SD per class, class probabilities."""
    resp = (y[:, 0] > np.median(y[:, 0])).astype(float)
    w = np.column_stack([1 - resp, resp])
    for _ in range(iterations):
        probs = w.mean(axis=0)
        means = (w.T @ y) / w.sum(axis=0)[:, None]
        sds = np.sqrt([(w[:, k] @ ((y - means[k]) ** 2).sum(axis=1)) / (y.shape[1] * w[:, k].sum()) for k in range(2)])
        logf = np.stack([norm.logpdf(y, means[k], sds[k]).sum(axis=1) + np.log(probs[k]) for k in range(2)], axis=1)
        top = logf.max(axis=1, keepdims=True)
        w = np.exp(logf - top)
        w /= w.sum(axis=1, keepdims=True)
    loglik = float((top[:, 0] + np.log(np.exp(logf - top).sum(axis=1))).sum())
    return loglik, means, sds, probs


def test_fit_matches_independent_em_and_recovers_the_sd_ratio(tmp_path: Path) -> None:
    frame = class_scale_data(600, 4)
    model = compiled(tmp_path, SPEC, frame)
    fit = estimate(model)
    assert fit.converged
    pt, se = model.partable, fit.se()
    em_ll, em_means, em_sds, em_probs = independent_em(frame["y"].to_numpy().reshape(-1, 4))
    assert abs(fit.loglik - em_ll) < 1e-6
    big = int(np.argmax([fit.values[pt.index(f"class{k + 1}(a)@person")] for k in range(2)]))
    em_big = int(np.argmax(em_means[:, 0]))
    sigma, shift = fit.values[pt.index("sd(Residual)")], fit.values[pt.index("lnscale2(class)@person")]
    sds = np.array([sigma, sigma * np.exp(shift)])
    assert np.allclose(sds[[big, 1 - big]], em_sds[[em_big, 1 - em_big]], atol=1e-4)
    for j, item in enumerate("abcd"):
        assert abs(fit.values[pt.index(f"class{big + 1}({item})@person")] - em_means[em_big, j]) < 1e-4
    assert abs(np.log(sds[big] / sds[1 - big]) - np.log(SDS[1] / SDS[0])) < 2.0 * se[pt.index("lnscale2(class)@person")]
    tables, _ = discrete_tables({r.name: r for r in parameter_rows(fit)}, fit)
    shifts = next(t for t in tables if t.title.startswith("Class-specific log shifts"))
    assert len(shifts.rows) == 1

"""Count and censored families inside the quadrature engine: analytic gradients equal central differences.

The Fisher-identity gradient of the frozen-adaptation log likelihood, with
respect to every free parameter (fixed part, random-effect SDs, loadings, the
NB dispersion, zero-inflation and composite-link coefficients, the censored residual SD), at
random parameter values: single responses with a random intercept, three
levels, and a mixed-response model (censored gaussian + zero-inflated NB2)
sharing a factor with a free loading.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlmrun.compile.model import CompiledModel
from mlmrun.likelihood.quadrature.objective import QuadratureObjective
from mlmrun.likelihood.quadrature.plan import integration_plan
from mlmrun.pipeline import prepare
from tests.conftest import write_spec


def frame(seed: int = 3, n3: int = 4, per3: int = 3, per2: int = 6) -> pd.DataFrame:
    """Rows within level-2 within level-3 units: overdispersed counts with extra zeros, censored outcomes."""
    rng = np.random.default_rng(seed)
    n2 = n3 * per3
    id2 = np.repeat(np.arange(n2), per2)
    n = len(id2)
    x = rng.normal(size=n)
    eta = 0.2 + 0.5 * x + rng.normal(size=n2)[id2] + 0.4 * rng.normal(size=n3)[id2 // per3]
    counts = rng.negative_binomial(2.0, 2.0 / (2.0 + np.exp(eta)))
    counts[rng.uniform(size=n) < 0.25] = 0
    latent = eta + rng.normal(size=n)
    left = (latent < 0).astype(int)
    right = (latent > 2.0).astype(int)
    ycens = np.clip(latent, 0.0, 2.0)
    interval = np.floor(latent * 2) / 2
    upper = np.where(np.arange(n) % 3 == 0, interval + 0.5, interval)
    grp = np.arange(n) % 2
    return pd.DataFrame({"id2": id2, "id3": id2 // per3, "x": x, "ycount": counts, "ycens": ycens, "left": left,
                         "right": right, "yint": interval, "upper": upper, "grp": grp,
                         "ymix": np.where(grp == 0, ycens, counts), "lmix": np.where(grp == 0, left, 0)})


RI = "levels:\n  - {name: unit, id: id2}\nrandom:\n  - {level: unit, terms: [1]}\n"
THREE = ("levels:\n  - {name: unit, id: id2}\n  - {name: top, id: id3}\n"
         "random:\n  - {level: unit, terms: [1]}\n  - {level: top, terms: [1]}\n")

MODELS = {
    "nbinom2": "responses:\n  - {name: ycount, family: nbinom2}\nfixed: \"ycount ~ x\"\n" + RI,
    "nbinom1": "responses:\n  - {name: ycount, family: nbinom1}\nfixed: \"ycount ~ x\"\n" + RI,
    "zip_covariate": "responses:\n  - {name: ycount, family: poisson, zero_inflation: \"~ x\"}\n"
                     "fixed: \"ycount ~ x\"\n" + RI,
    "zinb2": "responses:\n  - {name: ycount, family: nbinom2, zero_inflation: \"~ 1 + x\"}\nfixed: \"ycount ~ x\"\n" + RI,
    "zinb1": "responses:\n  - {name: ycount, family: nbinom1, zero_inflation: \"~ 1\"}\nfixed: \"ycount ~ x\"\n" + RI,
    "tobit_left_right": "responses:\n  - {name: ycens, family: gaussian, censoring: {left: left, right: right}}\n"
                        "fixed: \"ycens ~ x\"\n" + RI,
    "interval": "responses:\n  - {name: yint, family: gaussian, censoring: {upper: upper}}\nfixed: \"yint ~ x\"\n" + RI,
    "composite_poisson": "responses:\n  - {name: ycount, family: poisson, composite: [{formula: \"~ 1 + x\"}]}\n"
                         "fixed: \"ycount ~ x\"\n" + RI,
    "composite_gaussian_two_terms": "responses:\n  - {name: yint, family: gaussian, composite: [{formula: \"~ x\", "
                                    "link: logit}, {formula: \"~ 1\", link: log}]}\nfixed: \"yint ~ x\"\n" + RI,
    "nbinom2_three_levels": "responses:\n  - {name: ycount, family: nbinom2}\nfixed: \"ycount ~ x\"\n" + THREE,
    "mixed_censored_zinb2_factor": """
levels:
  - {name: unit, id: id2}
responses:
  - {name: ymix, family: gaussian, censoring: {left: lmix}, select: {grp: [0]}}
  - {name: ymix, family: nbinom2, zero_inflation: "~ 1", select: {grp: [1]}}
fixed: "ymix ~ 0 + C(grp) + x"
latent:
  - {name: f, level: unit, loadings: {by: grp, fix: {0: 1}}}
""",
}


def make_model(folder: Path, key: str, points: int = 4) -> CompiledModel:
    (folder / "data").mkdir(exist_ok=True)
    frame().to_csv(folder / "data" / "d.csv", index=False)
    text = (f"name: {key}\ndata: {{path: data/d.csv}}\n{MODELS[key]}\n"
            f"estimation: {{integration: {{method: adaptive, points: {points}}}}}\n")
    return prepare(write_spec(folder, text, f"{key}.yaml")).model


RANDOM = {"fixed": (-0.5, 0.5), "sd": (0.3, 1.2), "residual": (0.5, 1.5), "loading": (0.5, 1.5),
          "dispersion": (0.5, 4.0), "zeroinfl": (-1.5, 0.5), "composite": (-1.0, 0.5)}


def random_free(model: CompiledModel, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    pt = model.partable
    values = pt.start_values
    for i, block in enumerate(pt.frame["block"]):
        if pt.frame.at[i, "free"]:
            values[i] = rng.uniform(*RANDOM[block])
    return pt.pack(values)


@pytest.mark.parametrize("key", sorted(MODELS))
def test_gradient_of_count_and_censored_models(tmp_path: Path, key: str) -> None:
    model = make_model(tmp_path, key, points=3 if "three" in key else 4)
    obj = QuadratureObjective(model, integration_plan(model))
    blocks = set(model.partable.frame["block"])
    assert blocks & {"dispersion", "zeroinfl", "residual", "composite"}
    for seed in (0, 1):
        free = random_free(model, seed)
        ad = obj.adapt(free)
        ll, grad = obj.frozen(free, ad)
        assert np.isfinite(ll)
        fd = np.zeros_like(free)
        for j in range(len(free)):
            h = 1e-6 * max(1.0, abs(free[j]))
            e = np.zeros_like(free)
            e[j] = h
            fd[j] = (obj.frozen(free + e, ad, False)[0] - obj.frozen(free - e, ad, False)[0]) / (2 * h)
        np.testing.assert_allclose(grad, fd, rtol=1e-5, atol=1e-5 * max(1.0, float(np.abs(fd).max())),
                                   err_msg=f"{key} seed {seed}: {model.partable.free_names()}")


@pytest.mark.parametrize("key", ["zinb2", "tobit_left_right"])
def test_glm_gradient_without_latent_variables(tmp_path: Path, key: str) -> None:
    """The GLM path (starting values, the LR test's null model) differentiates the family parameters too."""
    model = make_model(tmp_path, key)
    obj = QuadratureObjective(model, integration_plan(model))
    free = random_free(model, 4)
    _, grad = obj.glm(free)
    for j in range(len(free)):
        e = np.zeros_like(free)
        e[j] = 1e-6
        fd = (obj.glm(free + e)[0] - obj.glm(free - e)[0]) / 2e-6
        assert grad[j] == pytest.approx(fd, rel=1e-5, abs=1e-5), model.partable.free_names()[j]


def test_mixed_censored_and_zinb2_factor_fit_equals_an_independent_integral(tmp_path: Path) -> None:
    """Fitted mixed-response factor model: its log likelihood at the optimum equals a brute-force integral.

    Rows of grp 0 are a left-censored gaussian, rows of grp 1 a zero-inflated NB2, one factor per unit
    with loading 1 on grp 0 and a free loading on grp 1; the integral over the factor is a dense
    trapezoidal rule with scipy.stats densities.
    """
    from scipy import integrate, stats

    from mlmrun.estimate import estimate

    model = make_model(tmp_path, "mixed_censored_zinb2_factor", points=12)
    fit = estimate(model)
    assert fit.converged, fit.warnings
    value = {str(n): float(v) for n, v in zip(model.partable.names, fit.values, strict=True)}
    data = frame()
    eta = value["C(grp)[0]"] * (data["grp"] == 0) + value["C(grp)[1]"] * (data["grp"] == 1) + value["x"] * data["x"]
    load = np.where(data["grp"] == 0, 1.0, value["loading(f->1)"])
    sd = value["sd(f)@unit"]
    f = np.linspace(-12 * sd, 12 * sd, 6001)
    nu = eta.to_numpy()[:, None] + load[:, None] * f
    y, sigma, theta = data["ymix"].to_numpy()[:, None], value["sd(Residual:ymix[0])"], value["theta:ymix[1]"]
    pi = 1.0 / (1.0 + np.exp(-value["zi(Intercept):ymix[1]"]))
    cens = data["lmix"].to_numpy()[:, None] == 1
    gauss = np.where(cens, stats.norm.logcdf((y - nu) / sigma), stats.norm.logpdf(y, nu, sigma))
    mu = np.exp(nu)
    nb = stats.nbinom.pmf(y, theta, theta / (theta + mu))
    with np.errstate(divide="ignore"):  # grp-0 rows hold continuous values: pmf 0 there, and unused
        counts = np.log((1 - pi) * nb + pi * (y == 0))
    rows = np.where(data["grp"].to_numpy()[:, None] == 0, gauss, counts)
    units = np.zeros((data["id2"].max() + 1, len(f)))
    np.add.at(units, data["id2"].to_numpy(), rows)
    a = units + stats.norm.logpdf(f, 0.0, sd)
    top = a.max(axis=1, keepdims=True)
    brute = float((top[:, 0] + np.log(integrate.trapezoid(np.exp(a - top), f, axis=1))).sum())
    assert fit.loglik == pytest.approx(brute, abs=1e-5)

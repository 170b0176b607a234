"""The Fisher-identity gradient equals central differences of the frozen-adaptation log likelihood.

For every family and link, and for the structures issue 4 needs (correlated
random effects, three nested levels, loadings, B across levels, Gamma, mixed
responses with a heteroscedastic gaussian equation), at random parameter
values with the nodes adapted there and then held fixed.
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


def synthetic_frame(seed: int = 1, n3: int = 4, per3: int = 3, per2: int = 5) -> pd.DataFrame:
    """Rows within level-2 units within level-3 units, with a response column for every family."""
    rng = np.random.default_rng(seed)
    n2 = n3 * per3
    id2 = np.repeat(np.arange(n2), per2)
    id3 = id2 // per3
    n = len(id2)
    x = rng.normal(size=n)
    u = rng.normal(size=n2)[id2] + 0.5 * rng.normal(size=n3)[id3]
    eta = 0.3 + 0.8 * x + u
    p = 1 / (1 + np.exp(-eta))
    ntr = rng.integers(1, 7, size=n)
    cats = np.clip(np.round(eta + rng.logistic(size=n) * 0.7 + 1.5), 0, 3).astype(int)
    cats[:4] = [0, 1, 2, 3]
    grp = np.arange(n) % 2
    return pd.DataFrame({
        "id2": id2, "id3": id3, "x": x, "item": np.array(["a", "b", "c"])[np.arange(n) % 3],
        "w": rng.normal(size=n2)[id2], "ybin": (rng.uniform(size=n) < p).astype(int),
        "ysucc": rng.binomial(ntr, p), "ntr": ntr, "expo": rng.uniform(0.5, 2.0, size=n),
        "ycount": rng.poisson(np.exp(0.2 * eta)), "yg": eta + rng.normal(size=n),
        "ypos": rng.gamma(2.0, np.exp(0.3 * eta) / 2.0), "yord": cats, "grp": grp,
        "ymix": np.where(grp == 0, eta + rng.normal(size=n), (rng.uniform(size=n) < p).astype(float)),
        "vby": np.where(np.arange(n) % 4 < 2, "lo", "hi"),
    })


TWO_LEVEL = """
levels:
  - {name: unit, id: id2}
random:
  - {level: unit, terms: [1]}
"""

FAMILIES = {
    "binomial_logit": "{name: ybin, family: binomial, link: logit}",
    "binomial_probit": "{name: ybin, family: binomial, link: probit}",
    "binomial_cloglog": "{name: ybin, family: binomial, link: cloglog}",
    "binomial_trials_logit": "{name: ysucc, family: binomial, link: logit, trials: ntr}",
    "binomial_trials_probit": "{name: ysucc, family: binomial, link: probit, trials: ntr}",
    "binomial_trials_cloglog": "{name: ysucc, family: binomial, link: cloglog, trials: ntr}",
    "poisson_offset": "{name: ycount, family: poisson, link: log, offset: x}",
    "poisson_exposure": "{name: ycount, family: poisson, link: log, exposure: expo}",
    "gamma_log": "{name: ypos, family: gamma, link: log}",
    "gaussian_identity": "{name: yg, family: gaussian, link: identity}",
    "gaussian_log": "{name: ypos, family: gaussian, link: log}",
    "ordinal_logit": "{name: yord, family: ordinal, link: logit}",
    "ordinal_probit": "{name: yord, family: ordinal, link: probit}",
    "ordinal_cloglog": "{name: yord, family: ordinal, link: cloglog}",
}

STRUCTURES = {
    "correlated_slope": """
levels:
  - {name: unit, id: id2}
responses:
  - {name: ysucc, family: binomial, link: logit, trials: ntr}
fixed: "ysucc ~ x"
random:
  - {level: unit, terms: [1, x], covariance: unstructured}
""",
    "three_level": """
levels:
  - {name: unit, id: id2}
  - {name: top, id: id3}
responses:
  - {name: ycount, family: poisson, link: log}
fixed: "ycount ~ x"
random:
  - {level: unit, terms: [1]}
  - {level: top, terms: [1]}
""",
    "factor_B_Gamma": """
levels:
  - {name: unit, id: id2}
  - {name: top, id: id3}
responses:
  - {name: ybin, family: binomial, link: logit}
fixed: "ybin ~ 0 + C(item)"
latent:
  - {name: f, level: unit, loadings: {by: item, fix: {a: 1}}}
  - {name: g, level: unit, loadings: {by: item, only: [b, c], fix: {b: 1}}}
  - {name: d, level: top, variance: 1}
structural:
  B: {f: {d: free}}
  Gamma: {f: {w: free}}
covariance: {unit: unstructured}
""",
    "mixed_responses": """
levels:
  - {name: unit, id: id2}
responses:
  - {name: ymix, family: gaussian, link: identity, select: {grp: [0]}, variance_by: vby}
  - {name: ymix, family: binomial, link: probit, select: {grp: [1]}}
fixed: "ymix ~ x + C(grp)"
latent:
  - {name: f, level: unit, loadings: {by: grp, fix: {"0": 1}}}
""",
}


def make_model(folder: Path, body: str, name: str, points: int = 4, method: str = "adaptive") -> CompiledModel:
    """Compile a spec over the synthetic data written into `folder`."""
    data = folder / "data"
    data.mkdir(exist_ok=True)
    if not (data / "synthetic.csv").exists():
        synthetic_frame().to_csv(data / "synthetic.csv", index=False)
    text = (f"name: {name}\ndata: {{path: data/synthetic.csv}}\n{body}\n"
            f"estimation: {{exact: false, integration: {{method: {method}, points: {points}}}}}\n")
    return prepare(write_spec(folder, text, f"{name}.yaml")).model


def family_body(key: str) -> str:
    resp = FAMILIES[key]
    name = resp.split("name: ")[1].split(",")[0]
    fixed = f"{name} ~ x" if not key.startswith("ordinal") else f"{name} ~ x"
    return f"responses:\n  - {resp}\nfixed: \"{fixed}\"\n{TWO_LEVEL}"


def random_free(model: CompiledModel, seed: int) -> np.ndarray:
    """Valid random parameter values, packed into the free vector."""
    rng = np.random.default_rng(seed)
    pt = model.partable
    values = pt.start_values
    frame = pt.frame
    for i, block in enumerate(frame["block"]):
        if frame.at[i, "free"]:
            values[i] = {"fixed": rng.normal(0, 0.5), "sd": rng.uniform(0.3, 1.2), "corr": rng.uniform(-0.5, 0.5),
                         "residual": rng.uniform(0.5, 1.5), "shape": rng.uniform(1.0, 3.0),
                         "loading": rng.uniform(0.5, 1.5), "B": rng.uniform(0.3, 0.8), "Gamma": rng.normal(0, 0.5),
                         "threshold": 0.0}[block]
    cuts = pt.rows_of("threshold")
    if len(cuts):
        values[cuts] = np.sort(rng.normal(0, 1, len(cuts))) + np.arange(len(cuts))
    return pt.pack(values)


def check_gradient(model: CompiledModel, seeds: tuple[int, ...] = (0, 1, 2)) -> None:
    obj = QuadratureObjective(model, integration_plan(model))
    for seed in seeds:
        free = random_free(model, seed)
        ad = obj.adapt(free)
        _, grad = obj.frozen(free, ad)
        fd = np.zeros_like(free)
        for j in range(len(free)):
            h = 1e-6 * max(1.0, abs(free[j]))
            e = np.zeros_like(free)
            e[j] = h
            fd[j] = (obj.frozen(free + e, ad, False)[0] - obj.frozen(free - e, ad, False)[0]) / (2 * h)
        np.testing.assert_allclose(grad, fd, rtol=1e-5, atol=1e-5 * max(1.0, float(np.abs(fd).max())),
                                   err_msg=f"{model.spec.name} seed {seed}: {model.partable.free_names()}")


@pytest.mark.parametrize("key", sorted(FAMILIES))
def test_gradient_every_family_and_link(tmp_path: Path, key: str) -> None:
    check_gradient(make_model(tmp_path, family_body(key), key))


@pytest.mark.parametrize("key", sorted(STRUCTURES))
def test_gradient_latent_structures(tmp_path: Path, key: str) -> None:
    check_gradient(make_model(tmp_path, STRUCTURES[key], key, points=3))


def test_gradient_plain_gauss_hermite(tmp_path: Path) -> None:
    check_gradient(make_model(tmp_path, STRUCTURES["three_level"], "ghq", points=5, method="ghq"), seeds=(3,))

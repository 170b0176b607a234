"""Linear gaussian models: the Laplace approximation is exact, so the engine equals the exact gaussian engine.

At random parameter values (not an optimum), the Laplace engine's log
likelihood equals likelihood/gaussian's exact marginal log likelihood, for
the shipped crossed specs (penicillin: plate x sample; pig_crossed: pig x
week with a fixed slope; kypssim: students crossed with middle and high
schools, loadings by wave) and a partially crossed random-slope model.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mlmrun.likelihood.gaussian.deviance import exact_loglik
from mlmrun.likelihood.laplace.objective import LaplaceEngine
from mlmrun.pipeline import prepare
from tests.laplace.laplace_engine_models import compile_spec, random_values

SPECS = Path(__file__).resolve().parents[2] / "specs"


@pytest.mark.parametrize("name", ["penicillin", "pig_crossed", "kypssim"])
def test_crossed_gaussian_specs_equal_the_exact_likelihood(name: str) -> None:
    model = prepare(SPECS / f"{name}.yaml").model
    engine = LaplaceEngine(model)
    for seed in (0, 1):
        values = random_values(model, seed)
        assert engine.loglik(model.partable.pack(values)) == pytest.approx(exact_loglik(model, values), abs=1e-8,
                                                                           rel=1e-12)


def test_partially_crossed_random_slopes_equal_the_exact_likelihood(tmp_path: Path) -> None:
    model = compile_spec(tmp_path, """
levels:
  - {name: person, id: person, crossed: true}
  - {name: item, id: item, crossed: true}
responses:
  - {name: yg, family: gaussian}
fixed: "yg ~ x + w"
random:
  - {level: person, terms: [1, w], covariance: unstructured}
  - {level: item, terms: [1, x], covariance: unstructured}
""", "slopes")
    engine = LaplaceEngine(model)
    for seed in (0, 1, 2):
        values = random_values(model, seed)
        assert engine.loglik(model.partable.pack(values)) == pytest.approx(exact_loglik(model, values), abs=1e-8)

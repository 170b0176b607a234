"""The Laplace engine's value, modes, conditional covariances and gradient on crossed designs.

Value, modes and the diagonal blocks of H^-1 against the dense computation of
tests/laplace/laplace_engine_models.py (scipy's Newton mode, slogdet, a dense
inverse) for every family on a partially crossed persons x items design; the
gradient against central differences of the engine's own value.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mlmrun.compile.matrices import model_matrices
from mlmrun.likelihood.laplace import schur as schur_module
from mlmrun.likelihood.laplace.objective import LaplaceEngine
from tests.laplace.laplace_engine_models import (
    central_gradient,
    compile_spec,
    dense_design,
    dense_laplace,
    random_values,
)

CROSSED = """
levels:
  - {name: person, id: person, crossed: true}
  - {name: item, id: item, crossed: true}
"""
INTERCEPTS = """
random:
  - {level: person, terms: [1]}
  - {level: item, terms: [1]}
"""

MODELS = {
    "binomial_random_slope": CROSSED + """
responses:
  - {name: ybin, family: binomial, link: logit}
fixed: "ybin ~ x + w"
random:
  - {level: person, terms: [1, w], covariance: unstructured}
  - {level: item, terms: [1]}
""",
    "binomial_trials_probit": CROSSED + """
responses:
  - {name: ysucc, family: binomial, link: probit, trials: ntr}
fixed: "ysucc ~ x"
""" + INTERCEPTS,
    "binomial_cloglog": CROSSED + """
responses:
  - {name: ybin, family: binomial, link: cloglog}
fixed: "ybin ~ x"
""" + INTERCEPTS,
    "poisson_offset": CROSSED + """
responses:
  - {name: ycount, family: poisson, link: log, offset: x}
fixed: "ycount ~ w"
""" + INTERCEPTS,
    "poisson_exposure": CROSSED + """
responses:
  - {name: ycount, family: poisson, link: log, exposure: expo}
fixed: "ycount ~ x"
""" + INTERCEPTS,
    "ordinal_logit": CROSSED + """
responses:
  - {name: yord, family: ordinal, link: logit}
fixed: "yord ~ x"
""" + INTERCEPTS,
    "ordinal_probit": CROSSED + """
responses:
  - {name: yord, family: ordinal, link: probit}
fixed: "yord ~ x"
""" + INTERCEPTS,
    "gaussian_identity": CROSSED + """
responses:
  - {name: yg, family: gaussian}
fixed: "yg ~ x"
""" + INTERCEPTS,
    "gaussian_log": CROSSED + """
responses:
  - {name: ypos, family: gaussian, link: log}
fixed: "ypos ~ x"
""" + INTERCEPTS,
    "gamma_log": CROSSED + """
responses:
  - {name: ypos, family: gamma, link: log}
fixed: "ypos ~ x"
""" + INTERCEPTS,
    "mixed_responses": CROSSED + """
responses:
  - {name: ymix, family: gaussian, link: identity, select: {grp: [0]}}
  - {name: ymix, family: binomial, link: logit, select: {grp: [1]}}
fixed: "ymix ~ x + C(grp)"
""" + INTERCEPTS,
    "three_crossed_slopes_on_items": """
levels:
  - {name: person, id: person, crossed: true}
  - {name: item, id: item, crossed: true}
  - {name: rater, id: rater, crossed: true}
responses:
  - {name: ycount, family: poisson, link: log}
fixed: "ycount ~ x"
random:
  - {level: person, terms: [1]}
  - {level: item, terms: [1, x], covariance: unstructured}
  - {level: rater, terms: [1]}
""",
    "loading_2pl": CROSSED + """
responses:
  - {name: ybin, family: binomial, link: logit}
fixed: "ybin ~ x"
latent:
  - {name: ability, level: person, loadings: {by: item, fix: {a: 1}}}
random:
  - {level: item, terms: [1]}
""",
}


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("laplace_dense")


@pytest.mark.parametrize("key", sorted(MODELS))
def test_value_modes_and_covariances_equal_the_dense_laplace(folder: Path, key: str) -> None:
    model = compile_spec(folder, MODELS[key], key)
    engine = LaplaceEngine(model)
    for seed in (0, 1):
        values = random_values(model, seed)
        free = model.partable.pack(values)
        want, u, V = dense_laplace(model, values)
        assert engine.loglik(free) == pytest.approx(want, abs=1e-8, rel=1e-10)
        _, _, blocks = dense_design(model, values)
        posts = {p.level: p for p in engine.posterior(free)}
        for (lvl, start, k), modes in zip(blocks, engine.modes(free), strict=True):
            n_units = model.levels[lvl].n_units
            np.testing.assert_allclose(modes.ravel(), u[start:start + n_units * k], atol=1e-7)
            cov = np.array([V[start + c * k:start + (c + 1) * k, start + c * k:start + (c + 1) * k]
                            for c in range(n_units)])
            np.testing.assert_allclose(posts[lvl].cov_u, cov, atol=1e-9)
            L = model_matrices(model, values).L[lvl]
            np.testing.assert_allclose(posts[lvl].mode, modes @ L.T, atol=1e-12)
            np.testing.assert_allclose(posts[lvl].sd, np.sqrt(np.einsum("qd,cde,qe->cq", L, cov, L)), atol=1e-9)


@pytest.mark.parametrize("key", sorted(MODELS))
def test_gradient_equals_central_differences(folder: Path, key: str) -> None:
    model = compile_spec(folder, MODELS[key], key)
    engine = LaplaceEngine(model)
    for seed in (2, 3):
        free = model.partable.pack(random_values(model, seed))
        value, grad = engine.loglik_gradient(free)
        assert value == pytest.approx(engine.loglik(free), abs=1e-10)
        fd = central_gradient(engine.loglik, free)
        np.testing.assert_allclose(grad, fd, rtol=1e-5, atol=1e-5 * max(1.0, float(np.abs(fd).max())),
                                   err_msg=f"{key} seed {seed}: {model.partable.free_names()}")


def test_crossed_models_have_no_unit_scores(folder: Path) -> None:
    model = compile_spec(folder, MODELS["poisson_offset"], "scores_refused")
    engine = LaplaceEngine(model)
    with pytest.raises(ValueError, match="nested"):
        engine.unit_scores(model.partable.pack(random_values(model, 0)))


@pytest.mark.parametrize("key", ["binomial_random_slope", "three_crossed_slopes_on_items"])
def test_blocked_elimination_agrees_with_the_schur_complement(folder: Path, key: str,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Crossed designs too large for the Schur complement go to likelihood/sparse's blocked elimination."""
    model = compile_spec(folder, MODELS[key], key)
    free = model.partable.pack(random_values(model, 4))
    schur = LaplaceEngine(model)
    assert schur.structure.schur is not None
    monkeypatch.setattr(schur_module, "REMAINDER_MAX", 0)
    blocked = LaplaceEngine(model)
    assert blocked.structure.schur is None
    v1, g1 = schur.loglik_gradient(free)
    v2, g2 = blocked.loglik_gradient(free)
    assert v1 == pytest.approx(v2, abs=1e-9)
    np.testing.assert_allclose(g1, g2, atol=1e-8)
    for p1, p2 in zip(schur.posterior(free), blocked.posterior(free), strict=True):
        np.testing.assert_allclose(p1.sd, p2.sd, atol=1e-10)


@pytest.mark.parametrize("key", sorted(MODELS))
def test_gradient_equals_extrapolated_differences_to_1e7(folder: Path, key: str) -> None:
    """Richardson-extrapolated central differences (h = 1e-3, 5e-4; error O(h^4)) pin the gradient far below
    the plain differences' 1e-5: an approximate mode-shift or curvature term would show here."""
    model = compile_spec(folder, MODELS[key], key)
    engine = LaplaceEngine(model)
    free = model.partable.pack(random_values(model, 5))
    _, grad = engine.loglik_gradient(free)
    coarse, fine = central_gradient(engine.loglik, free, 1e-3), central_gradient(engine.loglik, free, 5e-4)
    extrapolated = (4 * fine - coarse) / 3
    np.testing.assert_allclose(grad, extrapolated, rtol=0, atol=1e-7 * max(1.0, float(np.abs(grad).max())))

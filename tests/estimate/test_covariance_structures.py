"""Covariance structures agree with their definitions as constrained unstructured blocks.

exchangeable = one shared SD and one shared correlation; identity = one shared SD and
no correlation. Each is fitted directly and as `unstructured` with the same equalities
written in `constraints:`; both must reach the same maximum.
"""

from __future__ import annotations

import pytest

from mlmrun.estimate import estimate
from mlmrun.pipeline import prepare
from tests.conftest import write_spec
from tests.reference.compare import load_reference

PRODUCTIVITY = """
name: prod
data: {path: data/productivity.csv}
levels:
  - {name: state, id: state}
  - {name: region, id: region}
responses:
  - {name: gsp, family: gaussian}
fixed: "gsp ~ private + emp + hwy + water + other + unemp"
random:
  - {level: region, terms: [hwy, unemp, water], covariance: COV}
  - {level: region, terms: [1]}
  - {level: state, terms: [1]}
"""
SDS = '["sd(hwy)@region", "sd(unemp)@region", "sd(water)@region"]'
CORRS = '["corr(unemp,hwy)@region", "corr(water,hwy)@region", "corr(water,unemp)@region"]'
PIG = """
name: pig
data: {path: data/pig.csv}
levels:
  - {name: pig, id: id}
responses:
  - {name: weight, family: gaussian}
fixed: "weight ~ week"
random:
  - {level: pig, terms: [1, week], covariance: COV}
"""


def _fit(spec_dir, text, name):
    return estimate(prepare(write_spec(spec_dir, text, name)).model)


def test_exchangeable_equals_unstructured_with_equal_sds(spec_dir):
    """Two terms: exchangeable is one shared SD and a free correlation (an interior optimum here)."""
    direct = _fit(spec_dir, PIG.replace("COV", "exchangeable"), "a.yaml")
    constrained = _fit(spec_dir, PIG.replace("COV", "unstructured")
                       + 'constraints: {equal: [["sd(_cons)@pig", "sd(week)@pig"]]}\n', "b.yaml")
    assert direct.converged and constrained.converged
    assert direct.loglik == pytest.approx(constrained.loglik, abs=1e-6)
    pt = direct.model.partable
    assert direct.values[pt.index("sd(_cons)@pig")] == direct.values[pt.index("sd(week)@pig")]
    assert -1 < direct.values[pt.index("corr(week,_cons)@pig")] < 1
    assert direct.loglik < load_reference("pig__rs_un_ml", "loglik")  # nested in the unstructured model (Stata manual)


def test_exchangeable_correlation_stays_positive_definite(spec_dir):
    """Three terms: the shared correlation is bounded below by -1/(k-1), so Psi stays PSD at the optimum."""
    fit = _fit(spec_dir, PRODUCTIVITY.replace("COV", "exchangeable"), "a.yaml")
    rho = fit.values[fit.model.partable.index("corr(water,hwy)@region")]
    assert rho >= -0.5 - 1e-12
    assert fit.loglik > load_reference("productivity__nested_ri_ml", "results", "loglik")  # nests the intercept-only model (lme4)


def test_identity_equals_unstructured_with_equal_sds_and_zero_correlations(spec_dir):
    direct = _fit(spec_dir, PRODUCTIVITY.replace("COV", "identity"), "a.yaml")
    fix = ", ".join(f'"{c}": 0' for c in CORRS.strip("[]").replace('"', "").split(", "))
    constrained = _fit(spec_dir, PRODUCTIVITY.replace("COV", "unstructured")
                       + f"constraints: {{equal: [{SDS}], fix: {{{fix}}}}}\n", "b.yaml")
    assert direct.loglik == pytest.approx(constrained.loglik, abs=1e-6)
    assert direct.loglik > load_reference("productivity__nested_ri_ml", "results", "loglik")  # nests the intercept-only model (lme4)

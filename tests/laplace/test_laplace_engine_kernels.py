"""The Laplace engine's closed-form kernels equal the families' log densities and derivatives to third order."""

from __future__ import annotations

import numpy as np
import pytest

from mlmrun.families import get_family
from mlmrun.likelihood.laplace.kernels import kernel_for

NU = np.concatenate([np.linspace(-40, 40, 81), np.random.default_rng(0).normal(0, 3, 200)])


@pytest.mark.parametrize(("name", "link"), [("binomial", "logit"), ("poisson", "log"), ("gaussian", "identity")])
def test_kernel_equals_the_family(name: str, link: str) -> None:
    rng = np.random.default_rng(1)
    fam = get_family(name, link)
    n = len(NU)
    trials = rng.integers(1, 6, size=n).astype(float) if name == "binomial" else None
    if name == "binomial":
        y = rng.binomial(trials.astype(int), 0.4).astype(float)
    else:
        y = rng.poisson(3.0, size=n).astype(float) if name == "poisson" else rng.normal(size=n)
    params = rng.uniform(0.5, 2.0, size=n) if name == "gaussian" else None
    nu = np.clip(NU, -20, 20) if name == "poisson" else NU
    ll, d1, d2, d3 = kernel_for(fam, y, trials)(nu, params, True)
    want = fam.loglik_derivs(y, nu, params, trials, 2)
    for got, ref in zip((ll, d1, d2), want, strict=True):
        np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(d3, fam.curvature_derivs(y, nu, params, trials)[0], rtol=1e-10, atol=1e-12)


def test_binary_logit_kernel_equals_the_family() -> None:
    fam = get_family("binomial", "logit")
    y = (np.random.default_rng(2).uniform(size=len(NU)) < 0.5).astype(float)
    ll, d1, d2, d3 = kernel_for(fam, y, None)(NU, None, True)
    for got, ref in zip((ll, d1, d2), fam.loglik_derivs(y, NU, None, None, 2), strict=True):
        np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(d3, fam.curvature_derivs(y, NU, None, None)[0], rtol=1e-10, atol=1e-12)

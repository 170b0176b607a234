"""Link functions: inverses, derivatives, and the log-CDF toolkit of the CDF links."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from mlmrun.families import LINKS, CdfLink, get_link

STEP = 1e-5
NU = np.linspace(-4.0, 4.0, 17)
CDF_LINKS = ["logit", "probit", "cloglog"]
REFERENCE = {"logit": stats.logistic, "probit": stats.norm, "cloglog": stats.gumbel_l}


def central_diff(f, x):
    return (f(x + STEP) - f(x - STEP)) / (2.0 * STEP)


@pytest.mark.parametrize("name", list(LINKS))
def test_inverse_and_its_derivatives(name):
    link = get_link(name)
    nu = NU if name != "log" else NU / 2.0
    round_trip = nu[nu <= 2.5]  # beyond, cloglog's mean rounds to 1
    np.testing.assert_allclose(link.link(link.inverse(round_trip)), round_trip, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(central_diff(link.inverse, nu), link.d_inverse(nu), rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(central_diff(link.d_inverse, nu), link.d2_inverse(nu), rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("name", CDF_LINKS)
def test_cdf_link_matches_scipy_distribution(name):
    link = get_link(name)
    assert isinstance(link, CdfLink)
    dist = REFERENCE[name]
    x = np.linspace(-5.0, 2.0, 29)
    np.testing.assert_allclose(link.inverse(x), dist.cdf(x), rtol=1e-12)
    np.testing.assert_allclose(link.log_cdf(x), dist.logcdf(x), rtol=1e-10)
    np.testing.assert_allclose(link.log_sf(x), dist.logsf(x), rtol=1e-10)
    np.testing.assert_allclose(link.log_pdf(x), dist.logpdf(x), rtol=1e-10)


@pytest.mark.parametrize("name", CDF_LINKS)
def test_log_cdf_toolkit_derivatives(name):
    link = get_link(name)
    x = np.linspace(-30.0, 3.0, 23)
    pairs = [
        (link.log_cdf, link.dlog_cdf),
        (link.dlog_cdf, link.d2log_cdf),
        (link.log_sf, link.dlog_sf),
        (link.dlog_sf, link.d2log_sf),
        (link.log_pdf, link.dlog_pdf),
    ]
    for f, df in pairs:
        np.testing.assert_allclose(central_diff(f, x), df(x), rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("name", CDF_LINKS)
def test_log_cdf_finite_far_in_tails(name):
    link = get_link(name)
    x = np.array([-1000.0, -40.0, 40.0])
    assert np.all(np.isfinite(link.log_cdf(x)))
    assert np.all(np.isfinite(link.dlog_cdf(x))) and np.all(np.isfinite(link.d2log_cdf(x)))
    np.testing.assert_allclose(get_link("cloglog").log_cdf(-1000.0), -1000.0)


@pytest.mark.parametrize("name", CDF_LINKS)
def test_log_interval_partials(name):
    link = get_link(name)
    rng = np.random.default_rng(3)
    a = rng.normal(0.0, 3.0, 40)
    b = a + rng.uniform(0.05, 3.0, 40)
    a[:5], b[-5:] = -np.inf, np.inf
    res = link.log_interval(a, b)
    assert np.all(np.isfinite(res.ll)) and np.all(res.ll <= 0.0)
    moderate = (a > -4.0) & (b < 2.0)  # where the naive difference of CDFs is still accurate
    cdf = REFERENCE[name].cdf
    np.testing.assert_allclose(res.ll[moderate], np.log(cdf(b[moderate]) - cdf(a[moderate])), rtol=1e-8)
    np.testing.assert_allclose(
        central_diff(lambda t: link.log_interval(a + t, b).ll, 0.0), res.d_lower, rtol=1e-6, atol=1e-8
    )
    np.testing.assert_allclose(
        central_diff(lambda t: link.log_interval(a, b + t).ll, 0.0), res.d_upper, rtol=1e-6, atol=1e-8
    )
    np.testing.assert_allclose(res.d_shift, res.d_lower + res.d_upper, rtol=1e-9, atol=1e-12)
    shift = central_diff(lambda t: link.log_interval(a + t, b + t).d_shift, 0.0)
    np.testing.assert_allclose(shift, res.d2_shift, rtol=1e-6, atol=1e-9)

"""curvature_derivs and cross_derivs: the third derivative in nu, and the curvature's and the slope's derivatives
in the family's own parameters (what an exact Laplace gradient needs beyond loglik_derivs and param_score).

All are checked against Richardson-extrapolated central differences of loglik_derivs' d2 and d1 (an
independent computation: the second derivatives are themselves checked against differences of
the log density in test_derivatives.py), for every family x link x parameter setting, and at
extreme but valid values (nu = +-30, large counts, the first and last ordinal categories,
censored rows at both bounds) where the results must also stay finite.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest

from mlmrun.families import ALLOWED_LINKS, FAMILIES, Family, get_family, get_link
from mlmrun.families.composite import CompositeGaussian, CompositePoisson
from mlmrun.families.ordinal_rows import OrdinalRows

RTOL = 1e-6
ATOL = 1e-8
REFUSED = {"multinomial": "choice set", "ranking": "choice set"}  # rows of a choice set are coupled
CDF_LINKS = ("logit", "probit", "cloglog")


@dataclass(frozen=True)
class Setting:
    """A family at data and parameters; ``columns`` says how parameter column j is perturbed."""

    family: Family
    y: np.ndarray
    nu: np.ndarray
    params: np.ndarray | None = None
    trials: np.ndarray | None = None
    columns: str = "none"  # none | rows (a (n,) per-row parameter) | vector (shared thresholds) | table (n, P)
    data_columns: tuple[int, ...] = ()  # columns that are data (censoring bounds): their derivative is 0
    step: float = 1e-3


def richardson(f: Callable[[float], np.ndarray], step: float) -> np.ndarray:
    """d f / d t at 0 from central differences at h and h/2, extrapolated (error O(h^4))."""
    def central(h: float) -> np.ndarray:
        return (f(h) - f(-h)) / (2.0 * h)
    return (4.0 * central(step / 2.0) - central(step)) / 3.0


def d2_of(s: Setting, nu: np.ndarray, params: np.ndarray | None) -> np.ndarray:
    return s.family.loglik_derivs(s.y, nu, params, s.trials, order=2)[2]


def d1_of(s: Setting, params: np.ndarray | None) -> np.ndarray:
    return s.family.loglik_derivs(s.y, s.nu, params, s.trials, order=1)[1]


def perturbed(s: Setting, j: int, h: float) -> np.ndarray:
    p = np.array(s.params, dtype=float)
    if s.columns in ("rows",):
        p = p + h
    elif s.columns == "vector":
        p[j] += h
    else:
        p[:, j] += h
    return p


def n_columns(s: Setting) -> int:
    if s.columns == "none":
        return 0
    if s.columns == "rows":
        return 1
    return np.asarray(s.params).shape[-1] if s.columns == "table" else np.asarray(s.params).size


def assert_close(numeric: np.ndarray, analytic: np.ndarray, what: str) -> None:
    assert np.all(np.isfinite(analytic)), f"{what}: non-finite values"
    err = np.abs(numeric - analytic)
    worst = np.unravel_index(np.argmax(err - RTOL * np.abs(analytic)), err.shape)
    assert np.allclose(numeric, analytic, rtol=RTOL, atol=ATOL), (
        f"{what}: max error {err.max():.3g}; worst at {worst}: {numeric[worst]!r} vs {analytic[worst]!r}")


def check(s: Setting) -> None:
    third, d2p = s.family.curvature_derivs(s.y, s.nu, s.params, s.trials)
    cross = s.family.cross_derivs(s.y, s.nu, s.params, s.trials)
    assert third.shape == s.nu.shape
    assert_close(richardson(lambda h: d2_of(s, s.nu + h, s.params), s.step), third, "d3")
    width = n_columns(s)
    if width == 0:
        assert d2p is None and cross is None
        return
    assert d2p is not None and d2p.shape == s.nu.shape + (width,)
    assert cross is not None and cross.shape == d2p.shape
    assert d2p.shape == s.family.param_score(s.y, s.nu, s.params, s.trials).shape
    for j in range(width):
        if j in s.data_columns:
            assert np.all(d2p[..., j] == 0.0) and np.all(cross[..., j] == 0.0)
            continue
        numeric = richardson(lambda h, j=j: d2_of(s, s.nu, perturbed(s, j, h)), s.step)
        assert_close(numeric, d2p[..., j], f"d d2/d param {j}")
        numeric = richardson(lambda h, j=j: d1_of(s, perturbed(s, j, h)), s.step)
        assert_close(numeric, cross[..., j], f"d d1/d param {j}")


def rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


N = 12
NODES = (N, 2, 3)


def gaussian(link: str, seed: int) -> Setting:
    r = rng(seed)
    nu = r.normal(0.0, 0.7, NODES)
    return Setting(get_family("gaussian", link), r.normal(1.0, 1.5, N), nu, r.uniform(0.3, 3.0, N), columns="rows")


def binomial(link: str, seed: int, trials: bool) -> Setting:
    r = rng(seed)
    nu = r.uniform(-4.0, 4.0, NODES)
    if trials:
        t = r.integers(1, 30, N).astype(float)
        y = r.binomial(t.astype(int), 0.4).astype(float)
        y[0], y[1] = 0.0, t[1]
        return Setting(get_family("binomial", link), y, nu, trials=t)
    return Setting(get_family("binomial", link), np.tile([0.0, 1.0], N // 2), nu)


def ordinal(link: str, seed: int, kappa: np.ndarray) -> Setting:
    r = rng(seed)
    y = np.arange(N, dtype=float) % (kappa.size + 1)
    return Setting(get_family("ordinal", link), y, r.normal(0.0, 1.5, NODES), kappa, columns="vector")


def ordinal_rows(link: str, seed: int) -> Setting:
    r = rng(seed)
    cuts = np.sort(r.normal(0.0, 1.5, (N, 3)), axis=1) + np.array([0.0, 0.3, 0.6])
    params = np.column_stack([cuts, np.exp(r.normal(0.0, 0.4, N))])
    y = np.arange(N, dtype=float) % 4
    return Setting(OrdinalRows(link), y, r.normal(0.0, 1.0, NODES), params, columns="table")


def counts(name: str, seed: int, size: tuple[float, float] = (0.5, 6.0)) -> Setting:
    r = rng(seed)
    y = r.negative_binomial(2, 0.3, N).astype(float)
    y[:3] = 0.0
    cols = [] if name == "zip" else [r.uniform(*size, N)]
    if name.startswith("zi"):
        cols.append(r.normal(-1.0, 1.0, N))
    nu = r.normal(1.0, 0.7, NODES)
    return Setting(get_family(name), y, nu, np.column_stack(cols), columns="table")


def censored(seed: int) -> Setting:
    r = rng(seed)
    y = r.normal(1.0, 1.5, N)
    kind = np.arange(N) % 4  # exact, left-censored, right-censored, interval
    lo = np.where(kind == 1, -np.inf, y)
    hi = np.where(kind == 2, np.inf, np.where(kind == 3, y + 1.0, y))
    params = np.column_stack([r.uniform(0.5, 2.0, N), lo, hi])
    return Setting(get_family("censored_gaussian"), y, r.normal(1.0, 1.0, NODES), params, columns="table",
                   data_columns=(1, 2))


def composite_poisson(terms: tuple[str, ...], seed: int) -> Setting:
    r = rng(seed)
    y = r.poisson(3.0, N).astype(float)
    y[:2] = 0.0
    params = r.normal(0.0, 0.8, (N, len(terms)))
    return Setting(CompositePoisson("log", terms), y, r.normal(1.0, 0.6, NODES), params, columns="table")


def composite_gaussian(link: str, terms: tuple[str, ...], seed: int) -> Setting:
    r = rng(seed)
    params = np.column_stack([r.uniform(0.5, 2.0, N)] + [r.normal(0.0, 0.8, N) for _ in terms])
    return Setting(CompositeGaussian(link, terms), r.normal(1.0, 1.5, N), r.normal(0.0, 0.7, NODES), params,
                   columns="table")


def gamma(seed: int) -> Setting:
    r = rng(seed)
    return Setting(get_family("gamma"), r.gamma(2.0, 1.0, N), r.normal(0.0, 1.0, NODES), r.uniform(0.3, 8.0, N),
                   columns="rows")


TABLE: dict[str, Callable[[], Setting]] = {}
for _seed in (0, 1):
    for _link in ALLOWED_LINKS["gaussian"]:
        TABLE[f"gaussian-{_link}-{_seed}"] = lambda link=_link, seed=_seed: gaussian(link, seed)
    for _link in ALLOWED_LINKS["binomial"]:
        TABLE[f"binomial-{_link}-trials-{_seed}"] = lambda link=_link, seed=_seed: binomial(link, seed, True)
        TABLE[f"bernoulli-{_link}-{_seed}"] = lambda link=_link, seed=_seed: binomial(link, seed, False)
    TABLE[f"poisson-{_seed}"] = lambda seed=_seed: Setting(
        get_family("poisson"), rng(seed).poisson(4.0, N).astype(float), rng(seed + 9).normal(1.0, 0.8, NODES))
    TABLE[f"gamma-{_seed}"] = lambda seed=_seed: gamma(seed)
    for _link in ALLOWED_LINKS["ordinal"]:
        TABLE[f"ordinal-{_link}-3cuts-{_seed}"] = (
            lambda link=_link, seed=_seed: ordinal(link, seed, np.array([-1.0, 0.2, 1.5])))
        TABLE[f"ordinal-{_link}-binary-{_seed}"] = lambda link=_link, seed=_seed: ordinal(link, seed, np.array([0.4]))
        TABLE[f"ordinal-{_link}-close-cuts-{_seed}"] = (
            lambda link=_link, seed=_seed: ordinal(link, seed, np.array([-2.0, -1.9, 0.0, 0.05, 3.0])))
        TABLE[f"ordinal-rows-{_link}-{_seed}"] = lambda link=_link, seed=_seed: ordinal_rows(link, seed)
    for _name in ("nbinom2", "nbinom1", "zip", "zinb2", "zinb1"):
        TABLE[f"{_name}-{_seed}"] = lambda name=_name, seed=_seed: counts(name, seed)
    for _name in ("nbinom2", "nbinom1", "zinb2", "zinb1"):
        TABLE[f"{_name}-small-size-{_seed}"] = lambda name=_name, seed=_seed: counts(name, seed, (0.05, 0.3))
    TABLE[f"censored-{_seed}"] = lambda seed=_seed: censored(seed)
    for _terms in (("log",), ("logit",), ("log", "logit")):
        TABLE[f"composite_poisson-{'+'.join(_terms)}-{_seed}"] = (
            lambda terms=_terms, seed=_seed: composite_poisson(terms, seed))
    for _link in ALLOWED_LINKS["composite_gaussian"]:
        for _terms in (("identity",), ("log", "logit")):
            TABLE[f"composite_gaussian-{_link}-{'+'.join(_terms)}-{_seed}"] = (
                lambda link=_link, terms=_terms, seed=_seed: composite_gaussian(link, terms, seed))


@pytest.mark.parametrize("name", list(TABLE))
def test_curvature_derivatives_match_differences_of_d2(name: str) -> None:
    check(TABLE[name]())


@pytest.mark.parametrize("name", CDF_LINKS)
def test_interval_curvature_and_slopes_match_differences_of_the_interval_derivatives(name: str) -> None:
    """Per bound and under a shift, including one-sided intervals, intervals deep in one tail and narrow ones."""
    link = get_link(name)
    r = rng(5)
    a = np.concatenate([r.normal(0.0, 3.0, 30), [-31.0, 29.5, 4.0, -6.0, -np.inf, -np.inf, 3.0, -40.0]])
    b = np.concatenate([a[:30] + r.uniform(0.05, 3.0, 30), [-29.5, 31.0, 4.02, -5.99, -30.0, 25.0, np.inf, np.inf]])
    res = link.interval_curvature(a, b)
    np.testing.assert_allclose(res.d2_shift, link.log_interval(a, b).d2_shift, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(res.d3_shift, res.d2_lower + res.d2_upper, rtol=1e-10, atol=1e-14)

    def d2(da: float, db: float) -> np.ndarray:
        return link.log_interval(a + da, b + db).d2_shift

    finite_a, finite_b = np.isfinite(a), np.isfinite(b)
    assert_close(richardson(lambda h: d2(h, h), 1e-3), res.d3_shift, "d3_shift")
    assert_close(richardson(lambda h: d2(h, 0.0), 1e-3)[finite_a], res.d2_lower[finite_a], "d2_lower")
    assert_close(richardson(lambda h: d2(0.0, h), 1e-3)[finite_b], res.d2_upper[finite_b], "d2_upper")
    assert np.all(res.d2_lower[~finite_a] == 0.0) and np.all(res.d2_upper[~finite_b] == 0.0)

    def d1(da: float, db: float) -> np.ndarray:
        return link.log_interval(a + da, b + db).d_shift

    slope_a, slope_b = link.interval_slopes(a, b)
    np.testing.assert_allclose(slope_a + slope_b, res.d2_shift, rtol=1e-10, atol=1e-14)
    assert_close(richardson(lambda h: d1(h, 0.0), 1e-3)[finite_a], slope_a[finite_a], "d_shift/da")
    assert_close(richardson(lambda h: d1(0.0, h), 1e-3)[finite_b], slope_b[finite_b], "d_shift/db")
    assert np.all(slope_a[~finite_a] == 0.0) and np.all(slope_b[~finite_b] == 0.0)


@pytest.mark.parametrize("name", ["identity", "log", *CDF_LINKS])
def test_third_derivative_of_the_inverse_link(name: str) -> None:
    link = get_link(name)
    x = np.linspace(-6.0, 3.0, 19)
    assert_close(richardson(lambda h: link.d2_inverse(x + h), 1e-3), link.d3_inverse(x), "d3_inverse")


# --- extreme but valid values: finite, and still equal to differences of d2 ---

TAIL = np.array([-30.0, -12.0, 0.0, 12.0, 30.0])


@pytest.mark.parametrize("link", CDF_LINKS)
def test_binary_tails(link: str) -> None:
    y = np.array([0.0, 1.0, 0.0, 3.0, 7.0])
    trials = np.array([1.0, 1.0, 5.0, 5.0, 7.0])
    check(Setting(get_family("binomial", link), y, np.tile(TAIL, (5, 1)), trials=trials))


@pytest.mark.parametrize("link", CDF_LINKS)
def test_ordinal_first_and_last_category_tails(link: str) -> None:
    kappa = np.array([-1.0, 0.5, 2.0])
    y = np.arange(4.0)
    check(Setting(get_family("ordinal", link), y, np.tile(TAIL, (4, 1)), kappa, columns="vector"))


@pytest.mark.parametrize("link", CDF_LINKS)
def test_ordinal_rows_tails(link: str) -> None:
    params = np.tile([-1.0, 0.5, 2.0, 1.7], (4, 1))
    check(Setting(OrdinalRows(link), np.arange(4.0), np.tile(TAIL, (4, 1)), params, columns="table"))


def test_censored_rows_at_both_bounds_far_away() -> None:
    y = np.array([0.0, 0.0, 0.0, 0.0])
    lo = np.array([-np.inf, 0.0, 0.0, 0.0])
    hi = np.array([0.0, np.inf, 1.0, 0.0])
    params = np.column_stack([np.full(4, 0.8), lo, hi])
    nu = np.tile(np.array([-25.0, -8.0, 8.0, 25.0]), (4, 1))
    check(Setting(get_family("censored_gaussian"), y, nu, params, columns="table", data_columns=(1, 2)))


def test_large_counts() -> None:
    """Counts up to 3e5 (the NB1 differences of digammas lose digits: a coarser step keeps the check sharp)."""
    y = np.array([0.0, 1e4, 3e5, 17.0])
    nu = np.log(np.array([[1e-3, 2.0, 50.0], [9e3, 1e4, 1.2e4], [2.9e5, 3e5, 3.1e5], [1e-2, 17.0, 1e3]]))
    check(Setting(get_family("poisson"), y, nu))
    check(Setting(get_family("nbinom2"), y, nu, np.full((4, 1), 3.0), columns="table"))
    check(Setting(get_family("zinb2"), y, nu, np.tile([3.0, -0.5], (4, 1)), columns="table"))
    check(Setting(get_family("nbinom1"), y[[0, 1, 3]], nu[[0, 1, 3]], np.full((3, 1), 2.0), columns="table",
                  step=1e-2))


def test_zero_inflation_with_a_zero_far_in_the_count_tail_is_finite() -> None:
    """A zero where the count part puts no mass (w = 0): the zero comes from the point mass, no curvature."""
    fam = get_family("zip")
    third, d2p = fam.curvature_derivs(np.array([0.0]), np.array([[700.0, 5.0]]), np.array([[0.0]]))
    assert np.all(np.isfinite(third)) and np.all(np.isfinite(d2p))
    assert third[0, 0] == 0.0 and d2p[0, 0, 0] == 0.0


def test_probit_lower_tail_derivatives_follow_their_asymptotic_series() -> None:
    """log Phi(x) = -x^2/2 - log(-x) - log(2 pi)/2 + log S, S = 1 - u + 3u^2 - 15u^3 + ..., u = x^-2 (x -> -inf).

    log S = -u + 5u^2/2 - 37u^3/3 + ..., so d2 = -1 + 1/x^2 - 6/x^4 + 50/x^6 - 518/x^8 and
    d3 = -2/x^3 + 24/x^5 - 300/x^7 + 4144/x^9, up to the next power: a check independent of differences.
    """
    x = np.array([-1e4, -200.0, -60.0])
    fam = get_family("binomial", "probit")
    third, _ = fam.curvature_derivs(np.ones(1), x[None, :])
    np.testing.assert_allclose(third[0], -2.0 / x**3 + 24.0 / x**5 - 300.0 / x**7 + 4144.0 / x**9, rtol=1e-9)
    _, _, d2 = fam.loglik_derivs(np.ones(1), x[None, :])
    np.testing.assert_allclose(d2[0], -1.0 + 1.0 / x**2 - 6.0 / x**4 + 50.0 / x**6 - 518.0 / x**8, rtol=1e-13)


def test_cloglog_lower_tail_third_derivative_keeps_its_relative_accuracy() -> None:
    """log(1 - exp(-u)), u = e^x: d3 = -u/2 + u^2/3 + O(u^4) for small u (no cancellation to 0)."""
    x = np.array([-30.0, -40.0, -700.0])
    third, _ = get_family("binomial", "cloglog").curvature_derivs(np.array([1.0]), x[None, :])
    u = np.exp(x)
    np.testing.assert_allclose(third[0], -u / 2.0 + u**2 / 3.0, rtol=1e-12)


# --- every registered family answers or refuses with a reason ---

@pytest.mark.parametrize("name,link", [(f, lk) for f, links in ALLOWED_LINKS.items() for lk in links])
def test_every_family_gives_curvature_and_cross_derivs_or_refuses_with_a_reason(case_factory, name: str, link: str) -> None:
    c = case_factory(name, link, nodes=(2,))
    score = c.family.param_score(c.y, c.nu, c.params, c.trials)
    cross = c.family.cross_derivs(c.y, c.nu, c.params, c.trials)
    if score.shape[-1] == 0:
        assert cross is None
    else:
        assert cross is not None and cross.shape == score.shape and np.all(np.isfinite(cross))
    if name in REFUSED:
        with pytest.raises(NotImplementedError, match=REFUSED[name]):
            c.family.curvature_derivs(c.y, c.nu, c.params, c.trials)
        return
    third, d2p = c.family.curvature_derivs(c.y, c.nu, c.params, c.trials)
    assert third.shape == c.nu.shape and np.all(np.isfinite(third))
    if score.shape[-1] == 0:
        assert d2p is None
    else:
        assert d2p is not None and d2p.shape == score.shape and np.all(np.isfinite(d2p))


def test_refusal_list_names_registered_families_only() -> None:
    assert set(REFUSED) <= set(FAMILIES)

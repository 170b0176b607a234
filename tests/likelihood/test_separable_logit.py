"""The separable binomial-logit form (likelihood/quadrature/separable.py) equals the density at every node.

Against the binomial-logit log density written here with numpy's logaddexp
and scipy's expit (not our kernels): per-unit sums at every (node,
configuration), the scores and curvatures from rho, the score sums over the
nodes for a random posterior, predictors up to |nu| ~ 690, and the fallback
beyond EXP_LIMIT. Then whole evaluations of the flagship with the form and
with the family kernel: log likelihood, score expectations, Louis information
and posterior moments agree to rounding.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import expit, gammaln

import mlmrun.likelihood.quadrature.adaptive as adaptive
import mlmrun.likelihood.quadrature.louis as louis
from mlmrun.likelihood.quadrature.kernels import LogitCounts
from mlmrun.likelihood.quadrature.objective import QuadratureObjective
from mlmrun.likelihood.quadrature.plan import integration_plan
from mlmrun.likelihood.quadrature.separable import EXP_LIMIT, runs, separable_logit
from mlmrun.pipeline import prepare
from tests.conftest import SPECS


class Counts:
    """A stand-in family that offers only the binomial-logit data."""

    def __init__(self, counts: LogitCounts) -> None:
        self.logit_counts = counts


def problem(seed: int, scale: float, units: int = 6, S: int = 3, R: int = 9) -> tuple:
    """Random rows in units (1-4 rows each, 1-4 trials), base (n, S), AC (n, 2), nodes x (R, 2); |nu| < `scale`."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 5, size=units)
    row_start = np.concatenate([[0], np.cumsum(sizes)])
    n = int(row_start[-1])
    trials = rng.integers(1, 5, size=n).astype(float)
    y = rng.binomial(trials.astype(int), 0.4).astype(float)
    coef = gammaln(trials + 1) - gammaln(y + 1) - gammaln(trials - y + 1)
    base = rng.uniform(-0.5 * scale, 0.5 * scale, size=(n, S))
    AC = rng.normal(size=(n, 2))
    x = rng.normal(size=(R, 2))
    AC *= 0.49 * scale / (np.abs(AC).sum(axis=1, keepdims=True) * np.abs(x).max())
    return LogitCounts(y, trials, coef), row_start, base, AC, x


def density(counts: LogitCounts, nu: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """log f, d/dnu and d2/dnu2 of binomial-logit rows at nu (rows, ...)."""
    shape = (-1,) + (1,) * (nu.ndim - 1)
    y, n, c = (v.reshape(shape) for v in (counts.y, counts.n, counts.coef))
    p = expit(nu)
    return c + y * nu - n * np.logaddexp(0.0, nu), y - n * p, -n * p * (1.0 - p)


@pytest.mark.parametrize(("seed", "scale"), [(0, 3.0), (1, 30.0), (2, 460.0), (3, 699.0)])
def test_unit_sums_scores_and_curvatures_equal_the_density(seed: int, scale: float) -> None:
    counts, row_start, base, AC, x = problem(seed, scale)
    sep = separable_logit(Counts(counts), row_start, base, AC, x, 0)
    assert sep is not None
    nu = base[:, None, :] + (AC @ x.T)[:, :, None]
    ll, d1, d2 = density(counts, nu)
    units = len(row_start) - 1
    rows = slice(0, int(row_start[-1]))
    cfg = slice(0, base.shape[1])
    ours, rho = sep.unit_loglik(row_start, 0, units, rows, cfg, np.exp(AC @ x.T), True)
    want = np.add.reduceat(ll, row_start[:-1], axis=0)
    assert np.allclose(ours, want, rtol=1e-13, atol=1e-12 * max(1.0, scale))
    our_d1, our_d2 = sep.derivs(rows, rho)
    assert np.allclose(our_d1, d1, rtol=1e-12, atol=1e-13) and np.allclose(our_d2, d2, rtol=1e-9, atol=1e-15)

    rng = np.random.default_rng(seed + 10)
    post = rng.dirichlet(np.ones(len(x)), size=(units, base.shape[1])).transpose(0, 2, 1)  # (units, R, S)
    local = np.repeat(np.arange(units), np.diff(row_start))
    pr = post[local]
    e, wx = sep.score_sums(rows, local, pr * rho, post, x)
    assert np.allclose(e, np.einsum("irs,irs->is", pr, d1), rtol=1e-12, atol=1e-12)
    assert np.allclose(wx, np.einsum("irs,irs,rq->isq", pr, d1, x), rtol=1e-12, atol=1e-12)


def test_wider_predictors_and_small_evaluations_fall_back_to_the_kernel() -> None:
    counts, row_start, base, AC, x = problem(4, 3.0)
    assert separable_logit(Counts(counts), row_start, base, AC, x, 0) is not None
    wide = base.copy()
    wide[0, 0] = EXP_LIMIT
    assert separable_logit(Counts(counts), row_start, wide, AC, x, 0) is None
    wide[0, 0] = np.nan
    assert separable_logit(Counts(counts), row_start, wide, AC, x, 0) is None
    assert separable_logit(object(), row_start, base, AC, x, 0) is None
    # small evaluations: the form's set-up would cost more than it saves
    assert separable_logit(Counts(counts), row_start, base, AC, x, base.size * len(x) + 1) is None


@pytest.fixture(scope="module")
def flagship() -> tuple:
    model = prepare(SPECS / "abortion.yaml").model
    obj = QuadratureObjective(model, integration_plan(model).with_points({"person": 6, "district": 3}))
    rng = np.random.default_rng(5)
    free = model.partable.pack(model.partable.start_values) + rng.uniform(-0.2, 0.2, size=model.partable.n_free)
    return obj, free, obj.adapt(free)


def test_flagship_evaluations_equal_those_of_the_kernel(flagship: tuple, monkeypatch: pytest.MonkeyPatch) -> None:
    obj, free, ad = flagship
    assert obj.pieces(free).fam.logit_counts is not None  # merged binomial rows: the separable form is used

    def run() -> tuple:
        obj._last = obj._moments = None
        ll, g = obj.frozen(free, ad)
        ev = obj.scores(free, ad)
        H = obj.hessian(free, ad, keep_moments=True)
        return ll, g, ev.es, ev.esu, H, obj.evaluation(free, ad).moments

    used = []

    def spy(*args: object) -> object:
        used.append(separable_logit(*args))
        return used[-1]

    monkeypatch.setattr(adaptive, "separable_logit", spy)
    monkeypatch.setattr(louis, "separable_logit", spy)
    fast = run()
    assert used and all(sep is not None for sep in used)
    monkeypatch.setattr(adaptive, "separable_logit", lambda *args: None)
    monkeypatch.setattr(louis, "separable_logit", lambda *args: None)
    slow = run()
    assert fast[0] == pytest.approx(slow[0], rel=1e-13)
    for a, b in zip(fast[1:5], slow[1:5], strict=True):
        assert np.allclose(a, b, rtol=1e-10, atol=1e-10 * np.abs(b).max())
    for (m1, s1), (m2, s2) in zip(fast[5], slow[5], strict=True):
        assert np.allclose(m1, m2, atol=1e-11) and np.allclose(s1, s2, atol=1e-11)


@pytest.mark.parametrize("cap", [1, 2, 3, 50])
def test_runs_split_units_at_every_change_of_trials_and_every_cap_rows(cap: int) -> None:
    rng = np.random.default_rng(cap)
    sizes = rng.integers(1, 9, size=40)
    row_start = np.concatenate([[0], np.cumsum(sizes)])
    n = np.sort(rng.integers(1, 4, size=int(row_start[-1])))[rng.permutation(int(row_start[-1]))]
    want, length = [], 0
    for i in range(len(n)):
        if i in set(row_start[:-1].tolist()) or n[i] != n[i - 1] or length == cap:
            want.append(i)
            length = 0
        length += 1
    assert runs(row_start, n.astype(float), cap).tolist() == want


def test_flagship_rows_are_sorted_by_trials_within_persons(flagship: tuple) -> None:
    obj = flagship[0]
    rows, h = obj.lay.rows, obj.lay.hierarchy
    unit = h.unit_of_row[0]
    assert np.all(np.diff(unit) >= 0) and rows.trials is not None and rows.trials.max() > 1
    same = unit[1:] == unit[:-1]
    assert np.all(np.diff(rows.trials)[same] >= 0)

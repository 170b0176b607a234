"""Binomial-logit rows at every node with one logarithm and no exponential per element.

At the lowest level the predictor of row i at node r and configuration s
separates (likelihood/quadrature/adaptive.py, `blocks`):

    nu_irs = base_is + dev_ir,    so    e^nu_irs = e^base_is e^dev_ir,

and the binomial-logit log density coef + y nu - n log(1 + e^nu) needs e^nu
only through a product of two exponentials taken once per (row, s) and once
per (row, r). Its linear part summed over a unit's rows separates too:

    sum_i (coef_i + y_i nu_irs) = sum_i (coef_i + y_i base_is) + (sum_i y_i A_i C) x_r,

so per element only n log(1 + e^nu) remains, and its logarithm is taken of
products: over a run of a unit's rows with the same n, sum n log(1 + e^nu) =
n log prod (1 + e^nu), one logarithm per run (rows.py sorts a unit's rows by
their number of trials, so a unit has a run per distinct n), with runs cut
short enough that the products stay finite. The score follows from
rho = 1 / (1 + e^nu) = 1 - expit(nu): s = y - n + n rho; as the posterior
weights of a unit's nodes sum to one, E[s] = y - n + n E[rho] and
E[s x] = (y - n) E[x] + n E[rho x].

The form needs e^base and e^dev finite and their product in range, which
holds when |base| + |dev| stays below `EXP_LIMIT` everywhere (checked per
evaluation; otherwise the caller uses the family kernel, which takes e^-|nu|).
The log density is then exact to rounding: for large nu, log(1 + e^nu) is nu
to relative precision, as softplus is; for very negative nu, 1 + e^nu rounds
to 1 with an absolute error below e^nu, as in the kernel.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mlmrun.likelihood.quadrature.kernels import LogitCounts

EXP_LIMIT = 700.0
"""Bound on |base| + |dev|: e^700 and e^-700 are finite, normal doubles (limits ~e^709.8 and e^-708.4)."""
SEPARABLE_CHUNK = 1 << 17
"""Block size (rows x nodes x configurations) for this form: it has fewer temporaries than the kernel, and on the
flagship 2^17 beat 2^15 and 2^16 by 5-10% (and 2^18 doubled the 5-point evaluations' time: cache misses)."""
SEPARABLE_MIN_ELEMENTS = 1 << 15
"""Smaller evaluations (rows x nodes x configurations) use the kernel: the form's set-up (~0.15 ms) costs more than
it saves there (cbpp's 56 rows x 25 nodes: 0.56 -> 0.77 ms per evaluation with gradient)."""
RUN_LOG_LIMIT = 700.0
"""Bound on the log of a run's product: a run has at most RUN_LOG_LIMIT / (width + 1) rows (log(1 + e^w) < w + 1)."""


@dataclass(frozen=True)
class SeparableLogit:
    """The per-evaluation pieces of the separable binomial-logit form (module docstring)."""

    counts: LogitCounts
    exp_base: np.ndarray
    """(n, S): e^base."""
    lin_base: np.ndarray
    """(n_0, S): per lowest unit, sum over its rows of coef + y base."""
    lin_dev: np.ndarray
    """(n_0, R_0): per lowest unit, sum over its rows of y dev at every node."""
    y_minus_n: np.ndarray
    bernoulli: bool
    """Every row has one trial (no multiplication by n)."""
    run_start: np.ndarray
    """First row of every run (consecutive rows of one unit with the same n, at most `run_cap` of them)."""
    unit_run: np.ndarray
    """(n_0 + 1,): first run of every lowest unit, and the number of runs."""

    def unit_loglik(self, row_start: np.ndarray, u0: int, u1: int, rows: slice, cfg: slice, exp_dev: np.ndarray,
                    scores: bool) -> tuple[np.ndarray, np.ndarray | None]:
        """(units, R_0, configurations): the units' summed row log densities at every node; with `scores`, rho.

        `exp_dev` (rows, R_0) is e^dev of the block's rows; rho = 1 / (1 + e^nu) per (row, node, configuration).
        """
        s = self.exp_base[rows, None, cfg] * exp_dev[:, :, None]
        s += 1.0
        f0, f1 = int(self.unit_run[u0]), int(self.unit_run[u1])
        runs = np.multiply.reduceat(s, self.run_start[f0:f1] - row_start[u0], axis=0)
        np.log(runs, out=runs)
        if not self.bernoulli:
            runs *= self.counts.n[self.run_start[f0:f1], None, None]
        a = np.add.reduceat(runs, self.unit_run[u0:u1] - f0, axis=0) if f1 - f0 > u1 - u0 else runs
        rho = np.reciprocal(s, out=s) if scores else None
        np.subtract(self.lin_base[u0:u1, None, cfg], a, out=a)
        a += self.lin_dev[u0:u1, :, None]
        return a, rho

    def score_sums(self, rows: slice, local: np.ndarray, weighted_rho: np.ndarray, post: np.ndarray,
                   x0: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per (row, configuration): E[s] and E[s x] (rows, S, q_0) over the nodes.

        `weighted_rho` (rows, R_0, S) is rho times the posterior weight of its node; `post` (units, R_0, S).
        """
        n, ymn = self.counts.n[rows], self.y_minus_n[rows]
        e = weighted_rho.sum(axis=1)
        e *= n[:, None]
        e += ymn[:, None]
        mean_x = node_sums(post, x0)
        wx = node_sums(weighted_rho, x0)
        wx *= n[:, None, None]
        wx += ymn[:, None, None] * mean_x[local]
        return e, wx

    def derivs(self, rows: slice, rho: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """d log f / d nu and d2 log f / d nu2 per element from rho = 1 - expit(nu)."""
        n = self.counts.n[rows][:, None, None]
        d1 = rho * n
        d1 += self.y_minus_n[rows][:, None, None]
        d2 = rho - 1.0
        d2 *= rho
        d2 *= n
        return d1, d2


class RowExponentials:
    """e^dev of a block's rows, taken once for all the configuration blocks that share those rows (`blocks`)."""

    def __init__(self) -> None:
        self.dev: np.ndarray | None = None
        self.value: np.ndarray | None = None

    def __call__(self, dev: np.ndarray) -> np.ndarray:
        if dev is not self.dev:
            self.dev, self.value = dev, np.exp(dev)
        assert self.value is not None
        return self.value


def node_sums(w: np.ndarray, x0: np.ndarray) -> np.ndarray:
    """sum_r w[:, r, s] x0[r] for w (m, R, S): (m, S, q), as one matrix product."""
    m, R, S = w.shape
    return (np.swapaxes(w, 1, 2).reshape(m * S, R) @ x0).reshape(m, S, -1)


def separable_logit(fam: object, row_start: np.ndarray, base: np.ndarray, AC: np.ndarray, x0: np.ndarray,
                    min_elements: int = SEPARABLE_MIN_ELEMENTS) -> SeparableLogit | None:
    """The separable form for this evaluation, or None: not binomial-logit, fewer elements than `min_elements`,
    or nu too wide.

    `base` (n, S) and `AC` (n, q_0) are the lowest level's placement (adaptive.Lowest), x0 (R_0, q_0) its nodes.
    """
    counts: LogitCounts | None = getattr(fam, "logit_counts", None)
    if counts is None or base.size * len(x0) < max(1, min_elements):
        return None
    width = float(np.max(np.abs(base))) + float(np.max(np.abs(AC).sum(axis=1))) * float(np.max(np.abs(x0), initial=0.0))
    if not width < EXP_LIMIT:
        return None
    starts = row_start[:-1]
    lin_base = np.add.reduceat(counts.y[:, None] * base + counts.coef[:, None], starts, axis=0)
    lin_dev = np.add.reduceat(counts.y[:, None] * AC, starts, axis=0) @ x0.T
    run_start = runs(row_start, counts.n, max(1, int(RUN_LOG_LIMIT // (width + 1.0))))
    return SeparableLogit(counts, np.exp(base), lin_base, lin_dev, counts.y - counts.n, bool(np.all(counts.n == 1.0)),
                          run_start, np.searchsorted(run_start, row_start))


def runs(row_start: np.ndarray, n: np.ndarray, cap: int) -> np.ndarray:
    """First rows of the runs: consecutive rows of one unit with equal n, cut every `cap` rows."""
    new = np.zeros(len(n), dtype=bool)
    new[row_start[:-1]] = True
    new[1:] |= n[1:] != n[:-1]
    first = np.flatnonzero(new)
    if cap >= len(n) or cap >= np.diff(np.append(first, len(n))).max(initial=0):
        return first
    position = np.arange(len(n)) - np.repeat(first, np.diff(np.append(first, len(n))))
    return np.flatnonzero(new | (position % cap == 0))

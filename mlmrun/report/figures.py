"""Which figures a fit gets, and the numbers they draw: read from the fit, drawn by plots.py.

- a caterpillar plot per latent variable and level from the EB predictions the fit carries
  (extras['empirical_bayes']; at most MAX_CATERPILLARS per report);
- residuals against fitted values and a normal QQ plot per gaussian response, the residuals
  standardized by the residual SD and conditional on the EB predictions (Stata's `predict, rstandard`;
  computed by mlmrun.postest.diagnostics and handed in by the caller);
- a loadings chart for factor models; the log likelihood by iteration (extras['history']);
- the quadrature point check (extras['point_check']) when it was asked for.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mlmrun.report import plots
from mlmrun.report.format import Z95
from mlmrun.report.plots import Figure
from mlmrun.results import FitResult, ParamRow

MAX_CATERPILLARS = 8
"""Caterpillar plots drawn at most (a 48-term block would otherwise give 48 of them)."""
MAX_POINTS = 4000
"""Rows drawn at most in a residual plot."""


def caterpillars(fit: FitResult, top: int) -> tuple[list[Figure], list[str]]:
    """Caterpillar figures per (level, latent variable), and a note when some were left out."""
    eb = fit.extras.get("empirical_bayes")
    if not isinstance(eb, dict):
        return [], []
    wanted = [(level, name) for level, block in eb.items() if isinstance(block, dict) and "units" in block
              for name, pred in block.items() if name != "units" and isinstance(pred, dict)]
    figures = []
    for level, name in wanted[:MAX_CATERPILLARS]:
        block = eb[level]
        mean = np.asarray(block[name]["mean"], dtype=float)
        sd = np.asarray(block[name]["sd"], dtype=float)
        shown = display_latent(name)
        figures.append(plots.caterpillar(f"eb-{plots.slug(level)}-{plots.slug(name)}",
                                         f"{shown} at level {level}", [str(u) for u in block["units"]], mean, sd, top))
    notes = [f"Caterpillar plots of the first {MAX_CATERPILLARS} of {len(wanted)} latent variables; the EB "
             "predictions of all are in results.json and `mlmrun predict --by-unit`."] if len(wanted) > MAX_CATERPILLARS else []
    return figures, notes


def display_latent(name: str) -> str:
    """A random intercept's latent variable is '_cons' in the parameter table; in words, 'intercept'."""
    return "random intercept" if name == "_cons" else name


def residual_figures(fit: FitResult, residuals: list[tuple[str, np.ndarray, np.ndarray]]) -> list[Figure]:
    """Residuals vs fitted and QQ plot for each gaussian response equation, from postest.diagnostics'
    (equation, fitted, standardized residuals): the report stage comes before post-estimation."""
    several = len(fit.model.equations) > 1
    return [plots.residuals(f"residuals-{plots.slug(name)}" if several else "residuals", f"Response {name}",
                            fitted, standardized, MAX_POINTS)
            for name, fitted, standardized in residuals]


def loadings_figure(items: list[str], factors: list[tuple[str, list[ParamRow | None]]]) -> Figure:
    """Loadings chart from the rows of the loadings table (None where a factor does not load on an item)."""
    drawn = []
    for factor, rows in factors:
        est = [None if r is None else r.estimate for r in rows]
        half = [None if r is None or not r.free or not np.isfinite(r.se) else Z95 * r.se for r in rows]
        drawn.append((factor, est, half))
    return plots.loadings("loadings", "Factor loadings", items, drawn)


def history_figure(fit: FitResult) -> Figure | None:
    """Log likelihood by iteration, when the fit recorded at least two iterations."""
    points = fit.extras.get("history") or []
    finite = [(int(i), float(f)) for i, f in points if f is not None and np.isfinite(f)]
    if len(finite) < 2:
        return None
    return plots.history("loglik-history", "Log likelihood by iteration",
                         [i for i, _ in finite], [f for _, f in finite])


def point_check_figure(check: Any, label: Any) -> Figure | None:
    """The point check's log likelihoods (fitted rule first), when the check has its usual shape."""
    if not (isinstance(check, dict) and isinstance(check.get("loglik"), dict)):
        return None
    pairs = [(label(k), float(v)) for k, v in check["loglik"].items() if v is not None and np.isfinite(v)]
    if len(pairs) < 2:
        return None
    return plots.point_check("point-check", "Log likelihood by number of quadrature points",
                             [k for k, _ in pairs], [v for _, v in pairs])

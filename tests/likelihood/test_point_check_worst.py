"""The point check reports the worst change over every rule it is given, each rule's value a k-point sum.

Plain (non-adaptive) Gauss-Hermite on cbpp puts the nodes where the prior
does, so each checked log likelihood at the optimum is a sum the test writes
out itself with numpy's Hermite rule; the order of `check_points` is chosen so
the first entry is not the worst.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
from numpy.polynomial.hermite_e import hermegauss
from scipy.special import expit, gammaln

from mlmrun.estimate import estimate
from mlmrun.pipeline import prepare

ROOT = Path(__file__).resolve().parents[2]
CHECKS = [2, 12, 5]


def _cbpp_loglik(values: dict[str, float], frame: pd.DataFrame, points: int) -> float:
    """Marginal log likelihood of the cbpp random-intercept logit model by a plain k-point rule."""
    x, w = hermegauss(points)
    w = w / w.sum()
    period = frame["period"].to_numpy()
    eta0 = values["Intercept"] + np.select(
        [period == 2, period == 3, period == 4],
        [values["C(period)[T.2]"], values["C(period)[T.3]"], values["C(period)[T.4]"]], 0.0)
    y, n = frame["incidence"].to_numpy(float), frame["size"].to_numpy(float)
    log_choose = gammaln(n + 1) - gammaln(y + 1) - gammaln(n - y + 1)
    total = 0.0
    for herd in np.unique(frame["herd"]):
        rows = frame["herd"].to_numpy() == herd
        eta = eta0[rows, None] + values["sd(_cons)@herd"] * x[None, :]
        p = expit(eta)
        ll = (log_choose[rows, None] + y[rows, None] * np.log(p) + (n - y)[rows, None] * np.log1p(-p)).sum(axis=0)
        top = ll.max()
        total += top + np.log(np.sum(w * np.exp(ll - top)))
    return float(total)


def test_point_check_reports_the_worst_change_not_the_first(tmp_path: Path) -> None:
    shutil.copy(ROOT / "specs" / "data" / "cbpp.csv", tmp_path / "cbpp.csv")
    text = (ROOT / "specs" / "cbpp.yaml").read_text().replace("data/cbpp.csv", "cbpp.csv").replace(
        "{method: adaptive, points: 25}}", f"{{method: ghq, points: 4}}, check_points: {CHECKS}}}")
    (tmp_path / "cbpp.yaml").write_text(text)
    prepared = prepare(tmp_path / "cbpp.yaml")
    fit = estimate(prepared.model)
    values = dict(zip(prepared.model.partable.frame["name"], fit.values, strict=True))
    frame = pd.read_csv(tmp_path / "cbpp.csv")

    fitted = _cbpp_loglik(values, frame, 4)
    assert abs(fit.loglik - fitted) < 1e-8
    check = fit.extras["point_check"]
    changes = {}
    for k in CHECKS:
        mine = _cbpp_loglik(values, frame, k)
        assert abs(check["loglik"][str(k)] - mine) < 1e-8, k
        changes[k] = mine - fitted
    worst = max(changes, key=lambda k: abs(changes[k]))
    assert worst != CHECKS[0], "the test needs the first entry not to be the worst"
    assert abs(check["loglik_change"] - changes[worst]) < 1e-8

"""Residual covariance structures: the exact likelihood against a dense computation written here.

For every structure (with and without `by`, with gaps in the time index,
rows in shuffled order, a random effect at the cluster level and one at a
level above) the marginal covariance V = Z Psi Z' + R is built in full, R
from this module's own formulas (AR autocorrelations from the MA(infinity)
weights, not from Yule-Walker), and scipy's multivariate normal gives the ML
log likelihood; the REML criterion adds log|X'V^-1X| at the GLS beta. The
analytic gradient on the residual parameters is checked against central
differences of the profiled criterion.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import multivariate_normal

from mlmrun.compile.matrices import model_matrices, values_gradient
from mlmrun.likelihood.gaussian import residual_structures
from mlmrun.likelihood.gaussian.design import GaussianDesign
from mlmrun.likelihood.gaussian.deviance import exact_loglik, profiled
from mlmrun.likelihood.gaussian.gradient import profiled_gradient
from mlmrun.pipeline import prepare


def _data(seed: int = 3, big: bool = False) -> pd.DataFrame:
    """12 clusters of 2-5 rows in 4 higher units, integer times with gaps, real times, a by column per cluster.

    `big`: the first cluster has 14 rows (times up to 20), so padding every cluster to its size would more than
    double the rows and the clusters are whitened in batches of equal size instead.
    """
    rng = np.random.default_rng(seed)
    rows = []
    for c in range(12):
        size = 14 if big and c == 0 else int(rng.integers(2, 6))
        times = np.sort(rng.choice(np.arange(1, 21 if size > 8 else 9), size=size, replace=False))
        short = np.sort(rng.choice(np.arange(1, 5), size=min(size, 4), replace=False))
        for j, t in enumerate(times):
            rows.append(dict(id=c + 1, hi=c % 4 + 1, t=int(t), ts=int(short[j]) if j < len(short) else None,
                             tr=float(t) + 0.37 * rng.random(), grp=c % 2 + 1, rowgrp=j % 2 + 1,
                             x=float(rng.normal()), y=float(rng.normal(size=1)[0] + 0.3 * t)))
    frame = pd.DataFrame(rows)
    return frame.sample(frac=1.0, random_state=seed).reset_index(drop=True)


def _spec(residuals: str, random: str) -> str:
    return f"""name: dense
data: {{path: data.csv}}
levels:
  - {{name: id, id: id}}
  - {{name: hi, id: hi}}
responses:
  - name: y
    family: gaussian
    residuals: {residuals}
fixed: "y ~ x"
random:
{random}
"""


RI = "  - {level: id, terms: [1]}\n  - {level: hi, terms: [1]}\n"
SLOPE = "  - {level: id, terms: [x]}\n  - {level: hi, terms: [1]}\n"

CASES = {
    "independent_by": ("{structure: independent, by: rowgrp}", RI, {}),
    "exchangeable": ("{structure: exchangeable}", SLOPE, {"corr(e)": 0.3}),
    "exchangeable_by": ("{structure: exchangeable, by: grp}", SLOPE, {"corr(e)[grp=1]": 0.3, "corr(e)[grp=2]": -0.1}),
    "ar1": ("{structure: ar, time: t}", RI, {"phi1": 0.6}),
    "ar2_gaps": ("{structure: ar, order: 2, time: t}", RI, {"phi1": 0.4, "phi2": 0.25}),
    "ar1_by": ("{structure: ar, time: t, by: grp}", RI, {"phi1[grp=1]": 0.5, "phi1[grp=2]": -0.3}),
    "ma2": ("{structure: ma, order: 2, time: t}", RI, {"theta1": 0.5, "theta2": -0.3}),
    "toeplitz2": ("{structure: toeplitz, order: 2, time: t}", RI, {"rho1": 0.4, "rho2": 0.15}),
    "toeplitz2_by": ("{structure: toeplitz, order: 2, time: t, by: grp}", RI,
                     {"rho1[grp=1]": 0.4, "rho2[grp=1]": 0.1, "rho1[grp=2]": -0.2, "rho2[grp=2]": 0.2}),
    "banded1_by": ("{structure: banded, order: 1, time: ts, by: grp}", RI,
                   {"corr(e1,e2)[grp=1]": 0.4, "corr(e2,e3)[grp=1]": -0.2, "corr(e3,e4)[grp=2]": 0.3}),
    "banded1": ("{structure: banded, order: 1, time: ts}", RI,
                {"sd(e1)": 1.1, "sd(e2)": 0.8, "sd(e3)": 1.3, "sd(e4)": 0.9,
                 "corr(e1,e2)": 0.4, "corr(e2,e3)": -0.2, "corr(e3,e4)": 0.3}),
    "unstructured": ("{structure: unstructured, time: ts}", SLOPE,
                     {"sd(e1)": 1.1, "sd(e2)": 0.8, "sd(e3)": 1.3, "sd(e4)": 0.9, "corr(e1,e2)": 0.4,
                      "corr(e1,e3)": 0.2, "corr(e1,e4)": 0.1, "corr(e2,e3)": 0.3, "corr(e2,e4)": -0.1,
                      "corr(e3,e4)": 0.35}),
    "exponential": ("{structure: exponential, time: tr}", RI, {"rho": 0.6}),
    "exponential_by": ("{structure: exponential, time: tr, by: grp}", RI, {"rho[grp=1]": 0.6, "rho[grp=2]": 0.3}),
}
SDS = {"sd(_cons)@id": 0.7, "sd(x)@id": 0.5, "sd(_cons)@hi": 0.4, "Intercept": 0.2, "x": -0.4}


def _ar_acf(phi: list[float], max_lag: int) -> np.ndarray:
    """AR autocorrelations from the MA(infinity) weights psi_j (independent of Yule-Walker)."""
    psi = np.zeros(4000)
    psi[0] = 1.0
    for j in range(1, len(psi)):
        psi[j] = sum(p * psi[j - i - 1] for i, p in enumerate(phi) if j - i - 1 >= 0)
    gamma = np.array([np.dot(psi[:len(psi) - k], psi[k:]) for k in range(max_lag + 1)])
    return gamma / gamma[0]


def _resid_cov(kind: str, frame: pd.DataFrame, v: dict[str, float]) -> np.ndarray:
    """The full n x n residual covariance, cluster by cluster."""
    n = len(frame)
    R = np.zeros((n, n))
    for _, idx in frame.groupby("id").groups.items():
        idx = np.asarray(idx)
        g = frame.loc[idx[0], "grp"]
        sfx = f"[grp={g}]" if kind.endswith("_by") and kind != "independent_by" else ""
        t = frame.loc[idx, "t"].to_numpy(float)
        lag = np.abs(t[:, None] - t[None, :]).astype(int)
        sd = np.full(len(idx), v.get(f"sd(e){sfx}", np.nan))
        if kind == "independent_by":
            sd = np.array([v[f"sd(e)[rowgrp={r}]"] for r in frame.loc[idx, "rowgrp"]])
            C = np.eye(len(idx))
        elif kind.startswith("exchangeable"):
            C = np.full((len(idx), len(idx)), v[f"corr(e){sfx}"])
            np.fill_diagonal(C, 1.0)
        elif kind.startswith("ar"):
            phi = [v[f"phi{j}{sfx}"] for j in (1, 2) if f"phi{j}{sfx}" in v]
            C = _ar_acf(phi, int(lag.max()))[lag]
        elif kind == "ma2":
            th = np.array([1.0, v["theta1"], v["theta2"]])
            gam = [th @ th, th[:2] @ th[1:], th[0] * th[2]]
            C = np.where(lag <= 2, np.array(gam + [0.0] * 20)[np.minimum(lag, 3)] / gam[0], 0.0)
        elif kind.startswith("toeplitz2"):
            C = np.select([lag == 0, lag == 1, lag == 2], [1.0, v[f"rho1{sfx}"], v[f"rho2{sfx}"]], 0.0)
        elif kind.startswith("exponential"):
            tr = frame.loc[idx, "tr"].to_numpy(float)
            C = v[f"rho{sfx}"] ** np.abs(tr[:, None] - tr[None, :])
        else:  # banded, unstructured over ts
            ts = frame.loc[idx, "ts"].to_numpy(int)
            sd = np.array([v[f"sd(e{a}){sfx}"] for a in ts])
            C = np.eye(len(idx))
            for i, a in enumerate(ts):
                for j, b in enumerate(ts):
                    if a != b:
                        C[i, j] = v.get(f"corr(e{min(a, b)},e{max(a, b)}){sfx}", 0.0)
        R[np.ix_(idx, idx)] = sd[:, None] * C * sd[None, :]
    return R


def _dense(kind: str, random: str, frame: pd.DataFrame, v: dict[str, float]) -> tuple[float, float]:
    """(ML log likelihood at the given beta, REML log likelihood) from the full covariance."""
    n = len(frame)
    X = np.column_stack([np.ones(n), frame["x"].to_numpy()])
    y = frame["y"].to_numpy()
    Zc = (frame["id"].to_numpy()[:, None] == np.arange(1, 13)[None, :]).astype(float)  # ids 1..12
    Zh = (frame["hi"].to_numpy()[:, None] == np.arange(1, 5)[None, :]).astype(float)
    V = _resid_cov(kind, frame, v) + v["sd(_cons)@hi"] ** 2 * Zh @ Zh.T
    if random == RI:
        V += v["sd(_cons)@id"] ** 2 * Zc @ Zc.T
    else:
        Zx = Zc * frame["x"].to_numpy()[:, None]
        V += v["sd(x)@id"] ** 2 * Zx @ Zx.T
    ml = multivariate_normal(X @ np.array([v["Intercept"], v["x"]]), V).logpdf(y)
    Vi = np.linalg.inv(V)
    XtVX = X.T @ Vi @ X
    beta = np.linalg.solve(XtVX, X.T @ Vi @ y)
    r = y - X @ beta
    p = X.shape[1]
    reml = -0.5 * ((n - p) * np.log(2 * np.pi) + np.linalg.slogdet(V)[1] + np.linalg.slogdet(XtVX)[1] + r @ Vi @ r)
    return float(ml), float(reml)


def model_at(tmp_path: Path, kind: str, frame: pd.DataFrame, spec: str, base: dict[str, float]) -> tuple:
    """`spec` on `frame` (complete integer times for banded/unstructured `kind`), compiled, with its partable
    values set from `base`, CASES[kind]'s extra values and a distinct SD for every residual class:
    (model, values, the frame written, values by name)."""
    if kind.startswith(("banded", "unstructured")):
        frame = frame.dropna(subset=["ts"]).reset_index(drop=True)
        frame["ts"] = frame["ts"].astype(int)
    frame.to_csv(tmp_path / "data.csv", index=False)
    (tmp_path / "m.yaml").write_text(spec)
    model = prepare(tmp_path / "m.yaml").model
    names = list(model.partable.names)
    values = model.partable.start_values
    v = dict(base)
    for name in names:
        if name.startswith("sd(e"):
            v.setdefault(name, 0.9 + 0.1 * len(name) % 3)
    v.update(CASES[kind][2])
    for name, val in v.items():
        if name in names:
            values[names.index(name)] = val
    return model, values, frame, {nm: float(values[i]) for i, nm in enumerate(names)}


def _model(tmp_path: Path, kind: str, big: bool = False):
    residuals, random, _ = CASES[kind]
    model, values, frame, by_name = model_at(tmp_path, kind, _data(big=big), _spec(residuals, random), SDS)
    assert np.allclose(model.y, frame["y"].to_numpy())
    return model, values, frame, by_name, random


LAYOUTS = ["pattern blocks", "gathered patterns", "size batches"]
"""How the plan whitens: contiguous pattern blocks (few patterns), batched gathers (many), equal-size batches."""


def _combinations(kinds: list[str]) -> list[tuple[str, str]]:
    """(kind, layout) pairs; banded and unstructured use a time column of four values, so no size batches."""
    return [(k, lay) for k in kinds for lay in LAYOUTS
            if not (lay == "size batches" and k.startswith(("banded", "unstructured")))]


@pytest.mark.parametrize(("kind", "layout"), _combinations(sorted(CASES)))
def test_ml_and_reml_match_the_dense_multivariate_normal(tmp_path: Path, kind: str, layout: str,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    if layout == "gathered patterns":
        monkeypatch.setattr(residual_structures, "MAX_LOOPED_PATTERNS", 0)
    model, values, frame, v, random = _model(tmp_path, kind, big=layout == "size batches")
    plan = GaussianDesign(model).residual
    assert (plan.perm is None) == (layout == "gathered patterns")
    assert (len(plan.batches) > 1) == (layout == "size batches")
    ml, reml = _dense(kind, random, frame, v)
    assert exact_loglik(model, values) == pytest.approx(ml, rel=1e-9, abs=1e-9)
    design = GaussianDesign(model)
    ours = -0.5 * profiled(design, model_matrices(model, values), reml=True, profile_sigma=False).deviance
    assert ours == pytest.approx(reml, rel=1e-9, abs=1e-9)


@pytest.mark.parametrize(("kind", "layout"), _combinations(["ar2_gaps", "unstructured", "exponential_by", "ma2",
                                                            "banded1", "independent_by", "exchangeable_by",
                                                            "toeplitz2"]))
@pytest.mark.parametrize("reml", [False, True])
def test_analytic_gradient_of_residual_parameters_matches_differences(tmp_path: Path, kind: str, reml: bool,
                                                                      layout: str, monkeypatch: pytest.MonkeyPatch
                                                                      ) -> None:
    if layout == "gathered patterns":
        monkeypatch.setattr(residual_structures, "MAX_LOOPED_PATTERNS", 0)
    model, values, _, _, _ = _model(tmp_path, kind, big=layout == "size batches")
    assert_residual_gradient_matches_differences(model, values, reml)


def assert_residual_gradient_matches_differences(model, values: np.ndarray, reml: bool) -> None:
    """The analytic gradient in every residual parameter and sd(_cons)@hi against central differences."""
    design = GaussianDesign(model)

    def loglik(vals: np.ndarray) -> float:
        return -0.5 * profiled(design, model_matrices(model, vals), reml=reml, profile_sigma=False).deviance

    _, grad = profiled_gradient(design, model_matrices(model, values), reml=reml, profile_sigma=False)
    g = values_gradient(model, values, grad)
    for r in list(model.residual.rows) + [list(model.partable.names).index("sd(_cons)@hi")]:
        h = 1e-6
        up, down = values.copy(), values.copy()
        up[r] += h
        down[r] -= h
        fd = (loglik(up) - loglik(down)) / (2 * h)
        assert g[r] == pytest.approx(fd, rel=1e-5, abs=1e-6), model.partable.names[r]

"""Residual structures with random effects only at the cluster level (likelihood/gaussian/clustered.py).

There V is block diagonal by cluster and the per-cluster path replaces the whitened block path. Its
criterion is checked against the full n x n marginal covariance V = Z Psi Z' + R built here (R from
tests/likelihood/test_residual_structures_dense.py's own formulas) and scipy's multivariate normal, for every
structure and every way the residual plan batches clusters (pattern blocks, gathered patterns, size batches,
one factor shared by prefix patterns), with a random intercept, a random slope or no random effect; its analytic
gradient against central differences of the criterion; and the whitened block path (pinned off the per-cluster
path) against the same dense numbers, so both stay tested.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import multivariate_normal

from mlmrun.compile.matrices import model_matrices, values_gradient
from mlmrun.likelihood.gaussian import clustered, residual_structures
from mlmrun.likelihood.gaussian.design import GaussianDesign
from mlmrun.likelihood.gaussian.deviance import profiled
from mlmrun.likelihood.gaussian.gradient import profiled_gradient
from mlmrun.pipeline import prepare
from tests.likelihood import test_residual_prefix_patterns as prefix
from tests.likelihood import test_residual_structures_dense as dense

RANDOM = {
    "intercept": "random:\n  - {level: id, terms: [1]}\n",
    "slope": "random:\n  - {level: id, terms: [1, x], covariance: unstructured}\n",
    "none": "",
    "slope only": "random:\n  - {level: id, terms: [x]}\n",
}
"""Random effects at the cluster level. Exchangeable or unstructured residuals with a random intercept are not
identified, so those kinds take `slope only` instead of the variants with an intercept."""
LAYOUTS = ["pattern blocks", "gathered patterns", "size batches", "shared prefix"]
VALUES = {"sd(_cons)@id": 0.7, "sd(x)@id": 0.5, "corr(x,_cons)@id": -0.3, "Intercept": 0.2, "x": -0.4}


def _spec(residuals: str, random: str) -> str:
    return f"""name: clustered
data: {{path: data.csv}}
levels:
  - {{name: id, id: id}}
responses:
  - name: y
    family: gaussian
    residuals: {residuals}
fixed: "y ~ x"
{random}"""


def _model(tmp_path: Path, kind: str, random: str, layout: str, monkeypatch: pytest.MonkeyPatch):
    """The model, partable values, data and the values by name; the layout forced as asked."""
    if layout == "gathered patterns":
        monkeypatch.setattr(residual_structures, "MAX_LOOPED_PATTERNS", 0)
    frame = prefix._prefix_data() if layout == "shared prefix" else dense._data(big=layout == "size batches")
    model, values, frame, by_name = dense.model_at(tmp_path, kind, frame, _spec(dense.CASES[kind][0], RANDOM[random]),
                                                   VALUES)
    plan = GaussianDesign(model).residual
    assert (plan.perm is None) == (layout == "gathered patterns")
    assert (len(plan.batches) > 1) == (layout == "size batches")
    if layout == "shared prefix":
        assert [b.time.shape[0] for b in plan.shared] == [1] and plan.batches[0].time.shape[0] > 1
    return model, values, frame, by_name


def _dense_criteria(kind: str, random: str, frame: pd.DataFrame, v: dict[str, float]) -> tuple[float, float]:
    """(ML, REML) log likelihood at the GLS beta from the full covariance."""
    n = len(frame)
    X = np.column_stack([np.ones(n), frame["x"].to_numpy()])
    y = frame["y"].to_numpy()
    ids = np.unique(frame["id"].to_numpy())
    Zc = (frame["id"].to_numpy()[:, None] == ids[None, :]).astype(float)
    V = dense._resid_cov(kind, frame, v)
    if random != "none":
        Zx = Zc * frame["x"].to_numpy()[:, None]
        Z = {"intercept": [Zc], "slope": [Zc, Zx], "slope only": [Zx]}[random]
        sd = {"intercept": [v.get("sd(_cons)@id")], "slope": [v.get("sd(_cons)@id"), v.get("sd(x)@id")],
              "slope only": [v.get("sd(x)@id")]}[random]
        corr = np.eye(len(sd))
        if random == "slope":
            corr[0, 1] = corr[1, 0] = v["corr(x,_cons)@id"]
        for a in range(len(Z)):
            for b in range(len(Z)):
                V += sd[a] * sd[b] * corr[a, b] * Z[a] @ Z[b].T
    Vi = np.linalg.inv(V)
    XtVX = X.T @ Vi @ X
    beta = np.linalg.solve(XtVX, X.T @ Vi @ y)
    ml = multivariate_normal(X @ beta, V).logpdf(y)
    r = y - X @ beta
    reml = -0.5 * ((n - 2) * np.log(2 * np.pi) + np.linalg.slogdet(V)[1] + np.linalg.slogdet(XtVX)[1] + r @ Vi @ r)
    return float(ml), float(reml)


def _criteria(model, values: np.ndarray) -> tuple[float, float]:
    design = GaussianDesign(model)
    mats = model_matrices(model, values)
    return tuple(-0.5 * profiled(design, mats, reml=reml, profile_sigma=False).deviance for reml in (False, True))


KINDS = sorted(dense.CASES)


def _cases() -> list[tuple[str, str, str]]:
    out = []
    for kind in KINDS:
        for layout in LAYOUTS:
            if layout == "size batches" and kind.startswith(("banded", "unstructured")):
                continue
            if layout == "shared prefix" and kind not in prefix.KINDS:  # `by` groups: patterns differ by group
                continue
            exchangeable = kind.startswith(("exchangeable", "unstructured"))
            for random in RANDOM:
                if random == "none" or (random == "slope only") == exchangeable:
                    out.append((kind, random, layout))
    return out


@pytest.mark.parametrize(("kind", "random", "layout"), _cases())
def test_per_cluster_criteria_match_the_dense_multivariate_normal(tmp_path: Path, kind: str, random: str,
                                                                  layout: str, monkeypatch: pytest.MonkeyPatch
                                                                  ) -> None:
    model, values, frame, v = _model(tmp_path, kind, random, layout, monkeypatch)
    assert clustered.clustered_plan(GaussianDesign(model)) is not None
    ml, reml = _dense_criteria(kind, random, frame, v)
    ours = _criteria(model, values)
    assert ours[0] == pytest.approx(ml, rel=1e-10, abs=1e-10)
    assert ours[1] == pytest.approx(reml, rel=1e-10, abs=1e-10)


@pytest.mark.parametrize(("kind", "random", "layout"), [c for c in _cases() if c[1] != "none"][::3])
def test_whitened_block_path_still_matches_the_dense_multivariate_normal(tmp_path: Path, kind: str, random: str,
                                                                         layout: str,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(clustered, "CLUSTERED_ENABLED", False)
    model, values, frame, v = _model(tmp_path, kind, random, layout, monkeypatch)
    assert clustered.clustered_plan(GaussianDesign(model)) is None
    ml, reml = _dense_criteria(kind, random, frame, v)
    ours = _criteria(model, values)
    assert ours[0] == pytest.approx(ml, rel=1e-10, abs=1e-10)
    assert ours[1] == pytest.approx(reml, rel=1e-10, abs=1e-10)


def _gradient_cases() -> list[tuple[str, str, str]]:
    kinds = ["ar2_gaps", "unstructured", "exponential_by", "ma2", "banded1", "independent_by", "exchangeable_by",
             "toeplitz2_by", "ar1_by"]
    return [(k, r, lay) for k, r, lay in _cases() if k in kinds and r != "none" or (k == "ar2_gaps" and r == "none")]


@pytest.mark.parametrize(("kind", "random", "layout"), _gradient_cases())
@pytest.mark.parametrize("profile_sigma", [False, True])
def test_per_cluster_gradient_matches_central_differences(tmp_path: Path, kind: str, random: str, layout: str,
                                                          profile_sigma: bool,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Every residual parameter and every random-effect SD and correlation, ML and REML."""
    model, values, _, _ = _model(tmp_path, kind, random, layout, monkeypatch)
    design = GaussianDesign(model)
    assert clustered.clustered_plan(design) is not None
    names = list(model.partable.names)
    rows = list(model.residual.rows) + [names.index(nm) for nm in VALUES if nm in names and "@" in nm]
    if profile_sigma:  # relative scale: the first residual SD is sigma's, fixed at 1
        values[model.residual.groups[0].sd_rows[0]] = 1.0
        rows = [r for r in rows if r != model.residual.groups[0].sd_rows[0]]
    for reml in (False, True):
        def loglik(vals: np.ndarray, reml: bool = reml) -> float:
            return -0.5 * profiled(design, model_matrices(model, vals), reml=reml,
                                   profile_sigma=profile_sigma).deviance

        res, grad = profiled_gradient(design, model_matrices(model, values), reml=reml, profile_sigma=profile_sigma)
        assert -0.5 * res.deviance == pytest.approx(loglik(values), rel=1e-13)
        g = values_gradient(model, values, grad)
        for r in rows:
            h = 1e-6
            up, down = values.copy(), values.copy()
            up[r] += h
            down[r] -= h
            fd = (loglik(up) - loglik(down)) / (2 * h)
            assert g[r] == pytest.approx(fd, rel=1e-5, abs=1e-6), (names[r], reml)


def test_ovary_takes_the_per_cluster_path() -> None:
    model = prepare(Path(__file__).resolve().parents[2] / "specs" / "ovary_ar2_reml.yaml").model
    design = GaussianDesign(model)
    plan = clustered.clustered_plan(design)
    assert plan is not None and len(plan.batches) == 1 and plan.batches[0].members is None


def test_a_random_effect_above_the_cluster_keeps_the_whitened_block_path(tmp_path: Path) -> None:
    model, _, _, _, _ = dense._model(tmp_path, "ar1")
    assert clustered.clustered_plan(GaussianDesign(model)) is None


@pytest.mark.parametrize("layout", ["shared prefix", "pattern blocks", "gathered patterns"])
def test_an_indefinite_residual_covariance_is_refused_on_the_per_cluster_path(tmp_path: Path, layout: str,
                                                                               monkeypatch: pytest.MonkeyPatch
                                                                               ) -> None:
    """Correlations no positive definite matrix has (all pairs -0.9 over four times) raise LinAlgError, which the
    optimiser's objective turns into its penalty, with one shared factor and with several."""
    model, values, _, _ = _model(tmp_path, "unstructured", "slope only", layout, monkeypatch)
    design = GaussianDesign(model)
    assert clustered.clustered_plan(design) is not None
    names = list(model.partable.names)
    for i, name in enumerate(names):
        if name.startswith("corr(e"):
            values[i] = -0.9
    with pytest.raises(np.linalg.LinAlgError):
        profiled(design, model_matrices(model, values), reml=True, profile_sigma=False)
    with pytest.raises(np.linalg.LinAlgError):
        profiled_gradient(design, model_matrices(model, values), reml=False, profile_sigma=False)

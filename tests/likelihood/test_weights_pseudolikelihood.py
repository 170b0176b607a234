"""Weights in the quadrature engine: the log pseudolikelihood against independent computations.

- Unweighted linear models routed to quadrature (weights of 1, robust SEs) fit exactly as the exact engine.
- Frequency weights fit exactly as the rows replicated; collapsing identical rows (or identical clusters, as
  integer level weights) into weights gives the same fit.
- A three-level logit with weights at every level: the log pseudolikelihood equals an independent nested
  Gauss-Hermite sum written here from Rabe-Hesketh & Skrondal (2006), and each cluster's analytic score
  equals the finite difference of that cluster's own contribution.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlmrun.estimate import estimate
from mlmrun.estimate.robust import cluster_scores, cluster_scores_by_subsets
from mlmrun.likelihood.quadrature.adaptive import evaluate
from mlmrun.likelihood.quadrature.objective import QuadratureObjective
from mlmrun.likelihood.quadrature.plan import integration_plan
from mlmrun.pipeline import prepare
from mlmrun.results import parameter_rows
from tests.conftest import write_spec

PIG_RI = """\
name: w
data: {path: data/DATA}
levels:
  - {name: pig, id: id}
responses:
  - {name: weight, family: gaussian}
fixed: "weight ~ week"
random:
  - {level: pig, terms: [1]}
"""

LOGIT_RI = """\
name: w
data: {path: data/DATA}
levels:
  - {name: cluster, id: cluster}
responses:
  - {name: y, family: binomial}
fixed: "y ~ x"
random:
  - {level: cluster, terms: [1]}
estimation: {integration: {points: 12}}
"""


def _fit(folder, text: str, frame: pd.DataFrame, name: str):
    frame.to_csv(folder / "data" / f"{name}.csv", index=False)
    spec = write_spec(folder, text.replace("DATA", f"{name}.csv"), f"{name}.yaml")
    return estimate(prepare(spec).model)


def _table(fit) -> dict[str, tuple[float, float]]:
    return {r.name: (r.estimate, r.se) for r in parameter_rows(fit) if r.free}


def _same_fit(a, b, se_rtol: float = 1e-4, est_atol: float = 1e-5) -> None:
    assert a.converged and b.converged
    assert abs(a.loglik - b.loglik) < 1e-6, (a.loglik, b.loglik)
    ta, tb = _table(a), _table(b)
    assert ta.keys() == tb.keys()
    for name in ta:
        assert abs(ta[name][0] - tb[name][0]) < est_atol * max(1.0, abs(ta[name][0])), (name, ta[name], tb[name])
        assert abs(ta[name][1] - tb[name][1]) < se_rtol * ta[name][1], (name, ta[name], tb[name])


def _logit_data(seed: int, clusters: int = 40) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for c in range(clusters):
        u = rng.normal(0, 1.2)
        for _ in range(rng.integers(2, 7)):
            x = int(rng.integers(0, 2))
            rows.append((c, x, int(rng.random() < 1 / (1 + np.exp(-(-0.3 + 0.8 * x + u))))))
    return pd.DataFrame(rows, columns=["cluster", "x", "y"])


def test_unweighted_gaussian_model_fitted_by_quadrature_matches_the_exact_engine(spec_dir):
    pig = pd.read_csv(spec_dir / "data" / "pig.csv").assign(one=1)
    exact = _fit(spec_dir, PIG_RI, pig, "exact")
    ones = _fit(spec_dir, PIG_RI + "weights: {fweight: one}\n", pig, "ones")
    assert exact.integration["method"] == "exact" and ones.integration["method"] == "adaptive"
    _same_fit(exact, ones)
    robust = _fit(spec_dir, PIG_RI + "estimation: {vce: robust}\n", pig, "robust")
    assert robust.integration["method"] == "adaptive" and abs(robust.loglik - exact.loglik) < 1e-6


def test_gaussian_frequency_weights_fit_as_replicated_rows(spec_dir):
    pig = pd.read_csv(spec_dir / "data" / "pig.csv")
    pig["f"] = np.random.default_rng(3).integers(1, 4, len(pig))
    replicated = pig.loc[pig.index.repeat(pig["f"])]
    _same_fit(_fit(spec_dir, PIG_RI, replicated, "rep"), _fit(spec_dir, PIG_RI + "weights: {fweight: f}\n", pig, "fw"))


def test_logit_frequency_weights_fit_as_replicated_rows(spec_dir):
    data = _logit_data(1)
    data["f"] = np.random.default_rng(2).integers(1, 4, len(data))
    replicated = data.loc[data.index.repeat(data["f"])]
    _same_fit(_fit(spec_dir, LOGIT_RI, replicated, "rep"),
              _fit(spec_dir, LOGIT_RI + "weights: {fweight: f}\n", data, "fw"))


def test_collapsing_identical_rows_into_frequency_weights_gives_the_same_fit(spec_dir):
    data = _logit_data(4)
    collapsed = data.groupby(["cluster", "x", "y"], as_index=False).size().rename(columns={"size": "n"})
    assert len(collapsed) < len(data)
    _same_fit(_fit(spec_dir, LOGIT_RI, data, "all"), _fit(spec_dir, LOGIT_RI + "weights: {fweight: n}\n", collapsed, "col"))


def test_collapsing_identical_clusters_into_integer_level_weights_gives_the_same_fit(spec_dir):
    base = _logit_data(5, clusters=25)
    copies = np.random.default_rng(6).integers(1, 4, 25)
    expanded = pd.concat([base[base.cluster == c].assign(cluster=f"{c}_{k}")
                          for c in range(25) for k in range(copies[c])])
    weighted = base.assign(n=copies[base.cluster])
    level_w = LOGIT_RI.replace("id: cluster}", "id: cluster, pweight: n}") + "estimation: {vce: oim, integration: {points: 12}}\n"
    level_w = level_w.replace("estimation: {integration: {points: 12}}\n", "", 1)
    _same_fit(_fit(spec_dir, LOGIT_RI, expanded, "exp"), _fit(spec_dir, level_w, weighted, "lw"))


THREE_LEVEL = """\
name: w3
data: {path: data/three.csv}
levels:
  - {name: class, id: class, pweight: wc}
  - {name: school, id: school, pweight: ws}
responses:
  - {name: y, family: binomial}
fixed: "y ~ x"
random:
  - {level: class, terms: [1]}
  - {level: school, terms: [1]}
weights: {pweight: wi}
estimation: {integration: {points: 10}}
"""


def _three_level(folder):
    rng = np.random.default_rng(11)
    rows = []
    for s in range(8):
        ws, v = rng.uniform(1, 3), rng.normal(0, 0.8)
        for c in range(3):
            wc, u = rng.uniform(0.5, 2), rng.normal(0, 1.0)
            for _ in range(rng.integers(2, 5)):
                x = rng.normal()
                y = int(rng.random() < 1 / (1 + np.exp(-(0.2 + 0.7 * x + u + v))))
                rows.append((s, f"{s}-{c}", x, y, rng.uniform(0.5, 3), wc, ws))
    frame = pd.DataFrame(rows, columns=["school", "class", "x", "y", "wi", "wc", "ws"])
    frame.to_csv(folder / "data" / "three.csv", index=False)
    return frame, prepare(write_spec(folder, THREE_LEVEL, "three.yaml")).model


def _nested_gh(frame: pd.DataFrame, b0: float, b1: float, s2: float, s3: float, points: int = 60) -> np.ndarray:
    """Per school: log int exp(sum_c w_c log int exp(sum_i w_i log f_i) phi(u) du) phi(v) dv, plain Gauss-Hermite."""
    x, wq = np.polynomial.hermite_e.hermegauss(points)
    wq = wq / np.sqrt(2 * np.pi)
    out = []
    for _, school in frame.groupby("school", sort=True):
        inner_sum = np.zeros(points)  # over v nodes
        for _, cls in school.groupby("class"):
            eta = (b0 + b1 * cls.x.to_numpy())[:, None, None] + s2 * x[None, :, None] + s3 * x[None, None, :]
            y = cls.y.to_numpy()[:, None, None]
            logf = y * eta - np.logaddexp(0, eta)
            inner = np.log(np.sum(wq[:, None] * np.exp(np.sum(cls.wi.to_numpy()[:, None, None] * logf, axis=0)), axis=0))
            inner_sum += cls.wc.iloc[0] * inner
        out.append(school.ws.iloc[0] * np.log(np.sum(wq * np.exp(inner_sum))))
    return np.array(out)


def test_three_level_log_pseudolikelihood_matches_an_independent_nested_sum(spec_dir):
    frame, model = _three_level(spec_dir)
    obj = QuadratureObjective(model, integration_plan(model))
    values = model.partable.start_values.copy()
    names = list(model.partable.names)
    chosen = {"Intercept": 0.3, "x": 0.6, "sd(_cons)@class": 0.9, "sd(_cons)@school": 0.7}
    for name, v in chosen.items():
        values[names.index(name)] = v
    free = model.partable.pack(values)
    ll, _ = obj.readapted(free)
    ref = _nested_gh(frame, 0.3, 0.6, 0.9, 0.7)
    assert abs(ll - ref.sum()) < 1e-6 * abs(ref.sum()), (ll, ref.sum())


def test_cluster_scores_are_the_derivatives_of_each_clusters_contribution(spec_dir):
    frame, model = _three_level(spec_dir)
    obj = QuadratureObjective(model, integration_plan(model))
    free = model.partable.pack(model.partable.start_values) + 0.1
    ad = obj.adapt(free)
    scores = cluster_scores(obj, free, ad, model.weighting.cluster_codes[obj.lay.rows.original])
    h = 1e-6
    for j in range(len(free)):
        step = np.zeros_like(free)
        step[j] = h
        tops = [evaluate(obj.lay.hierarchy, obj.pieces(free + s).pred, obj.pieces(free + s).fam, ad).top
                for s in (step, -step)]
        np.testing.assert_allclose(scores[:, j], (tops[0] - tops[1]) / (2 * h), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(scores.sum(axis=0), obj.frozen(free, ad)[1], rtol=1e-10, atol=1e-10)


def test_three_level_weighted_fit_converges_with_robust_ses(spec_dir):
    _, model = _three_level(spec_dir)
    fit = estimate(model)
    assert fit.converged
    assert fit.extras["vce"] == {"type": "robust", "cluster": "school", "n_clusters": 8}
    assert np.all(np.isfinite(fit.se()[model.beta_rows]))


def test_laplace_fit_of_a_weighted_linear_model_equals_adaptive_quadrature(spec_dir):
    pig = pd.read_csv(spec_dir / "data" / "pig.csv")
    pig["w"] = np.random.default_rng(8).uniform(0.5, 2.0, len(pig))
    adaptive = _fit(spec_dir, PIG_RI + "weights: {pweight: w}\n", pig, "ad")
    laplace = _fit(spec_dir, PIG_RI + "weights: {pweight: w}\nestimation: {integration: {method: laplace}}\n", pig, "lap")
    _same_fit(adaptive, laplace, se_rtol=1e-3)


def test_robust_ses_of_a_linear_regression_are_the_clustered_sandwich(spec_dir):
    pig = pd.read_csv(spec_dir / "data" / "pig.csv")
    pig["pen"] = pig["id"] // 4
    text = ("name: w\ndata: {path: data/DATA}\nresponses:\n  - {name: weight, family: gaussian}\n"
            "fixed: \"weight ~ week\"\nestimation: {vce: {cluster: pen}}\n")
    fit = _fit(spec_dir, text, pig, "ols")
    X = np.column_stack([np.ones(len(pig)), pig.week.to_numpy(float)])
    y = pig.weight.to_numpy(float)
    beta = np.linalg.lstsq(X, y, rcond=None)[0]
    e = y - X @ beta
    groups = pig.pen.to_numpy()
    S = np.array([X[groups == g].T @ e[groups == g] for g in np.unique(groups)])
    G = len(S)
    bread = np.linalg.inv(X.T @ X)
    V = G / (G - 1) * bread @ S.T @ S @ bread
    rows = _table(fit)
    np.testing.assert_allclose([rows["Intercept"][1], rows["week"][1]], np.sqrt(np.diag(V)), rtol=1e-5)
    assert fit.extras["vce"] == {"type": "robust", "cluster": "pen", "n_clusters": G}


@pytest.mark.parametrize("cluster", ["id", "pig"])
def test_clustering_on_the_top_level_by_name_or_column_is_the_default_robust(spec_dir, cluster):
    pig = pd.read_csv(spec_dir / "data" / "pig.csv")
    default = _fit(spec_dir, PIG_RI + "estimation: {vce: robust}\n", pig, "d")
    named = _fit(spec_dir, PIG_RI + f"estimation: {{vce: {{cluster: {cluster}}}}}\n", pig, "n")
    assert named.extras["vce"]["n_clusters"] == default.extras["vce"]["n_clusters"] == 48
    np.testing.assert_allclose(named.se(), default.se(), rtol=1e-8)


def test_vectorised_cluster_scores_equal_one_gradient_per_cluster(spec_dir):
    frame, model = _three_level(spec_dir)
    obj = QuadratureObjective(model, integration_plan(model))
    free = model.partable.pack(model.partable.start_values) + 0.05
    ad = obj.adapt(free)
    clusters = model.weighting.cluster_codes[obj.lay.rows.original]
    np.testing.assert_allclose(cluster_scores(obj, free, ad, clusters),
                               cluster_scores_by_subsets(obj, free, ad, clusters), rtol=1e-10, atol=1e-10)


def test_laplace_logit_frequency_weights_fit_as_replicated_rows(spec_dir):
    data = _logit_data(9)
    data["f"] = np.random.default_rng(10).integers(1, 4, len(data))
    replicated = data.loc[data.index.repeat(data["f"])]
    laplace = LOGIT_RI.replace("{points: 12}", "{method: laplace}")
    rep = _fit(spec_dir, laplace, replicated, "rep")
    fw = _fit(spec_dir, laplace + "weights: {fweight: f}\n", data, "fw")
    _same_fit(rep, fw, se_rtol=1e-3)
    assert "lr_test" in fw.extras and "vce" not in fw.extras  # frequency weights: a likelihood, oim SEs


def test_robust_fits_report_no_lr_test(spec_dir):
    data = _logit_data(12)
    fit = _fit(spec_dir, LOGIT_RI.replace("{integration: {points: 12}}", "{vce: robust, integration: {points: 12}}"),
               data, "rob")
    assert fit.extras["vce"]["n_clusters"] == data.cluster.nunique() and "lr_test" not in fit.extras

"""FitResult: the immutable outcome of estimation, read by results JSON and reports."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mlmrun.compile.choice import n_observations
from mlmrun.compile.model import CompiledModel

if TYPE_CHECKING:
    from mlmrun.pipeline import Prepared


@dataclass(frozen=True)
class FitResult:
    """Estimates on the parameter table plus fit statistics.

    `values` are natural-scale values of every partable row; `free` the optimiser's
    vector at the optimum; `cov_free` its covariance (inverse observed information),
    from which SEs of rows and of derived quantities (var, cov, corr) follow by the
    delta method.
    """

    model: CompiledModel
    values: np.ndarray
    free: np.ndarray
    cov_free: np.ndarray | None
    loglik: float
    method: str
    integration: dict[str, Any]
    converged: bool
    iterations: int
    n_evaluations: int
    fit_seconds: float
    warnings: tuple[str, ...] = ()
    extras: dict[str, Any] = field(default_factory=dict)
    """Method-specific extras: 'lr_test' (vs. model without latent variables), 'point_check',
    'empirical_bayes', 'fixed_vcov' (exact path: vcov of beta) and so on."""

    @property
    def n_params(self) -> int:
        return int(self.model.partable.n_free)

    @property
    def n_obs(self) -> int:
        """Observations: rows (a choice set counted once, compile/choice.py); with frequency weights, the
        rows they stand for."""
        wt = self.model.weighting
        if wt is not None and wt.frequency and not wt.sampling and wt.row is not None:
            return int(round(float(wt.row.sum())))
        return n_observations(self.model)

    @property
    def aic(self) -> float:
        return -2 * self.loglik + 2 * self.n_params

    @property
    def bic(self) -> float:
        return -2 * self.loglik + np.log(self.extras.get("n_independent", self.n_obs)) * self.n_params

    def se(self) -> np.ndarray:
        """Standard error of every partable row (nan for fixed rows or when unavailable)."""
        pt = self.model.partable
        out = np.full(len(pt), np.nan)
        if self.cov_free is None:
            return out
        J = pt.jacobian(self.free)
        unknown = np.isnan(np.diag(self.cov_free))  # coordinates without an SE (e.g. a correlation at +-1)
        var = np.einsum("ik,kl,il->i", J, np.nan_to_num(self.cov_free), J)
        out = np.sqrt(np.clip(var, 0, None))
        out[(J[:, unknown] != 0).any(axis=1)] = np.nan
        out[pt.frame["free"].to_numpy() == 0] = np.nan
        return out


@dataclass(frozen=True)
class ParamRow:
    """One row of the estimates table: a partable row, or a row derived from partable rows.

    `se` is nan when unavailable (fixed rows, no covariance matrix). Derived rows are
    `var(...)` for every SD row (random-effect and residual) and `cov(...)` for every
    correlation row, so results compare with peers that report either scale.
    """

    name: str
    block: str
    estimate: float
    se: float
    free: bool
    level: str = ""
    lhs: str = ""
    rhs: str = ""
    derived: bool = False


Derivation = tuple[str, str, list[int], Callable[[np.ndarray], float]]
"""(name, block, source partable rows, values -> derived value)."""


def variance_name(sd_name: str) -> str:
    """Name of the derived variance row of an SD row: sd(_cons)@pig -> var(_cons)@pig."""
    return "var(" + sd_name[3:] if sd_name.startswith("sd(") else f"var({sd_name})"


def covariance_name(corr_name: str) -> str:
    """Name of the derived covariance row of a correlation row: corr(a,b)@l -> cov(a,b)@l."""
    return "cov(" + corr_name[5:] if corr_name.startswith("corr(") else f"cov({corr_name})"


def _derivations(model: CompiledModel) -> list[Derivation]:
    """What to derive: var() for each SD row, cov() for each correlation row (lower triangle of its block)."""
    pt = model.partable
    names = pt.names
    out: list[Derivation] = []
    for i in list(pt.rows_of("sd")) + list(pt.rows_of("residual")):
        out.append((variance_name(str(names[i])), "variance" if pt.frame.at[i, "block"] == "sd" else "residual",
                    [int(i)], lambda v, i=int(i): float(v[i] * abs(v[i]))))  # signed: a Heywood case stays negative
    for block in model.blocks:
        if not len(block.corr_rows):
            continue
        pairs = zip(*np.tril_indices(len(block.members), -1), strict=True)
        for row, (a, b) in zip(block.corr_rows, pairs, strict=True):
            sa, sb = int(block.sd_rows[a]), int(block.sd_rows[b])
            out.append((covariance_name(str(names[row])), "covariance", [int(row), sa, sb],
                        lambda v, r=int(row), sa=sa, sb=sb: float(v[r] * v[sa] * v[sb])))
    for dl in model.discrete:
        from mlmrun.compile.discrete import derivations

        out += derivations(dl, model.levels[dl.level].name)
    for row, sa, sb in residual_correlations(model):  # exchangeable corr(e), unstructured/banded corr(e0,e4)
        out.append((covariance_name(str(names[row])), "rescorr", [row, sa, sb],
                    lambda v, r=row, sa=sa, sb=sb: float(v[r] * v[sa] * v[sb])))
    return out


def residual_correlations(model: CompiledModel) -> list[tuple[int, int, int]]:
    """(correlation row, SD row, SD row) of every residual correlation of a residual covariance structure."""
    st = model.residual
    if st is None or st.structure not in ("exchangeable", "unstructured", "banded"):
        return []
    out = []
    for grp in st.groups:
        if st.structure == "exchangeable":
            out.append((int(grp.par_rows[0]), int(grp.sd_rows[0]), int(grp.sd_rows[0])))
        else:
            out += [(int(r), int(grp.sd_rows[a]), int(grp.sd_rows[b])) for r, (a, b) in zip(grp.par_rows, grp.pairs,
                                                                                         strict=True)]
    return out


def _numeric_jacobian(func: Callable[[np.ndarray], np.ndarray], x: np.ndarray) -> np.ndarray:
    """Central-difference Jacobian of func at x (derived rows are smooth, cheap functions of the table)."""
    f0 = func(x)
    jac = np.zeros((len(f0), len(x)))
    for k in range(len(x)):
        h = 1e-6 * max(1.0, abs(float(x[k])))
        up, down = x.copy(), x.copy()
        up[k] += h
        down[k] -= h
        jac[:, k] = (func(up) - func(down)) / (2 * h)
    return jac


def derived_rows(fit: FitResult) -> list[ParamRow]:
    """var/cov rows with delta-method SEs: J cov_free J' with J the numeric Jacobian through ParTable.unpack."""
    model = fit.model
    pt = model.partable
    derivations = _derivations(model)
    if not derivations:
        return []
    frame = pt.frame
    is_free = frame["free"].to_numpy() != 0
    estimates = np.array([fn(fit.values) for _, _, _, fn in derivations])
    se = np.full(len(derivations), np.nan)
    if fit.cov_free is not None and pt.n_free:
        jac = _numeric_jacobian(lambda x: np.array([fn(pt.unpack(x)) for _, _, _, fn in derivations]),
                                np.asarray(fit.free, dtype=float))
        unknown = np.isnan(np.diag(fit.cov_free))  # free coordinates without an SE (see FitResult.se)
        se = np.sqrt(np.clip(np.einsum("ik,kl,il->i", jac, np.nan_to_num(fit.cov_free), jac), 0, None))
        # also where the derivative is 0 (var = sd^2 at sd = 0): a source row without an SE means none for the row
        J = np.asarray(pt.jacobian(np.asarray(fit.free, dtype=float)))
        sourced = np.array([(J[src][:, unknown] != 0).any() for _, _, src, _ in derivations], dtype=bool)
        se[sourced | (np.abs(jac[:, unknown]) > 0).any(axis=1)] = np.nan
    rows = []
    for (name, block, sources, _), est, s in zip(derivations, estimates, se, strict=True):
        free = bool(is_free[sources].any())
        first = sources[0]
        rows.append(ParamRow(name, block, float(est), float(s) if free else np.nan, free,
                             str(frame.at[first, "level"]), str(frame.at[first, "lhs"]),
                             str(frame.at[first, "rhs"]), derived=True))
    return rows


def parameter_rows(fit: FitResult) -> list[ParamRow]:
    """Every partable row with its estimate and SE, followed by the derived var/cov rows.

    The one estimates table that results.json and the reports both read. Fixed effects take
    their SEs from extras['fixed_vcov'] when the estimator supplies it (the exact Gaussian
    path, where beta is profiled out and its covariance comes from the GLS step).
    """
    pt = fit.model.partable
    frame = pt.frame
    se = fit.se()
    vcov = fit.extras.get("fixed_vcov")
    beta_rows = fit.model.beta_rows
    if vcov is not None and np.shape(vcov) == (len(beta_rows), len(beta_rows)):
        se = se.copy()
        se[beta_rows] = np.sqrt(np.clip(np.diag(np.asarray(vcov, dtype=float)), 0, None))
    rows = []
    for i in range(len(pt)):
        free = bool(frame.at[i, "free"])
        rows.append(ParamRow(str(frame.at[i, "name"]), str(frame.at[i, "block"]), float(fit.values[i]),
                             float(se[i]) if free else np.nan, free, str(frame.at[i, "level"]),
                             str(frame.at[i, "lhs"]), str(frame.at[i, "rhs"])))
    return rows + derived_rows(fit)


def level_summaries(model: CompiledModel) -> list[dict[str, Any]]:
    """Units per level and rows per unit (min/avg/max), as Stata's group summary."""
    out = []
    for lv in model.levels:
        sizes = lv.sizes()
        empty = len(sizes) == 0
        out.append({"name": lv.name, "n_units": int(lv.n_units), "min": 0 if empty else int(sizes.min()),
                    "avg": 0.0 if empty else float(sizes.mean()), "max": 0 if empty else int(sizes.max())})
    return out


def jsonable(obj: Any) -> Any:
    """Plain JSON values: numpy to Python, nan/inf to None, tuples to lists (JSON has no NaN)."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj) if np.isfinite(obj) else None
    if obj is None or isinstance(obj, str):
        return obj
    return str(obj)


def lr_test(fit: FitResult) -> dict[str, Any] | None:
    """The LR test vs. the model without latent variables as {chi2, df, p, kind, note, loglik_null}.

    Estimators may name the fields differently (statistic/p_value/distribution); this is
    the one place that reads them, for results.json and reports alike. `kind` is
    'chibar2' for a single variance on the boundary (Stata's chibar2(01)), else 'chi2'.
    """
    raw = fit.extras.get("lr_test")
    if not raw:
        return None
    kind = raw.get("kind") or ("chibar2" if str(raw.get("distribution", "")).startswith("chibar2") else "chi2")
    note = "" if kind == "chibar2" else "Note: LR test is conservative and provided only for reference."
    return {"chi2": raw.get("chi2", raw.get("statistic")), "df": raw.get("df"), "p": raw.get("p", raw.get("p_value")),
            "kind": kind, "note": note, "loglik_null": raw.get("loglik_null", raw.get("null_loglik"))}


JSON_EXTRAS = ("point_check", "boundary", "optimizer", "icc", "discrete", "fit_measures", "standardized")
"""FitResult.extras copied into results.json (small summaries; per-unit arrays such as
the fixed-effects vcov stay out; empirical Bayes predictions go in compactly, see below)."""

EB_MAX_VALUES = 200_000
"""Empirical Bayes predictions go into results.json up to this many numbers (means and SDs);
beyond that the file would be dominated by them, so they stay out."""


def empirical_bayes_json(fit: FitResult) -> dict[str, Any] | None:
    """The quadrature engine's empirical Bayes predictions, compact, for results.json (None when absent or huge).

    Layout per level (predict.LevelPrediction.as_dict): {"units": [labels], LATENT: {"mean": [...],
    "sd": [...]}, ...}, posterior means and SDs rounded to 6 significant digits (the predictions'
    own quadrature error is larger). Any other layout stays out of the file. Unit labels are those of
    data.levels: ids equal as numbers are one unit, and a within_parent unit reads "3/2" (unit 2
    within parent unit 3; UNIT_PATH_SEPARATOR).
    """
    eb = fit.extras.get("empirical_bayes")
    if not isinstance(eb, dict) or not eb:
        return None
    if not all(isinstance(v, dict) and isinstance(v.get("units"), list) for v in eb.values()):
        return None
    count = sum(2 * len(v["units"]) * (len(v) - 1) for v in eb.values())
    if count > EB_MAX_VALUES:
        return None

    def rounded(values: Any) -> list[float | None]:
        return [float(f"{x:.6g}") if x is not None and np.isfinite(x) else None for x in values]

    out: dict[str, Any] = {}
    for level, block in eb.items():
        entry: dict[str, Any] = {"units": [str(u) for u in block["units"]]}
        for name, pred in block.items():
            if name != "units" and isinstance(pred, dict):
                entry[name] = {key: rounded(pred[key]) for key in ("mean", "sd") if key in pred}
        out[str(level)] = entry
    return out


def _integration(fit: FitResult) -> dict[str, Any]:
    method = fit.integration.get("method", "exact")
    points = fit.integration.get("points")
    out: dict[str, Any] = {"method": method, "points": points if isinstance(points, int) else None}
    if isinstance(points, dict):
        out["points_by_level"] = points
    return out


def results_dict(fit: FitResult, spec_path: str | Path, prepared: Prepared, total_seconds: float | None = None,
                 spec_sha256: str | None = None) -> dict[str, Any]:
    """The results.json document (DESIGN.md section 3) plus extra keys: n_dropped_missing, derived, extras,
    lr_test and (quadrature fits) empirical_bayes.

    Nothing in it depends on the clock, so a rerun of the same spec on the same data writes the same
    bytes and a committed results.json changes only with the model or the data: wall-clock times go
    to run.json (report/outputs.py `run_dict`). `total_seconds` is accepted for callers that pass it and not written.
    `data.sha256` is the SHA-256 of the data file's bytes (post-estimation refuses results of other data);
    `spec_sha256` replaces the spec file's digest for a spec given as a dict (the Python API)."""
    from mlmrun import __version__

    model = fit.model
    rows = parameter_rows(fit)
    doc: dict[str, Any] = {
        "mlmrun_version": __version__,
        "spec": {"name": prepared.spec.name,
                 "sha256": spec_sha256 or hashlib.sha256(Path(spec_path).read_bytes()).hexdigest()},
        "data": {"sha256": model.data_sha256, "n_rows": int(model.n_rows_read), "n_used": int(model.n)},
        "method": fit.method,
        "integration": _integration(fit),
        "converged": bool(fit.converged),
        "loglik": fit.loglik,
        "n_params": fit.n_params,
        "aic": fit.aic,
        "bic": fit.bic,
        "parameters": [{"name": r.name, "block": r.block, "estimate": r.estimate, "se": r.se, "free": r.free}
                       for r in rows],
        "levels": level_summaries(model),
        "iterations": int(fit.iterations),
        "warnings": list(fit.warnings),
        "n_dropped_missing": int(model.n_dropped_missing),
        "n_evaluations": int(fit.n_evaluations),
        "derived": [r.name for r in rows if r.derived],
    }
    if fit.extras.get("lr_test"):
        doc["lr_test"] = lr_test(fit)
    doc["vce"] = dict(fit.extras.get("vce") or {"type": "oim"})
    doc["wald"] = fit.extras.get("wald")
    if fit.model.weighting is not None and (fit.model.weighting.sampling or fit.model.weighting.frequency):
        doc["weights"] = weights_json(prepared.spec)
    if model.residual is not None:  # issue 12: the structure its rescorr/residual rows belong to
        st = model.residual
        res_spec = model.spec.responses[st.equation].residuals
        doc["residual_structure"] = {"structure": st.structure, "title": st.title, "time": res_spec.time,
                                     "by": st.by, "order": st.order if st.structure in ("ar", "ma", "banded", "toeplitz") else None,
                                     "level": model.levels[st.level].name}
    for key in JSON_EXTRAS:
        if key in fit.extras:
            doc[key] = fit.extras[key]
    posterior = fit.extras.get("class_posterior")
    if posterior and len(posterior["units"]) * len(posterior["probabilities"][0]) <= EB_MAX_VALUES:
        doc["class_posterior"] = posterior
    eb = empirical_bayes_json(fit)
    if eb is not None:
        doc["empirical_bayes"] = eb
    return jsonable(doc)


def weights_json(spec: Any) -> dict[str, Any]:
    """The spec's weights: row fweight/pweight/pwscale and each level's pweight; the loglik is a pseudolikelihood
    when any pweight is given."""
    w = spec.weights
    levels = {lv.name: lv.pweight for lv in spec.levels if lv.pweight}
    return {"fweight": w.fweight if w else None, "pweight": w.pweight if w else None,
            "pwscale": w.pwscale if w else None, "levels": levels,
            "pseudolikelihood": bool(levels or (w is not None and w.pweight))}


def results_json(doc: dict[str, Any]) -> str:
    """Serialise a results document; refuses NaN so the output is strict JSON."""
    return json.dumps(jsonable(doc), indent=2, allow_nan=False) + "\n"

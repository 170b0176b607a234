"""A fitted model read back: the spec compiled again on its data, and results.json's estimates on its table.

results.json records the SHA-256 of the data file (`data.sha256`) and every
parameter-table row by name (`parameters`, with `derived` naming the var/cov
rows computed from them). Reading a fit back rebuilds the compiled model from
the spec and its data, then refuses, with what to do instead, when the data
file is not the one fitted (another hash) or when the parameter table differs
(the spec changed its model: a row missing, a row added, a fixed value
changed, an equality constraint broken). What follows (predictions,
simulation) then reads exactly the model that was fitted.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from mlmrun.data.files import read_regular_file
from mlmrun.display import display_path, excerpt
from mlmrun.pipeline import Prepared, prepare
from mlmrun.postest.discrete import with_fitted_points
from mlmrun.postest.moments import with_natural_partable
from mlmrun.postest.usage import UsageError
from mlmrun.results import FitResult

FIXED_TOLERANCE = 1e-9
"""Relative agreement required between a fixed row's value in the spec and in results.json, and of rows
constrained equal."""


def read_results(results_path: str | Path) -> dict[str, Any]:
    """results.json as a dict; UsageError naming the file when it is not a results document."""
    path = Path(results_path)
    shown = display_path(path)
    if not path.exists():
        raise UsageError(f"--results: no file {shown}; give the results.json that `mlmrun fit` wrote (in its --out folder)")
    raw = read_regular_file(path, "--results", "results file")
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UsageError(f"--results: {shown} is not a JSON file ({' '.join(str(exc).split())[:120]}); "
                        "give the results.json that `mlmrun fit` wrote") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("parameters"), list) or not isinstance(doc.get("data"), dict):
        raise UsageError(f"--results: {shown} is not an mlmrun results.json (no `parameters` list or `data` entry); "
                        "give the results.json that `mlmrun fit` wrote")
    return doc


def _estimates(doc: dict[str, Any], shown: str) -> dict[str, float]:
    derived = set(doc.get("derived") or [])
    out: dict[str, float] = {}
    for row in doc["parameters"]:
        if not isinstance(row, dict) or not isinstance(row.get("name"), str):
            raise UsageError(f"--results: {shown}: a `parameters` entry has no name; give the results.json that "
                            "`mlmrun fit` wrote")
        if row["name"] in derived:
            continue
        value = row.get("estimate")
        if not isinstance(value, int | float) or isinstance(value, bool) or not np.isfinite(value):
            raise UsageError(f"--results: {shown}: parameter {excerpt(row['name'])} has no finite estimate "
                            f"({excerpt(value)}); refit the model")
        out[row["name"]] = float(value)
    return out


def fitted_from_results(prepared: Prepared, doc: dict[str, Any], shown: str = "results.json") -> FitResult:
    """The FitResult a results document describes, on `prepared`'s model (checked: data hash and parameter table).

    `cov_free` is None (results.json keeps SEs, not the covariance of the estimates);
    the file's SEs are in `extras['results_se']` by parameter name.
    """
    model = prepared.model
    if isinstance(doc.get("integration"), dict) and doc["integration"].get("method") == "moments":
        model = with_natural_partable(model)  # moments fits report variances that may be negative (Heywood)
    model = with_fitted_points(model, doc)  # `discrete: auto` and merged points change the number of points
    want = model.data_sha256
    got = doc["data"].get("sha256")
    if got is None:
        raise UsageError(f"--results: {shown} records no data hash (`data.sha256`), so it cannot be checked against "
                        "the spec's data; refit with this version of mlmrun")
    if got != want:
        raise UsageError(f"--results: {shown} was fitted to data with SHA-256 {str(got)[:12]}..., but the spec's data "
                        f"file now has SHA-256 {want[:12]}...; refit (`mlmrun fit`) or give the results of this data")
    estimates = _estimates(doc, shown)
    pt = model.partable
    names = [str(n) for n in pt.names]
    missing = [n for n in names if n not in estimates]
    extra = [n for n in estimates if n not in set(names)]
    if missing or extra:
        parts = ([f"the spec's parameters {excerpt(missing[:5], 200)} are not in it"] if missing else []) + \
                ([f"its parameters {excerpt(extra[:5], 200)} are not in the spec's model"] if extra else [])
        raise UsageError(f"--results: {shown} does not belong to this spec: {'; '.join(parts)}; "
                        "give the results of this spec, or refit it")
    values = np.array([estimates[n] for n in names])
    free = pt.pack(values)
    unpacked = pt.unpack(free)
    off = np.flatnonzero(np.abs(unpacked - values) > FIXED_TOLERANCE * np.maximum(1.0, np.abs(values)))
    if len(off):
        bad = names[int(off[0])]
        raise UsageError(f"--results: {shown}: parameter {excerpt(bad)} is {values[off[0]]:g} there, but the spec fixes "
                        f"it or constrains it equal to another ({unpacked[off[0]]:g}); give the results of this spec, "
                        "or refit it")
    integration = doc.get("integration") if isinstance(doc.get("integration"), dict) else {}
    se = {r["name"]: r.get("se") for r in doc["parameters"] if isinstance(r, dict)}
    return FitResult(model=model, values=unpacked, free=free, cov_free=None, loglik=float(doc.get("loglik") or np.nan),
                     method=str(doc.get("method", "ML")), integration=integration,
                     converged=bool(doc.get("converged", False)), iterations=int(doc.get("iterations") or 0),
                     n_evaluations=int(doc.get("n_evaluations") or 0),
                     fit_seconds=float((doc.get("timing") or {}).get("fit_seconds") or 0.0),
                     warnings=tuple(str(w) for w in doc.get("warnings") or []), extras={"results_se": se})


def load_fitted(spec_path: str | Path, results_path: str | Path) -> FitResult:
    """Rebuild the compiled model from spec + data and put results.json's estimates on its parameter vector.

    Raises UsageError when the data hash or the parameter table does not match (see module doc).
    """
    prepared = prepare(spec_path)
    doc = read_results(results_path)
    return fitted_from_results(prepared, doc, display_path(Path(results_path)))

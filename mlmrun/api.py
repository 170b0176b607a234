"""The Python API for notebooks: `mlmrun.fit(spec, data=None)` -> Fit.

`spec` is a spec file's path or a dict with the same keys. A dict goes through
the same YAML reader and schema as a file (it is written out as YAML text and
read back, so every budget and check applies), and the same security rules:
its `data.path` and `estimation.start_from` must lie inside the current
working directory (a dict's folder), and formulas pass the same allow-list.
`data` is an optional pandas DataFrame used instead of `data.path` (the spec's
filters and stacking still apply; its SHA-256 is that of the frame's content,
pandas' row hashes, so results of one frame are not read against another).
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from mlmrun.compile import compile_model
from mlmrun.compile.spec_checks import check_spec
from mlmrun.compile.start_from import apply_start_from
from mlmrun.data.load import LoadedData, load_data
from mlmrun.data.stata import code_columns
from mlmrun.errors import SpecError
from mlmrun.estimate import estimate
from mlmrun.likelihood.preflight import preflight
from mlmrun.pipeline import Prepared, prepare
from mlmrun.postest.frames import filtered_rows, model_rows, numbered, read_data_file
from mlmrun.postest.newdata import new_predictions
from mlmrun.postest.predict import fitted_predictions, unit_table
from mlmrun.postest.units import EbKind, unit_predictions
from mlmrun.report import render_html, render_markdown, summarize
from mlmrun.report.format import ci, z_and_p
from mlmrun.results import FitResult, parameter_rows, results_dict, results_json
from mlmrun.spec.loader import load_spec, validate_spec_dict
from mlmrun.spec.yaml_read import parse_yaml

DICT_SOURCE = "<spec dict>"


def frame_sha256(frame: pd.DataFrame) -> str:
    """SHA-256 of a DataFrame's columns and content (pandas' per-row hashes, index left out)."""
    digest = hashlib.sha256("\x1f".join(map(str, frame.columns)).encode("utf-8"))
    digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return digest.hexdigest()


def _spec_from(spec: str | Path | dict[str, Any], data: pd.DataFrame | None) -> tuple[Any, dict, Path, bytes]:
    """(Spec, line marks, folder its files are relative to, the spec's text as bytes)."""
    if isinstance(spec, dict):
        content = dict(spec)
        if data is not None and "data" not in content:
            content["data"] = {"path": "dataframe.csv"}
        text = yaml.safe_dump(content, sort_keys=False, allow_unicode=True)
        parsed, marks = parse_yaml(text, DICT_SOURCE)
        return validate_spec_dict(parsed, marks, DICT_SOURCE), marks, Path.cwd(), text.encode("utf-8")
    path = Path(spec)
    loaded, marks = load_spec(path)
    return loaded, marks, path.parent, path.read_bytes()


def _prepare(spec: str | Path | dict[str, Any], data: pd.DataFrame | None) -> tuple[Prepared, pd.DataFrame, bytes]:
    """Prepared (as the CLI's), the raw data numbered by row, and the spec's bytes."""
    if isinstance(spec, str | Path) and data is None:
        prepared = prepare(spec)
        return prepared, read_data_file(prepared.data.path, prepared.model.data_sha256), Path(spec).read_bytes()
    loaded, marks, folder, text = _spec_from(spec, data)
    check_spec(loaded)
    if data is None:
        loaded_data = load_data(loaded.data, folder, numeric=code_columns(loaded))
        raw = read_data_file(loaded_data.path, loaded_data.sha256)
    else:
        frame = filtered_rows(loaded, data.reset_index(drop=True))
        loaded_data = LoadedData(frame=frame, sha256=frame_sha256(data), n_rows=len(frame), path="<DataFrame>")
        raw = numbered(data.reset_index(drop=True))
    model = apply_start_from(compile_model(loaded, loaded_data), folder)
    preflight(model)
    where = Path(DICT_SOURCE) if isinstance(spec, dict) else Path(spec)
    return Prepared(where, loaded, marks, loaded_data, model), raw, text


def fit(spec: str | Path | dict[str, Any], data: pd.DataFrame | None = None) -> Fit:
    """Fit a spec (path or dict), optionally on a DataFrame instead of its data file; see the module doc."""
    start = time.perf_counter()
    try:
        prepared, raw, text = _prepare(spec, data)
    except SpecError as exc:
        if len(exc.problems) > 1 or exc.problems[0] != str(exc):  # a notebook shows str(exc): every problem in it
            exc.args = ("\n".join([str(exc), *exc.problems]),)
        raise
    result = estimate(prepared.model)
    return Fit(result, prepared, raw, time.perf_counter() - start, hashlib.sha256(text).hexdigest())


_WALD_BLOCKS = ("fixed", "loading", "B", "Gamma", "threshold", "hetero")
_CI_SCALE = {"sd": "log", "residual": "log", "shape": "log", "variance": "log", "corr": "atanh"}


@dataclass
class Fit:
    """A fitted model with what is done with it next: report, parameter table, EB predictions, predictions."""

    result: FitResult
    prepared: Prepared
    raw: pd.DataFrame
    total_seconds: float
    spec_sha256: str
    _predictions: dict[str, Any] = field(default_factory=dict, repr=False)

    def summary(self) -> str:
        """The report as text (Markdown, as report.md)."""
        return render_markdown(summarize(self.result, self.prepared, self.total_seconds))

    def _repr_html_(self) -> str:
        return render_html(summarize(self.result, self.prepared, self.total_seconds))

    @property
    def params(self) -> pd.DataFrame:
        """Parameter table: name, block, estimate, se, z and p (Wald, for coefficients: fixed effects, loadings,
        B, Gamma, thresholds), 95% CI (log scale for SDs/variances, atanh for correlations, as the report),
        free, derived (the var/cov rows computed from SDs and correlations)."""
        rows = parameter_rows(self.result)
        bounds = [ci(r.estimate, r.se, _CI_SCALE.get(r.block, "linear")) for r in rows]
        wald = [z_and_p(r.estimate, r.se) if r.block in _WALD_BLOCKS else (None, None) for r in rows]
        return pd.DataFrame({
            "name": [r.name for r in rows], "block": [r.block for r in rows],
            "estimate": [r.estimate for r in rows], "se": [r.se for r in rows],
            "z": [np.nan if z is None else z for z, _ in wald], "p": [np.nan if q is None else q for _, q in wald],
            "ci_lower": [np.nan if lo is None else lo for lo, _ in bounds],
            "ci_upper": [np.nan if hi is None else hi for _, hi in bounds],
            "free": [r.free for r in rows], "derived": [r.derived for r in rows],
        })

    def _rows(self) -> pd.DataFrame:
        return model_rows(self.prepared.spec, self.raw, self.result.model.n)

    def _units(self, eb: EbKind) -> list:
        if eb not in self._predictions:
            self._predictions[eb] = unit_predictions(self.result, eb)
        return self._predictions[eb]

    def ranef(self, eb: EbKind = "mean") -> pd.DataFrame:
        """One row per unit and latent level with EB means (or `eb='mode'`: modes) and SDs (`mlmrun predict --by-unit`)."""
        return unit_table(self.result.model, self._rows(), self._units(eb), eb)

    def predict(self, data: pd.DataFrame | None = None, eb: EbKind = "mean") -> pd.DataFrame:
        """Per-row predictions as `mlmrun predict` writes them; `data`: new rows (units not fitted are flagged)."""
        model = self.result.model
        if data is None:
            return fitted_predictions(model, self.result.values, self._rows(), self._units(eb), eb).rows
        return new_predictions(self.result, self.raw, data.reset_index(drop=True), self._units(eb), eb,
                               "the new data").rows

    def simulate(self, seed: int, replicates: int = 1) -> pd.DataFrame:
        """Responses drawn from the fitted model, keeping the design (`mlmrun simulate`): one long table,
        replicate i drawn from child i of SeedSequence(seed)."""
        from mlmrun.postest.simulate import simulate_replicates, simulated_frame

        model = self.result.model
        return simulated_frame(model, simulate_replicates(model, self.result.values, seed, replicates))

    def compare(self, *others: Fit) -> dict[str, Any]:
        """`mlmrun compare` of this fit with others of the same data: models table, LR tests of nested pairs
        (chi-bar-square mixtures on the boundary) and the parameters side by side, as a dict."""
        from mlmrun.postest.compare import compare, from_fit

        fits = (self, *others)
        names = [f.prepared.spec.name for f in fits]
        labels = [n if names.count(n) == 1 else f"{n} ({i + 1})" for i, n in enumerate(names)]
        return compare([from_fit(lab, f.result, f.prepared, f.total_seconds) for lab, f in zip(labels, fits, strict=True)])

    def to_json(self) -> str:
        """results.json as text."""
        doc = results_dict(self.result, self.prepared.path, self.prepared, self.total_seconds, self.spec_sha256)
        return results_json(doc)

    def __repr__(self) -> str:
        r = self.result
        return (f"<mlmrun.Fit {self.prepared.spec.name}: {'converged' if r.converged else 'NOT converged'}, "
                f"log likelihood {r.loglik:.4f}, {r.n_params} parameters>")

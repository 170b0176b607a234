"""Hand-made FitResults and test specs shared by the report, results-JSON and CLI tests.

Rendering tests check structure and escaping, never statistical correctness, so
a FitResult with arbitrary values (start values, SEs of 0.1) is enough and
does not depend on any estimator.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mlmrun.pipeline import Prepared
from mlmrun.results import FitResult

ROOT = Path(__file__).resolve().parents[2]
SPECS = ROOT / "specs"
XSS = "<script>alert(1)</script>"

ABORTION_SPEC = """\
name: abortion_report_test
description: "Table 1 layout check"
data: {path: abortion_sim.csv}
levels: [{name: person, id: person}, {name: district, id: district}]
responses:
  - {name: resp, family: binomial, link: logit}
fixed: "resp ~ 0 + C(item)"
latent:
  - name: general
    level: person
    loadings: {by: item, fix: {woman: 1}}
  - name: extreme
    level: person
    loadings: {by: item, only: [defect, risk, rape], fix: {defect: 1}}
  - name: general_district
    level: district
structural:
  B: {general: {general_district: 1}}
covariance: {person: independent}
estimation: {method: ML, integration: {method: adaptive, points: 10}}
"""

XSS_SPEC = f"""\
name: xss
description: "{XSS} & friends"
data: {{path: xss.csv}}
levels:
  - {{name: "{XSS}", id: "{XSS}"}}
responses:
  - {{name: weight, family: gaussian}}
fixed: "weight ~ week"
random:
  - {{level: "{XSS}", terms: [1, week], covariance: unstructured}}
"""


def fake_fit(prepared: Prepared, *, converged: bool = True, warnings: tuple[str, ...] = (),
             extras: dict | None = None, cov: bool = True, loglik: float = -1014.9268) -> FitResult:
    """A FitResult at the model's start values (correlations set to 0.3) with SEs of 0.1 on the free scale."""
    pt = prepared.model.partable
    values = pt.start_values
    values[pt.rows_of("corr")] = 0.3
    free = pt.pack(values)
    return FitResult(model=prepared.model, values=pt.unpack(free), free=free,
                     cov_free=np.eye(pt.n_free) * 0.01 if cov else None, loglik=loglik,
                     method=prepared.spec.estimation.method, integration={"method": "exact", "points": None},
                     converged=converged, iterations=7, n_evaluations=12, fit_seconds=0.5,
                     warnings=tuple(warnings), extras=dict(extras or {}))

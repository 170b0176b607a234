"""What a report says about weights and the kind of standard errors: header lines, column label, cluster note.

Stata's output with robust SEs labels the SE column "Robust Std. Err." and prints
"(Std. Err. adjusted for N clusters in VAR)"; with sampling weights its log
likelihood is a log pseudolikelihood. The Wald chi2 of the fixed part
(estimate/wald.py) goes into the header for every model.
"""

from __future__ import annotations

from mlmrun.report.format import Table, fixed
from mlmrun.results import FitResult
from mlmrun.spec.model import Spec

ROBUST_SE = "Robust Std. Err."


def is_robust(fit: FitResult) -> bool:
    return fit.extras.get("vce", {}).get("type") == "robust"


def cluster_note(fit: FitResult) -> str:
    """'(Std. Err. adjusted for 148 clusters in school)', or '' without robust SEs."""
    vce = fit.extras.get("vce", {})
    if vce.get("type") != "robust":
        return ""
    where = vce.get("cluster") or "rows"
    return f"(Std. Err. adjusted for {vce.get('n_clusters')} clusters in {where})"


def weights_text(spec: Spec) -> str:
    """The weights a spec gives, in words ('' when none)."""
    parts = []
    if spec.weights is not None:
        if spec.weights.fweight:
            parts.append(f"fweight {spec.weights.fweight}")
        if spec.weights.pweight:
            scale = f" (pwscale {spec.weights.pwscale})" if spec.weights.pwscale else ""
            parts.append(f"pweight {spec.weights.pweight}{scale}")
    parts += [f"{lv.name}: pweight {lv.pweight}" for lv in spec.levels if lv.pweight]
    return "; ".join(parts)


def header_lines(fit: FitResult, spec: Spec) -> list[tuple[str, str]]:
    """Weights, the Wald test of the fixed part and the kind of SEs, for the report header."""
    out = []
    text = weights_text(spec)
    if text:
        out.append(("Weights", text))
    wald = fit.extras.get("wald")
    if wald is not None:
        out.append((f"Wald chi2({wald['df']})", fixed(wald["chi2"], 2)))
        out.append(("Prob > chi2", fixed(wald["p"], 4)))
    if is_robust(fit):
        out.append(("Std. errors", "robust (sandwich) " + cluster_note(fit)))
    return out


def label_robust(tables: list[Table], fit: FitResult) -> None:
    """Rename the SE column of every table to Stata's 'Robust Std. Err.' when the SEs are robust."""
    if not is_robust(fit):
        return
    for table in tables:
        table.columns[:] = [ROBUST_SE if c == "Std. err." else c for c in table.columns]


def loglik_label(fit: FitResult, spec: Spec) -> str:
    """'Log pseudolikelihood' with sampling weights (Stata), else the usual label."""
    wt = fit.model.weighting
    if wt is not None and wt.sampling:
        return "Log pseudolikelihood"
    return "Log restricted-likelihood" if fit.method == "REML" else "Log likelihood"

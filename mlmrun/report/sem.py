"""Report sections of a moments-engine (SEM) fit: residual covariances, lavaan's fit measures, the
standardized solution (std.lv, std.all) and R-squared. Every number is formatted here."""

from __future__ import annotations

from typing import Any

from mlmrun.report.format import Table, fixed, num, pvalue
from mlmrun.report.tables import DIGITS, EST_COLUMNS, estimate_line, numeric_table
from mlmrun.results import FitResult, ParamRow

FIT_ROWS: tuple[tuple[str, str, int | None], ...] = (
    ("Chi-square (model vs saturated)", "chisq", 3), ("Degrees of freedom", "df", None), ("P-value (chi-square)", "pvalue", -1),
    ("Chi-square (baseline model)", "baseline.chisq", 3), ("Degrees of freedom (baseline)", "baseline.df", None),
    ("CFI", "cfi", 3), ("TLI", "tli", 3), ("RMSEA", "rmsea", 3), ("RMSEA 90% CI lower", "rmsea.ci.lower", 3),
    ("RMSEA 90% CI upper", "rmsea.ci.upper", 3), ("P-value H0: RMSEA <= 0.05", "rmsea.pvalue", -1), ("SRMR", "srmr", 3),
    ("Log likelihood (H0)", "logl", 3), ("Log likelihood (saturated, H1)", "unrestricted.logl", 3),
    ("Free parameters", "npar", None), ("Independent units (N)", "ntotal", None), ("AIC", "aic", 3), ("BIC", "bic", 3),
)
"""(label, lavaan fitMeasures name, decimals: None for counts, -1 for p-values)."""


def _cell(value: Any, decimals: int | None) -> str:
    if decimals is None:
        return "." if value is None else str(int(value))
    if decimals < 0:
        return pvalue(value)
    return fixed(value, decimals)


def fit_measures_table(fit: FitResult) -> Table | None:
    """lavaan's default fit measures, in lavaan's order."""
    measures = fit.extras.get("fit_measures")
    if not isinstance(measures, dict):
        return None
    body = [[label, _cell(measures.get(key), dec)] for label, key, dec in FIT_ROWS]
    return Table(["Measure", "Value"], body, title="Fit measures (lavaan's defaults; N = independent units)")


def residual_covariances(rows: dict[str, ParamRow]) -> Table | None:
    """Residual covariances between items (lavaan's y1 ~~ y5)."""
    body = [estimate_line(r.name, r) for r in rows.values() if r.block == "rescov"]
    return numeric_table(list(EST_COLUMNS), body, DIGITS, title="Residual covariances") if body else None


def standardized_table(fit: FitResult) -> Table | None:
    """std.lv and std.all of loadings, regressions, (co)variances and intercepts."""
    std = fit.extras.get("standardized")
    if not isinstance(std, dict):
        return None
    body = [[r["name"], f"{r['lhs']} {r['op']} {r['rhs']}".strip(), num(r["std_lv"], 4), num(r["std_all"], 4)]
            for r in std.get("parameters", [])]
    return Table(["Parameter", "lavaan", "Std.lv", "Std.all"], body, title="Standardized solution",
                 align=["l", "l", "r", "r"])


def r_squared_table(fit: FitResult) -> Table | None:
    std = fit.extras.get("standardized")
    if not isinstance(std, dict) or not std.get("r_squared"):
        return None
    body = [[name, fixed(value, 3)] for name, value in std["r_squared"].items()]
    return Table(["Variable", "R-squared"], body, title="R-squared")


def sem_sections(fit: FitResult, rows: dict[str, ParamRow]) -> list[tuple[str, list[Table], list[str]]]:
    """(heading, tables, notes) of the SEM sections; empty unless the moments engine fitted the model."""
    if fit.integration.get("method") != "moments":
        return []
    out: list[tuple[str, list[Table], list[str]]] = []
    rescov = residual_covariances(rows)
    if rescov is not None:
        out.append(("Residual covariances", [rescov], []))
    tables = [t for t in (fit_measures_table(fit), standardized_table(fit), r_squared_table(fit)) if t is not None]
    notes = ["Std.lv scales the latent variables to unit variance, Std.all also the items (lavaan's std.lv and std.all).",
             "A negative residual variance is reported as a negative var(...) and a negative signed-root sd(...)."]
    out.append(("Structural equation model fit", tables, notes))
    return out

"""Parameter tables of a report: fixed effects, random effects per level, latent variables, structural model.

Every table reads the one estimates list (`results.parameter_rows`), so the
report, results.json and the derived var/cov rows never disagree.
"""

from __future__ import annotations

import pandas as pd

from mlmrun.compile.model import CompiledModel, CovBlock
from mlmrun.report.format import MISSING, Table, ci, fixed, num, pvalue, se_num, z_and_p
from mlmrun.results import ParamRow, covariance_name, variance_name

EST_COLUMNS = ["Parameter", "Estimate", "Std. err.", "[95% conf.", "interval]"]
NOT_LOADED = "—"


def se_text(row: ParamRow) -> str:
    """SE column: '(fixed)' for a fixed row, '.' when unavailable."""
    return se_num(row.se) if row.free else "(fixed)"


def estimate_line(label: str, row: ParamRow, scale: str = "linear") -> list[str]:
    """[label, estimate, SE, CI low, CI high]; intervals on the log scale for SDs/variances, atanh for correlations."""
    lo, hi = ci(row.estimate, row.se, scale) if row.free else (None, None)
    return [label, num(row.estimate), se_text(row), num(lo), num(hi)]


def wald_line(label: str, row: ParamRow) -> list[str]:
    """[label, estimate, SE, z, p, CI low, CI high] as in Stata's coefficient table."""
    z, p = z_and_p(row.estimate, row.se) if row.free else (None, None)
    lo, hi = ci(row.estimate, row.se) if row.free else (None, None)
    return [label, num(row.estimate), se_text(row), fixed(z, 2), pvalue(p), num(lo), num(hi)]


def _short(name: str, level: str) -> str:
    """Drop the '@level' suffix inside a table that is already titled by its level."""
    suffix = f"@{level}"
    return name[: -len(suffix)] if level and name.endswith(suffix) else name


def fixed_effects(rows: dict[str, ParamRow], model: CompiledModel) -> Table:
    """Coefficient table: estimate, SE, z, P>|z|, 95% CI for every fixed-part coefficient."""
    pt = model.partable
    body = [wald_line(str(pt.names[i]), rows[str(pt.names[i])]) for i in model.beta_rows]
    return Table(["Parameter", "Estimate", "Std. err.", "z", "P>|z|", "[95% conf.", "interval]"], body)


def _block_lines(rows: dict[str, ParamRow], model: CompiledModel, block: CovBlock) -> tuple[list, list]:
    """(sd/corr lines, var/cov lines) of one covariance block, labels without the '@level' suffix."""
    level = model.levels[block.level].name
    names = model.partable.names
    sd = [rows[str(names[i])] for i in block.sd_rows]
    corr = [rows[str(names[i])] for i in block.corr_rows]
    var = [rows[variance_name(r.name)] for r in sd]
    cov = [rows[covariance_name(r.name)] for r in corr]
    sd_part = [estimate_line(_short(r.name, level), r, "log") for r in sd] + \
              [estimate_line(_short(r.name, level), r, "atanh") for r in corr]
    var_part = [estimate_line(_short(r.name, level), r, "log") for r in var] + \
               [estimate_line(_short(r.name, level), r) for r in cov]
    return sd_part, var_part


def random_effects(rows: dict[str, ParamRow], model: CompiledModel) -> list[Table]:
    """One table per covariance block of `random:` effects (sd/corr, then var/cov); then the residual."""
    tables = []
    for b in model.blocks:
        if all(model.latent[m].origin == "random" for m in b.members):
            sd_part, var_part = _block_lines(rows, model, b)
            title = f"{model.levels[b.level].name}: {b.kind.capitalize()}"
            tables.append(Table(list(EST_COLUMNS), sd_part + var_part, title=title))
    residual = [r for r in rows.values() if r.block == "residual"]
    rescorr = [r for r in rows.values() if r.block == "rescorr"]  # residual structure: phi, theta, rho, corr, cov
    if residual:
        body = [estimate_line(r.name, r, "atanh" if r.name.startswith(("corr(", "rho")) else "linear")
                for r in rescorr if not r.derived] + \
               [estimate_line(r.name, r, "log") for r in residual if not r.derived] + \
               [estimate_line(r.name, r) for r in rows.values() if r.block == "hetero"] + \
               [estimate_line(r.name, r, "log") for r in residual if r.derived] + \
               [estimate_line(r.name, r) for r in rescorr if r.derived]
        title = f"Residual: {model.residual.title}" if model.residual is not None else "Residual"
        tables.append(Table(list(EST_COLUMNS), body, title=title))
    return tables


def _loading_order(model: CompiledModel, frame: pd.DataFrame) -> list[str]:
    """Items in order of first appearance in the data when all loadings are `by` one column; else table order."""
    labels: list[str] = []
    for lat in model.latent:
        if lat.origin == "latent":
            labels += [lab for lab in lat.loading_labels if lab not in labels]
    by = {lat.loadings.by for lat in model.spec.latent if lat.loadings is not None}
    if len(by) == 1 and None not in by and next(iter(by)) in frame.columns:
        seen = [str(v) for v in pd.unique(frame[next(iter(by))])]
        labels.sort(key=lambda lab: seen.index(lab) if lab in seen else len(seen))
    return labels


def _intercepts(rows: dict[str, ParamRow], model: CompiledModel, labels: list[str]) -> dict[str, ParamRow]:
    """Item intercepts when the fixed part is `0 + C(item)` on the loadings' `by` column (Table 1's first column)."""
    by = [lat.loadings.by for lat in model.spec.latent if lat.loadings is not None and lat.loadings.by]
    found: dict[str, ParamRow] = {}
    for col in dict.fromkeys(by):
        for lab in labels:
            for name in (f"C({col})[{lab}]", f"C({col})[T.{lab}]", f"{col}[{lab}]", f"{col}[T.{lab}]"):
                if name in rows and rows[name].block == "fixed":
                    found.setdefault(lab, rows[name])
    return found


def loadings(rows: dict[str, ParamRow], model: CompiledModel, frame: pd.DataFrame) -> Table | None:
    """Items x factors: intercept (when identifiable from the fixed part) and each factor's loading with SE."""
    factors = [lat for lat in model.latent if lat.origin == "latent" and len(lat.loading_rows)]
    if not factors:
        return None
    labels = _loading_order(model, frame)
    intercepts = _intercepts(rows, model, labels)
    columns = ["Item"] + (["Intercept", "(SE)"] if intercepts else [])
    for lat in factors:
        columns += [f"λ {lat.name}", "(SE)"]
    names = model.partable.names
    body = []
    for lab in labels:
        line = [lab]
        if intercepts:
            r = intercepts.get(lab)
            line += [num(r.estimate), se_text(r)] if r else [NOT_LOADED, ""]
        for lat in factors:
            if lab in lat.loading_labels:
                r = rows[str(names[lat.loading_rows[lat.loading_labels.index(lab)]])]
                line += [num(r.estimate), se_text(r)]
            else:
                line += [NOT_LOADED, ""]
        body.append(line)
    return Table(columns, body, title="Factor loadings",
                 note=f"{NOT_LOADED}: the factor does not load on the item; (fixed): fixed for identification.")


def latent_variances(rows: dict[str, ParamRow], model: CompiledModel) -> list[Table]:
    """Per level, variances and covariances of the `latent:` variables, then their SDs and correlations."""
    tables = []
    for li, level in enumerate(model.levels):
        var_lines, sd_lines = [], []
        for b in model.blocks:
            if b.level == li and all(model.latent[m].origin == "latent" for m in b.members):
                sd_part, var_part = _block_lines(rows, model, b)
                var_lines += var_part
                sd_lines += sd_part
        if var_lines:
            tables.append(Table(list(EST_COLUMNS), var_lines + sd_lines, title=f"Variances at level {level.name}"))
    return tables


def structural(rows: dict[str, ParamRow], model: CompiledModel, block: str) -> Table | None:
    """B (latent on latent) or Gamma (latent on covariates) coefficients."""
    names = model.partable.names
    entries = model.B_entries if block == "B" else model.Gamma_entries
    if not entries:
        return None
    body = []
    for _, _, i in entries:
        r = rows[str(names[i])]
        body.append(wald_line(f"{r.lhs} ← {r.rhs}", r))
    title = "Structural model B (latent on latent)" if block == "B" else "Structural model Gamma (latent on covariates)"
    return Table(["Regression", "Estimate", "Std. err.", "z", "P>|z|", "[95% conf.", "interval]"], body, title=title)


def other_parameters(rows: dict[str, ParamRow]) -> Table | None:
    """Thresholds (ordinal), shape (gamma), dispersion (negative binomial), zero-inflation and composite-link terms."""
    body = [estimate_line(r.name, r) for r in rows.values() if r.block in ("threshold", "shape", "dispersion", "zeroinfl",
                                                                           "composite")]
    return Table(list(EST_COLUMNS), body, title="Family parameters") if body else None


def point_check(check: object) -> Table:
    """Log likelihood re-evaluated at other numbers of points: one row per rule, change from the fitted one.

    Reads the quadrature engine's {fitted_points, loglik: {points: value}, ...}; any other
    shape is shown as a generic table.
    """
    if not (isinstance(check, dict) and isinstance(check.get("loglik"), dict)):
        return generic(check, "Re-evaluation with other numbers of points")
    logliks = check["loglik"]
    fitted = next(iter(logliks.values()))
    body = [[_points_label(k) + (" (fitted)" if i == 0 else ""), fixed(v, 4),
             fixed(v - fitted, 6) if i and v is not None and fitted is not None else ""]
            for i, (k, v) in enumerate(logliks.items())]
    notes = []
    if check.get("max_rel_estimate_change") is not None:
        notes.append(f"largest relative change of an estimate: {num(check['max_rel_estimate_change'], 3)}")
    if check.get("estimate_change_method"):
        notes.append(str(check["estimate_change_method"]))
    return Table(["Points", "Log likelihood", "Change"], body, title="Re-evaluation with other numbers of points",
                 note="; ".join(notes))


def _points_label(key: str) -> str:
    """'20' -> '20 per dimension'; "{'person': 20, 'district': 8}" -> 'person: 20, district: 8'."""
    text = str(key).strip("{}").replace("'", "").replace('"', "")
    return f"{text} per dimension" if text.isdigit() else text


def generic(obj: object, title: str) -> Table:
    """A table from an estimator's summary: list of dicts (one row each) or a dict of scalars."""
    if isinstance(obj, list) and obj and all(isinstance(x, dict) for x in obj):
        columns = list(dict.fromkeys(k for x in obj for k in x))
        return Table([str(c) for c in columns], [[cell(x.get(c)) for c in columns] for x in obj], title=title,
                     align=["r"] * len(columns))
    if isinstance(obj, dict):
        return Table(["", ""], [[str(k), cell(v)] for k, v in obj.items()], title=title)
    return Table([""], [[cell(obj)]], title=title)


def cell(value: object) -> str:
    """One value of a generic table as text."""
    if isinstance(value, bool) or value is None:
        return MISSING if value is None else ("yes" if value else "no")
    if isinstance(value, (int, float)):
        return num(float(value))
    if isinstance(value, (list, tuple)):
        return ", ".join(cell(v) for v in value)
    if isinstance(value, dict):
        return ", ".join(f"{k}: {cell(v)}" for k, v in value.items())
    return str(value)

"""Parameter tables of a report: fixed effects, random effects per level, latent variables, structural model.

Every table reads the one estimates list (`results.parameter_rows`), so the
report, results.json and the derived var/cov rows never disagree.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from mlmrun.compile.model import CompiledModel, CovBlock
from mlmrun.report.format import MISSING, Table, ci, fixed, format_columns, num, se_num, z_and_p
from mlmrun.results import ParamRow, covariance_name, variance_name

EST_COLUMNS = ["Parameter", "Estimate", "Std. err.", "[95% conf.", "interval]"]
NOT_LOADED = "—"


_INTERCEPT = re.compile(r"\bIntercept\b")


def display_name(name: str) -> str:
    """A parameter's name as the report shows it: the constant is `_cons` everywhere (Stata's name).

    results.json keeps the parameter table's names (`Intercept` for the fixed part)."""
    return _INTERCEPT.sub("_cons", name)


DIGITS = 4
"""Decimals of estimates, SEs and intervals unless the spec says `report: {digits: N}`."""


Cell = str | float | None
"""A raw table cell: text as it is shown, or a number formatted with its column (format.format_columns)."""
EST_KINDS = ["text", "num", "num", "num", "num"]
WALD_KINDS = ["text", "num", "num", "z", "p", "num", "num"]


def se_text(row: ParamRow, digits: int = DIGITS) -> str:
    """SE column on its own: '(fixed)' for a fixed row, '.' when unavailable."""
    if not row.free:
        return "(fixed)"
    return MISSING if se_num(row.se) == MISSING else fixed(row.se, digits)


def _se_cell(row: ParamRow) -> Cell:
    if not row.free:
        return "(fixed)"
    return MISSING if se_num(row.se) == MISSING else row.se


def estimate_line(label: str, row: ParamRow, scale: str = "linear", digits: int = DIGITS) -> list[Cell]:
    """[label, estimate, SE, CI low, CI high], raw (`numeric_table` formats each column with one number of
    decimals, so it aligns on the decimal point); intervals on the log scale for SDs/variances, atanh for
    correlations. `digits` is accepted for symmetry with the table builders."""
    lo, hi = ci(row.estimate, row.se, scale) if row.free else (None, None)
    return [label, row.estimate, _se_cell(row), lo, hi]


def wald_line(label: str, row: ParamRow, digits: int = DIGITS) -> list[Cell]:
    """[label, estimate, SE, z, p, CI low, CI high] as in Stata's coefficient table (z: 2 decimals, p: 3), raw."""
    z, p = z_and_p(row.estimate, row.se) if row.free else (None, None)
    lo, hi = ci(row.estimate, row.se) if row.free else (None, None)
    return [label, row.estimate, _se_cell(row), z, p, lo, hi]


def numeric_table(columns: list[str], body: list[list[Cell]], digits: int, **kwargs: str) -> Table:
    """A Table whose numeric columns are formatted with one number of decimals each (format.format_columns)."""
    kinds = WALD_KINDS if len(columns) == len(WALD_KINDS) and columns[3] == "z" else \
        (EST_KINDS if len(columns) == len(EST_KINDS) else ["text"] + ["num"] * (len(columns) - 1))
    return Table(columns, format_columns(body, kinds, digits), **kwargs)


def fixed_effects(rows: dict[str, ParamRow], model: CompiledModel, digits: int = DIGITS,
                  exclude: frozenset[str] = frozenset()) -> Table:
    """Coefficient table: estimate, SE, z, P>|z|, 95% CI for every fixed-part coefficient not in `exclude`
    (item intercepts that the loadings table shows)."""
    pt = model.partable
    body = [wald_line(display_name(str(pt.names[i])), rows[str(pt.names[i])], digits) for i in model.beta_rows
            if str(pt.names[i]) not in exclude]
    return numeric_table(["Parameter", "Estimate", "Std. err.", "z", "P>|z|", "[95% conf.", "interval]"], body, digits)


def _pairs(block: CovBlock) -> list[tuple[int, int]]:
    """(a, b) member positions of each correlation row, a before b in the spec's term order."""
    lower = zip(*np.tril_indices(len(block.members), -1), strict=True)
    return [(int(b), int(a)) for a, b in lower]


def _block_lines(rows: dict[str, ParamRow], model: CompiledModel, block: CovBlock, digits: int = DIGITS) -> tuple[list, list]:
    """(sd/corr lines, var/cov lines) of one covariance block, as Stata's `mixed` prints the structure.

    Labels name the terms in the spec's order without the '@level' suffix: corr(_cons,week). An identity
    block (one SD shared by its terms) prints one sd(a b) row; an exchangeable block one SD and one
    correlation (and one var, one cov) for all its terms, however many there are.
    """
    names = model.partable.names
    terms = [display_name(model.latent[m].name) for m in block.members]
    sd = [rows[str(names[i])] for i in block.sd_rows]
    corr = [rows[str(names[i])] for i in block.corr_rows]
    var = [rows[variance_name(r.name)] for r in sd]
    cov = [rows[covariance_name(r.name)] for r in corr]
    if block.kind in ("identity", "exchangeable") and len(terms) > 1:
        together = " ".join(terms)
        sd_part = [estimate_line(f"sd({together})", sd[0], "log", digits)]
        var_part = [estimate_line(f"var({together})", var[0], "log", digits)]
        if corr:
            sd_part.append(estimate_line(f"corr({together})", corr[0], "atanh", digits))
            var_part.append(estimate_line(f"cov({together})", cov[0], digits=digits))
        return sd_part, var_part
    pairs = _pairs(block) if corr else []
    sd_part = [estimate_line(f"sd({t})", r, "log", digits) for t, r in zip(terms, sd, strict=True)] + \
              [estimate_line(f"corr({terms[a]},{terms[b]})", r, "atanh", digits) for (a, b), r in zip(pairs, corr, strict=True)]
    var_part = [estimate_line(f"var({t})", r, "log", digits) for t, r in zip(terms, var, strict=True)] + \
               [estimate_line(f"cov({terms[a]},{terms[b]})", r, digits=digits) for (a, b), r in zip(pairs, cov, strict=True)]
    return sd_part, var_part


def block_title(model: CompiledModel, block: CovBlock) -> str:
    """'pig: Unstructured'; a block of one term is 'Identity', as Stata labels it."""
    kind = "identity" if len(block.members) == 1 else block.kind
    return f"{model.levels[block.level].name}: {kind.capitalize()}"


def random_effects(rows: dict[str, ParamRow], model: CompiledModel, digits: int = DIGITS) -> list[Table]:
    """One table per covariance block of `random:` effects (sd/corr, then var/cov); then the residual."""
    tables = []
    for b in model.blocks:
        if all(model.latent[m].origin == "random" for m in b.members):
            sd_part, var_part = _block_lines(rows, model, b, digits)
            tables.append(numeric_table(list(EST_COLUMNS), sd_part + var_part, digits, title=block_title(model, b)))
    residual = [r for r in rows.values() if r.block == "residual"]
    rescorr = [r for r in rows.values() if r.block == "rescorr"]  # residual structure: phi, theta, rho, corr, cov
    if residual:
        body = [estimate_line(r.name, r, "atanh" if r.name.startswith(("corr(", "rho")) else "linear", digits)
                for r in rescorr if not r.derived] + \
               [estimate_line(r.name, r, "log", digits) for r in residual if not r.derived] + \
               [estimate_line(display_name(r.name), r, digits=digits) for r in rows.values() if r.block == "hetero"] + \
               [estimate_line(r.name, r, "log", digits) for r in residual if r.derived] + \
               [estimate_line(r.name, r, digits=digits) for r in rescorr if r.derived]
        title = f"Residual: {model.residual.title}" if model.residual is not None else "Residual"
        tables.append(numeric_table(list(EST_COLUMNS), body, digits, title=title))
    return tables


def loading_order(model: CompiledModel, frame: pd.DataFrame) -> list[str]:
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


def item_intercepts(rows: dict[str, ParamRow], model: CompiledModel, labels: list[str]) -> dict[str, ParamRow]:
    """Item intercepts when the fixed part is `0 + C(item)` on the loadings' `by` column (Table 1's first column)."""
    by = [lat.loadings.by for lat in model.spec.latent if lat.loadings is not None and lat.loadings.by]
    found: dict[str, ParamRow] = {}
    for col in dict.fromkeys(by):
        for lab in labels:
            for name in (f"C({col})[{lab}]", f"C({col})[T.{lab}]", f"{col}[{lab}]", f"{col}[T.{lab}]"):
                if name in rows and rows[name].block == "fixed":
                    found.setdefault(lab, rows[name])
    return found


def factor_loadings(rows: dict[str, ParamRow], model: CompiledModel,
                    frame: pd.DataFrame) -> tuple[list[str], list[tuple[str, list[ParamRow | None]]]]:
    """(items in table order, [(factor, its loading row per item or None where it does not load)])."""
    names = model.partable.names
    labels = loading_order(model, frame)
    factors = []
    for lat in model.latent:
        if lat.origin == "latent" and len(lat.loading_rows):
            per = [rows[str(names[lat.loading_rows[lat.loading_labels.index(lab)]])] if lab in lat.loading_labels
                   else None for lab in labels]
            factors.append((lat.name, per))
    return labels, factors


def loadings(rows: dict[str, ParamRow], model: CompiledModel, frame: pd.DataFrame, digits: int = DIGITS) -> Table | None:
    """Items x factors: intercept (when identifiable from the fixed part) and each factor's loading with SE."""
    labels, factors = factor_loadings(rows, model, frame)
    if not factors:
        return None
    intercepts = item_intercepts(rows, model, labels)
    columns = ["Item"] + (["Intercept", "(SE)"] if intercepts else [])
    for name, _ in factors:
        columns += [f"λ {name}", "(SE)"]
    body: list[list[Cell]] = []
    for k, lab in enumerate(labels):
        line: list[Cell] = [lab]
        if intercepts:
            r = intercepts.get(lab)
            line += [r.estimate, _se_cell(r)] if r else [NOT_LOADED, ""]
        for _, per in factors:
            r = per[k]
            line += [r.estimate, _se_cell(r)] if r is not None else [NOT_LOADED, ""]
        body.append(line)
    return numeric_table(columns, body, digits, title="Factor loadings",
                 note=f"{NOT_LOADED}: the factor does not load on the item; (fixed): fixed for identification.")


def latent_variances(rows: dict[str, ParamRow], model: CompiledModel, digits: int = DIGITS) -> list[Table]:
    """Per level, variances and covariances of the `latent:` variables, then their SDs and correlations."""
    tables = []
    for li, level in enumerate(model.levels):
        var_lines, sd_lines = [], []
        for b in model.blocks:
            if b.level == li and all(model.latent[m].origin == "latent" for m in b.members):
                sd_part, var_part = _block_lines(rows, model, b, digits)
                var_lines += var_part
                sd_lines += sd_part
        if var_lines:
            tables.append(numeric_table(list(EST_COLUMNS), var_lines + sd_lines, digits,
                                        title=f"Variances at level {level.name}"))
    return tables


def structural(rows: dict[str, ParamRow], model: CompiledModel, block: str, digits: int = DIGITS) -> Table | None:
    """B (latent on latent) or Gamma (latent on covariates) coefficients."""
    names = model.partable.names
    entries = model.B_entries if block == "B" else model.Gamma_entries
    if not entries:
        return None
    body = []
    for _, _, i in entries:
        r = rows[str(names[i])]
        body.append(wald_line(f"{r.lhs} ← {r.rhs}", r, digits))
    title = "Structural model B (latent on latent)" if block == "B" else "Structural model Gamma (latent on covariates)"
    return numeric_table(["Regression", "Estimate", "Std. err.", "z", "P>|z|", "[95% conf.", "interval]"], body, digits,
                         title=title)


def other_parameters(rows: dict[str, ParamRow], digits: int = DIGITS) -> Table | None:
    """Thresholds (ordinal), shape (gamma), dispersion (negative binomial), zero-inflation and composite-link terms."""
    body = [estimate_line(display_name(r.name), r, digits=digits) for r in rows.values() if r.block in ("threshold", "shape", "dispersion", "zeroinfl",
                                                                           "composite")]
    return numeric_table(list(EST_COLUMNS), body, digits, title="Family parameters") if body else None


def point_check(check: object) -> Table:
    """Log likelihood re-evaluated at other numbers of points: one row per rule, change from the fitted one.

    Reads the quadrature engine's {fitted_points, loglik: {points: value}, ...}; any other
    shape is shown as a generic table.
    """
    if not (isinstance(check, dict) and isinstance(check.get("loglik"), dict)):
        return generic(check, "Re-evaluation with other numbers of points")
    logliks = check["loglik"]
    fitted = next(iter(logliks.values()))
    body = [[points_label(k) + (" (fitted)" if i == 0 else ""), fixed(v, 4),
             fixed(v - fitted, 6) if i and v is not None and fitted is not None else ""]
            for i, (k, v) in enumerate(logliks.items())]
    notes = []
    if check.get("max_rel_estimate_change") is not None:
        notes.append(f"largest relative change of an estimate: {num(check['max_rel_estimate_change'], 3)}")
    if check.get("estimate_change_method"):
        notes.append(str(check["estimate_change_method"]))
    return Table(["Points", "Log likelihood", "Change"], body, title="Re-evaluation with other numbers of points",
                 note="; ".join(notes))


def points_label(key: str) -> str:
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

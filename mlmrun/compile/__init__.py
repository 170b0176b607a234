"""compile_model(spec, data) -> CompiledModel: design matrices, level indices, latent structure, ParTable."""

from __future__ import annotations

import difflib

import numpy as np
import pandas as pd

from mlmrun.compile.choice import (
    CHOICE_FAMILIES,
    case_design,
    check_choice_spec,
    check_within_sets,
    choice_columns,
    choice_design,
    expand_per_choice,
)
from mlmrun.compile.choice_weights import check_choice_weights
from mlmrun.compile.data_checks import (
    check_finite,
    check_level_sizes,
    check_stray_text,
    drop_missing,
    numeric_column,
    used_series,
)
from mlmrun.compile.design import fixed_design, formula_variables, parse_formula, term_formula
from mlmrun.compile.discrete import compile_discrete
from mlmrun.compile.family_params import extra_columns, family_params, make_family
from mlmrun.compile.items import compile_items
from mlmrun.compile.latent import _loadings as latent_loadings
from mlmrun.compile.latent import compile_latent
from mlmrun.compile.level_order import check_level_order
from mlmrun.compile.matrices import MatrixGradient, ModelMatrices, model_matrices, values_gradient
from mlmrun.compile.model import CompiledModel, CovBlock, Equation, LatentVar
from mlmrun.compile.ordinal_ext import formula_of as ordinal_formula
from mlmrun.compile.ordinal_ext import ordinal_design
from mlmrun.compile.partable import ParTable, ParTableBuilder
from mlmrun.compile.residuals import compile_residuals, is_structured, residual_columns
from mlmrun.compile.spec_checks import check_spec
from mlmrun.compile.success import success_indicator
from mlmrun.compile.weights import compile_weights
from mlmrun.data.levels import build_levels
from mlmrun.data.load import LoadedData
from mlmrun.data.shown import columns_hint, excerpt, excerpts
from mlmrun.errors import KEY, DataError, Loc, SpecError
from mlmrun.families.ordinal_rows import OrdinalRows
from mlmrun.spec.model import Spec

__all__ = ["CompiledModel", "CovBlock", "Equation", "LatentVar", "MatrixGradient", "ModelMatrices", "ParTable",
           "compile_model", "model_matrices", "used_columns", "values_gradient"]


def used_columns(spec: Spec) -> dict[str, str]:
    """Every data column the spec uses -> where in the spec it is named (for error messages)."""
    cols: dict[str, str] = {}
    formula = parse_formula(spec.fixed)
    lhs, rhs = formula_variables(formula)
    for c in sorted(rhs):
        cols.setdefault(c, "fixed")
    for i, eq in enumerate(spec.responses):
        cols.setdefault(eq.name, f"responses.{i}.name")
        for key in ("trials", "offset", "exposure", "variance_by"):
            if getattr(eq, key):
                cols.setdefault(getattr(eq, key), f"responses.{i}.{key}")
        for c in (eq.select or {}):
            cols.setdefault(c, f"responses.{i}.select")
        for c, where in extra_columns(eq, i).items():
            cols.setdefault(c, where)
        if eq.variance:
            for c in sorted(formula_variables(_variance_formula(eq.variance, i))[1]):
                cols.setdefault(c, f"responses.{i}.variance")
        for key in ("thresholds", "scale"):
            if getattr(eq, key):
                for c in sorted(formula_variables(ordinal_formula(getattr(eq, key), i, key))[1]):
                    cols.setdefault(c, f"responses.{i}.{key}")
    for c, where in choice_columns(spec).items():
        cols.setdefault(c, where)
    for i, lv in enumerate(spec.levels):
        cols.setdefault(lv.id, f"levels.{i}.id")
    for c, where in residual_columns(spec).items():
        cols.setdefault(c, where)
    for i, block in enumerate(spec.random):
        for t in block.terms:
            if str(t) != "1":
                cols.setdefault(str(t), f"random.{i}.terms")
    for i, lat in enumerate(spec.latent):
        if lat.loadings is not None:
            if lat.loadings.by:
                cols.setdefault(lat.loadings.by, f"latent.{i}.loadings.by")
            for c in lat.loadings.on or []:
                if str(c) != "1":
                    cols.setdefault(str(c), f"latent.{i}.loadings.on")
    if spec.residual_covariances is not None and spec.residual_covariances.by:
        cols.setdefault(spec.residual_covariances.by, "residual_covariances.by")
    for outcome, preds in spec.structural.Gamma.items():
        for c in preds:
            where = f"structural.Gamma.{outcome}"
            try:
                term = term_formula(c, where)
            except SpecError as exc:
                raise SpecError(str(exc), loc=("structural", "Gamma", outcome, c, KEY)) from None  # at the term's key
            for var in formula_variables(term)[1]:
                cols.setdefault(var, f"structural.Gamma.{outcome}")
    return cols


def _variance_formula(text: str, k: int):
    """Parse a `variance:` formula (one-sided, allowed functions only), errors naming responses.k.variance."""
    return parse_formula(text, f"responses.{k}.variance", "one_sided")


def _variance_design(eq, k: int, frame: pd.DataFrame, rows: np.ndarray) -> tuple[np.ndarray, tuple[str, ...]]:
    """The `variance:` design on the equation's rows without its intercept (the baseline SD plays that role)."""
    formula = _variance_formula(eq.variance, k)
    S, names = fixed_design(formula, frame.iloc[rows].reset_index(drop=True), f"responses.{k}.variance")
    keep = [j for j, name in enumerate(names) if name != "Intercept"]
    S, names = S[:, keep], tuple(names[j] for j in keep)
    if not S.shape[1]:
        raise SpecError(f"responses.{k}.variance: {eq.variance!r} has no terms besides the intercept; "
                          "drop `variance:` or give it a covariate (e.g. '~ x')")
    if np.linalg.matrix_rank(np.column_stack([np.ones(len(S)), S])) <= S.shape[1]:
        raise SpecError(f"responses.{k}.variance: the columns {list(names)} are collinear with the constant "
                        "(the baseline sd(Residual)); write the formula with an intercept (e.g. '~ C(item)', it is dropped)")
    return S, names


def _check_columns(spec: Spec, frame: pd.DataFrame, cols: dict[str, str]) -> None:
    """Refuse a fixed formula whose response is not responses[0] and columns (`cols`: used_columns) not in the data."""
    formula = parse_formula(spec.fixed)
    lhs, _ = formula_variables(formula)
    if lhs is not None and lhs != spec.responses[0].name:
        raise SpecError(f"fixed: the formula's response '{lhs}' differs from responses[0].name '{spec.responses[0].name}'; make them the same column")
    problems = []
    for col, where in cols.items():
        if col not in frame.columns:
            close = difflib.get_close_matches(col, [str(c) for c in frame.columns], n=1)
            hint = f"did you mean {excerpt(close[0])}?" if close else columns_hint(frame.columns)
            problems.append(f"{where}: column {excerpt(col)} is not in the data; {hint}")
    if problems:
        raise DataError("; ".join(problems))


def _equations(spec: Spec, frame: pd.DataFrame, pt: ParTableBuilder) -> tuple[list[Equation], np.ndarray, np.ndarray, np.ndarray | None, np.ndarray]:
    n = len(frame)
    eq_of_row = np.full(n, -1, dtype=int)
    y = np.zeros(n)
    offset = np.zeros(n)
    trials = None
    equations: list[Equation] = []
    multi = len(spec.responses) > 1
    for k, eq in enumerate(spec.responses):
        try:
            family = make_family(eq, k)
        except ValueError as exc:
            raise SpecError(f"responses.{k}: {exc}") from None
        if eq.variance and eq.family != "gaussian":
            raise SpecError(f"responses.{k}.variance is only for the gaussian family (found {eq.family}); "
                              "drop `variance:` or use family: gaussian")
        if eq.variance and eq.variance_by:
            raise SpecError(f"responses.{k}: give either variance_by (one SD per category) or variance "
                            "(a log-linear SD formula), not both; '~ C(col)' is the formula form of variance_by: col")
        for key in ("thresholds", "scale"):
            if getattr(eq, key) and eq.family != "ordinal":
                raise SpecError(f"responses.{k}.{key} is only for the ordinal family (found {eq.family}); "
                                f"drop `{key}:` or use family: ordinal")
        mask = np.ones(n, dtype=bool)
        for col, vals in (eq.select or {}).items():
            mask &= frame[col].astype(str).isin([str(v) for v in vals]).to_numpy()
        if multi:
            overlap = mask & (eq_of_row >= 0)
            if overlap.any():
                raise SpecError(f"responses.{k}.select overlaps an earlier equation on {int(overlap.sum())} rows; "
                                  "give each row to one equation (make the `select:` lists disjoint)")
        mask &= eq_of_row < 0
        rows = np.flatnonzero(mask)
        if len(rows) == 0:
            where = f"responses.{k}.select" if eq.select else f"responses.{k}"
            raise DataError(f"{where}: the {eq.family} equation selects no rows (of {n}, or none left by earlier "
                            "equations); list values its `select:` columns have in the data")
        eq_of_row[rows] = k
        col = frame[eq.name] if len(rows) == n else frame[eq.name].iloc[rows]  # rows are ascending: all = 0..n-1
        categories = None
        if eq.family == "ordinal":
            cats = list(eq.categories) if eq.categories else sorted(pd.unique(col))
            lookup = {str(c): i for i, c in enumerate(cats)}
            codes = col.astype(str).map(lookup)
            if codes.isna().any():
                raise DataError(f"responses.{k}.categories: ordinal response column {excerpt(eq.name)} has values "
                                f"{excerpts(sorted(set(col.astype(str)) - set(lookup)))} not among the categories "
                                f"{excerpts(cats, 10)}; add them to `categories:` (or drop `categories:`)")
            y[rows] = codes.to_numpy(dtype=float)
            categories = tuple(cats)
        elif eq.success is not None:
            y[rows] = success_indicator(col, eq, k)
        else:
            if not pd.api.types.is_numeric_dtype(col):
                bad = col[pd.to_numeric(col, errors="coerce").isna()]
                raise DataError(f"responses.{k}: response column {excerpt(eq.name)} must be numeric for family "
                                f"{eq.family}; it holds values such as {excerpts(pd.unique(bad), 3)}; "
                                "recode it as numbers, or use family: ordinal for ordered categories")
            y[rows] = col.to_numpy(dtype=float)
        eq_trials = None
        if eq.trials:
            if eq.family != "binomial":
                raise SpecError(f"responses.{k}.trials is only for the binomial family; "
                                "drop `trials:` or use family: binomial")
            trials = np.ones(n) if trials is None else trials
            trials[rows] = numeric_column(frame, eq.trials, rows, f"responses.{k}.trials")
            eq_trials = trials[rows]
        if eq.offset:
            offset[rows] += numeric_column(frame, eq.offset, rows, f"responses.{k}.offset")
        if eq.exposure:
            expo = numeric_column(frame, eq.exposure, rows, f"responses.{k}.exposure")
            if np.any(expo <= 0):
                raise DataError(f"responses.{k}.exposure: column {excerpt(eq.exposure)} must be positive "
                                f"({int((expo <= 0).sum())} values are zero or negative); "
                                "drop those rows with data.filter or fix the column")
            offset[rows] += np.log(expo)
        try:
            family.validate(y[rows], eq_trials)
        except DataError as exc:
            raise DataError(f"responses.{k} ({eq.family}, column '{eq.name}'): {exc}") from None
        suffix = f":{eq.name}[{k}]" if multi else ""
        scale_rows = threshold_rows = hetero = hetero_rows = ordinal = choice = None
        extra = family_params(eq, k, family.name, frame, rows, y[rows], pt, suffix)
        if eq.family in ("gaussian", "gamma") and extra is None and not is_structured(eq):  # residuals: compile/residuals.py
            ystd = float(np.std(y[rows])) or 1.0
            if eq.family == "gaussian" and eq.variance_by:
                cats = frame[eq.variance_by].astype(str).to_numpy()[rows]
                labels = sorted(set(cats))
                ids = {c: pt.add(f"sd(Residual{suffix}:{eq.variance_by}={c})", "residual", value=ystd, transform="log",
                                 equation=eq.name, lhs=eq.name, op="~~", rhs=eq.name, group=c) for c in labels}
                scale_rows = np.array([ids[c] for c in cats])
            else:
                name = f"sd(Residual{suffix})" if eq.family == "gaussian" else f"shape{suffix}"
                block = "residual" if eq.family == "gaussian" else "shape"
                rid = pt.add(name, block, value=ystd if eq.family == "gaussian" else 1.0, transform="log",
                             equation=eq.name, lhs=eq.name, op="~~", rhs=eq.name)
                scale_rows = np.full(len(rows), rid)
            if eq.variance:
                hetero, names = _variance_design(eq, k, frame, rows)
                hetero_rows = np.array([pt.add(f"logsd(Residual{suffix}:{nm})", "hetero", value=0.0,
                                               equation=eq.name, lhs=eq.name, op="logsd", rhs=nm)
                                        for nm in names], dtype=int)
        if eq.family in CHOICE_FAMILIES:
            choice = choice_design(eq, k, frame, rows, y[rows])
        if eq.family == "ordinal":
            K = len(categories)
            counts = np.bincount(y[rows].astype(int), minlength=K)
            if (counts == 0).any():
                empty = [categories[j] for j in np.flatnonzero(counts == 0)]
                where = f"responses.{k}.categories" if eq.categories else f"responses.{k}"
                raise DataError(f"{where}: ordinal categories {empty} of {list(categories)} never occur, so their "
                                "thresholds are not identified; drop them from `categories:` or merge them with a neighbour")
            cum = np.cumsum(counts)[:-1] / counts.sum()
            starts = np.log(cum / (1 - cum))
            ids = [pt.add(f"cut{j + 1}{suffix}", "threshold", value=float(starts[j]),
                          transform="identity" if j == 0 else "ordered", equation=eq.name, group=eq.name,
                          lhs=eq.name, op="|", rhs=f"t{j + 1}") for j in range(K - 1)]
            threshold_rows = np.array(ids)
            if eq.thresholds or eq.scale:
                ordinal = ordinal_design(eq, k, frame, rows, K - 1, suffix, pt)
                family = OrdinalRows(eq.link)
        equations.append(Equation(eq.name, family, rows, scale_rows, threshold_rows, categories, hetero, hetero_rows,
                                  ordinal, choice, family_params=extra))
    if (eq_of_row < 0).any():
        raise DataError.at(("responses",), f"{int((eq_of_row < 0).sum())} rows are selected by no response equation; "
                                          "extend the `select:` lists")
    return equations, eq_of_row, y, trials, offset


def _ordinal_design(X: np.ndarray, x_names: tuple[str, ...]) -> tuple[np.ndarray, tuple[str, ...]]:
    """Ordinal models: the thresholds play the intercept's role (clmm, ologit), so drop the Intercept column.

    Building the design with the intercept keeps treatment coding of factors
    ('rating ~ temp' gives temp[T.warm]); a design that still spans the
    constant would be collinear with the thresholds.
    """
    if "Intercept" in x_names:
        keep = [j for j, name in enumerate(x_names) if name != "Intercept"]
        X, x_names = X[:, keep], tuple(x_names[j] for j in keep)
    elif X.shape[1] and np.linalg.matrix_rank(np.column_stack([np.ones(len(X)), X])) == X.shape[1]:
        raise SpecError(f"fixed: the columns {list(x_names)} add up to a constant, which the ordinal thresholds already "
                        "are; write the formula with an intercept (e.g. 'y ~ temp', it is dropped) so factors get treatment coding")
    return X, x_names


def _select_rows(spec: Spec, frame: pd.DataFrame) -> list[np.ndarray]:
    """Each equation's rows as `_equations` assigns them (its `select:`, rows not taken by an earlier equation)."""
    taken = np.zeros(len(frame), dtype=bool)
    out = []
    for eq in spec.responses:
        mask = ~taken
        for col, vals in (eq.select or {}).items():
            mask = mask & frame[col].astype(str).isin([str(v) for v in vals]).to_numpy()
        out.append(np.flatnonzero(mask))
        taken |= mask
    return out


def _choice_fixed(spec: Spec, frame: pd.DataFrame, X: np.ndarray, x_names: tuple[str, ...]
                  ) -> tuple[np.ndarray, tuple[str, ...]]:
    """Choice equations: the intercept cancels within a set (dropped when every equation is a choice), and the
    case covariates' alternative-specific columns are appended (compile/choice.py)."""
    if all(eq.choice is not None for eq in spec.responses) and "Intercept" in x_names:
        keep = [j for j, name in enumerate(x_names) if name != "Intercept"]
        X, x_names = X[:, keep], tuple(x_names[j] for j in keep)
    C, c_names = case_design(spec, frame, _select_rows(spec, frame))
    return np.column_stack([X, C]), x_names + c_names


def _row_named(pt: ParTableBuilder, name: str, where: Loc) -> int:
    names = pt.names()
    if name not in names:
        close = difflib.get_close_matches(name, names, n=1)
        hint = f"did you mean '{close[0]}'?" if close else f"parameters are {names}"
        raise SpecError.at(where, f"'{name}' is not a parameter; {hint}")
    return names.index(name)


def _apply_starts(spec: Spec, pt: ParTableBuilder) -> None:
    """`estimation.start`: starting values by parameter name, inside each parameter's range (an SD > 0...)."""
    for name, value in spec.estimation.start.items():
        row = pt.rows[_row_named(pt, name, ("estimation", "start", name, KEY))]
        where: Loc = ("estimation", "start", name)
        if row["transform"] == "log" and not value > 0:
            raise SpecError.at(where, f"{name} is a standard deviation or shape, estimated on the log scale; "
                                      "start it at a positive value (e.g. 1)")
        if not row["lower"] < value < row["upper"] and row["transform"] != "log":
            raise SpecError.at(where, f"{name} must start strictly between {row['lower']:g} and {row['upper']:g}; "
                                      "start it inside that range")
        row["value"] = float(value)
    started = set(spec.estimation.start)
    for i, row in enumerate(pt.rows):
        prev = pt.rows[i - 1] if i else None
        if row["transform"] == "ordered" and prev is not None and {row["name"], prev["name"]} & started:
            if not row["value"] > prev["value"]:
                name = row["name"] if row["name"] in started else prev["name"]
                raise SpecError.at(("estimation", "start", name), f"thresholds must increase: {pt.rows[i - 1]['name']} "
                                                                   f"starts at {pt.rows[i - 1]['value']:g} and "
                                                                   f"{row['name']} at {row['value']:g}; start them in increasing order")


def _apply_constraints(spec: Spec, pt: ParTableBuilder) -> None:
    """`constraints:`: fix any parameter-table row, or make groups of rows equal (lavaan's shared free index)."""
    for name, value in spec.constraints.fix.items():
        row = pt.rows[_row_named(pt, name, ("constraints", "fix", name, KEY))]
        if row["block"] in ("sd", "residual", "shape", "dispersion") and value < 0:
            raise SpecError.at(("constraints", "fix", name), f"{name} is a standard deviation or shape; fix it at a value >= 0")
        if row["block"] == "corr" and not -1 <= value <= 1:
            raise SpecError.at(("constraints", "fix", name), f"{name} is a correlation; fix it in [-1, 1]")
        pt.fix(name, value)
    for g, group in enumerate(spec.constraints.equal):
        rows = [pt.rows[_row_named(pt, name, ("constraints", "equal", g, j))] for j, name in enumerate(group)]
        if len(group) < 2:
            raise SpecError.at(("constraints", "equal", g), f"{group} needs at least two parameters; name two or more, or drop the group")
        kinds = {(r["block"] in ("sd", "residual", "shape"), r["transform"]) for r in rows}
        if len(kinds) != 1:
            raise SpecError.at(("constraints", "equal", g), f"{group} mixes parameters of different kinds (e.g. an SD and a coefficient); "
                                                         "group parameters of one kind")
        fixed = [j for j, r in enumerate(rows) if not r["free"]]
        if fixed:
            raise SpecError.at(("constraints", "equal", g, fixed[0]), f"{[rows[j]['name'] for j in fixed]} are fixed; "
                                                                       "free them or fix the whole group with constraints.fix")
        for name in group[1:]:
            pt.set_equal(name, group[0])


def compile_model(spec: Spec, data: LoadedData) -> CompiledModel:
    """Turn a validated spec and its loaded data into a CompiledModel with its parameter table."""
    check_spec(spec)
    check_choice_spec(spec)
    frame = expand_per_choice(spec, data.frame)
    cols = used_columns(spec)
    _check_columns(spec, frame, cols)
    frame, n_dropped = drop_missing(frame, cols)
    series = used_series(frame, cols)
    check_finite(frame, cols, series)
    check_stray_text(frame, cols, series)
    formula = parse_formula(spec.fixed)
    X, x_names = fixed_design(formula, frame)
    if all(eq.family == "ordinal" for eq in spec.responses):
        X, x_names = _ordinal_design(X, x_names)
    if any(eq.choice is not None for eq in spec.responses):
        X, x_names = _choice_fixed(spec, frame, X, x_names)
    check_level_order(frame, spec.levels, {b.level for b in spec.random} | {lat.level for lat in spec.latent})
    levels = build_levels(frame, spec.levels)
    pt = ParTableBuilder()
    beta_rows = np.array([pt.add(name, "fixed", value=0.0, lhs=spec.responses[0].name, op="~", rhs=name)
                          for name in x_names], dtype=int)
    equations, eq_of_row, y, trials, offset = _equations(spec, frame, pt)
    equations, residual = compile_residuals(spec, frame, levels, equations, y, pt)
    if any(eq.family.name == "ordinal" for eq in equations) and "Intercept" in x_names:
        raise SpecError("fixed: ordinal models have thresholds instead of an intercept; write the formula with `0 +` (e.g. 'y ~ 0 + temp')")
    parts = compile_latent(spec, frame, levels, pt)
    discrete = compile_discrete(spec, frame, levels, pt, X, parts.class_W, latent_loadings,
                                [(lat.name, lat.level) for lat in parts.latent])
    check_level_sizes(levels, parts.latent)
    check_within_sets(spec, [(k, eq.choice) for k, eq in enumerate(equations) if eq.choice is not None], X, x_names,
                      levels, {lat.level for lat in parts.latent})
    items = compile_items(spec, frame, pt)
    _apply_starts(spec, pt)
    _apply_constraints(spec, pt)
    weighting = compile_weights(spec, frame, levels, [lat.level for lat in parts.latent])
    weighting = check_choice_weights(spec, [(k, eq.choice.set_of_row) for k, eq in enumerate(equations)
                                            if eq.choice is not None], weighting, len(frame))
    if discrete and weighting is not None:
        where = ("weights",) if spec.weights is not None else ("estimation", "vce")
        raise SpecError.at(where, "weights and robust standard errors are not available with discrete latent "
                                  "distributions (mass points or classes) yet; drop them, or give the latent "
                                  "variables a normal distribution")
    if residual is not None and (weighting is not None or discrete):
        raise SpecError.at(("responses", residual.equation, "residuals"),
                           "residual covariance structures are not available with weights, robust standard errors "
                           "or discrete latent distributions yet; drop one or the other")
    if weighting is not None and items.rescov:
        raise SpecError.at(("residual_covariances",), "residual covariances are not available with weights or "
                                                      "robust standard errors yet; drop one or the other")
    return CompiledModel(
        spec=spec, y=y, X=X, x_names=x_names, offset=offset, trials=trials, equations=tuple(equations),
        eq_of_row=eq_of_row, levels=tuple(levels), latent=tuple(parts.latent), blocks=tuple(parts.blocks),
        B_entries=tuple(parts.B_entries), W=parts.W, w_names=parts.w_names,
        Gamma_entries=tuple(parts.Gamma_entries), beta_rows=beta_rows, partable=pt.build(),
        n_rows_read=data.n_rows, n_dropped_missing=n_dropped, data_sha256=data.sha256, weighting=weighting,
        discrete=discrete, item_codes=items.codes, item_labels=items.labels, rescov=items.rescov, residual=residual,
    )

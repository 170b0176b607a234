"""Design matrices via formulaic, for formulas the spec grammar accepted.

Specs may come from untrusted pull requests, and formulaic evaluates formula
factors as Python. So a formula passes three gates before any evaluation: the
grammar (`mlmrun.spec.formula_grammar`) on the raw text, an `ast` allow-list
over every factor formulaic parsed from it, and evaluation in a context that
holds only the data columns and ALLOWED_FUNCTIONS (not formulaic's own
transforms such as `np`).
"""

from __future__ import annotations

import ast
import re

import numpy as np
import pandas as pd
from formulaic import Formula
from formulaic.materializers import PandasMaterializer
from formulaic.parser.types.factor import Factor
from formulaic.transforms import C, center, poly, scale
from formulaic.transforms.identity import identity
from formulaic.utils.code import sanitize_variable_names
from formulaic.utils.layered_mapping import LayeredMapping

from mlmrun.errors import DataError, SpecError
from mlmrun.spec.formula_grammar import ALLOWED_FUNCTIONS as GRAMMAR_FUNCTIONS
from mlmrun.spec.formula_grammar import Kind, check_formula, excerpt

_IMPLEMENTATIONS = {
    "C": C, "I": identity, "center": center, "scale": scale, "poly": poly,
    "log": np.log, "log1p": np.log1p, "exp": np.exp, "sqrt": np.sqrt, "abs": np.abs,
}
ALLOWED_FUNCTIONS = {name: _IMPLEMENTATIONS[name] for name in GRAMMAR_FUNCTIONS}
"""The grammar's functions and what they evaluate to; nothing else is in scope when a formula is evaluated."""

_OK_NODES = (ast.Expression, ast.Name, ast.Load, ast.Constant, ast.BinOp, ast.UnaryOp, ast.Call,
             ast.Add, ast.Sub, ast.Mult, ast.Div, ast.Pow, ast.USub, ast.UAdd, ast.keyword, ast.Compare,
             ast.Eq, ast.NotEq, ast.Gt, ast.GtE, ast.Lt, ast.LtE)


PARSED: dict[tuple[str, str, str], Formula] = {}
"""parse_formula's cache: (text, where, kind) -> Formula (cleared when it grows past 256 entries)."""


def parse_formula(text: str, where: str = "fixed", kind: Kind = "formula") -> Formula:
    """Check a formula against the grammar, parse it with formulaic and check every factor again.

    `where` is the spec key errors name first (e.g. `responses.0.variance`), so the CLI
    locates them; `kind` says which sides the formula may have (see `check_formula`).
    Cached: one compile parses the fixed part several times (columns used, checks,
    design), and parsing costs more than the rest of a small model's compile.
    Formulas are only read, never changed; a refused formula raises (not cached).
    """
    key = (text, where, kind)
    if key in PARSED:
        return PARSED[key]
    parsed = check_formula(text, where, kind)
    try:
        formula = Formula(parsed.python_text or text)
    except Exception as exc:  # formulaic raises several parser exception types
        detail = _plain(exc, 160)
        raise SpecError(f"{where}: cannot parse formula {excerpt(text)} ({detail}); "
                        "write columns joined by + - * : and the allowed functions") from None
    for factor in _factors(formula):
        check_factor(factor, text, where)
    if len(PARSED) >= 256:
        PARSED.clear()
    PARSED[key] = formula
    return formula


def _plain(exc: Exception, width: int) -> str:
    """A formulaic error on one line, without its terminal colours and markers, at most `width` characters."""
    text = re.sub(r"\x1b\[[0-9;]*m|[\u29da\u29db]", "", str(exc))
    return " ".join(text.split())[:width]


def term_formula(term: str, where: str) -> Formula:
    """A `structural.Gamma` covariate (a column or a term such as age:bus) as the formula `0 + term`."""
    check_formula(term, where, "term")
    return parse_formula(f"0 + {term}", where)


def _factors(formula: Formula) -> list[Factor]:
    sides = [formula.lhs, formula.rhs] if hasattr(formula, "lhs") else [formula]
    return [factor for side in sides for term in side for factor in term.factors]


def check_factor(factor: Factor, formula: str, where: str) -> None:
    """Second gate: a factor is a column lookup, a number, or Python made only of columns, numbers,
    arithmetic, comparisons and calls of ALLOWED_FUNCTIONS (backtick names replaced by plain names)."""
    expr = str(factor.expr)
    if factor.eval_method == Factor.EvalMethod.LOOKUP:
        return
    if factor.eval_method == Factor.EvalMethod.LITERAL:
        if expr.replace(".", "", 1).isdigit():
            return
        raise _unsafe(where, formula, expr, "a literal that is not a number")
    try:
        tree = ast.parse(sanitize_variable_names(expr, {}, {}), mode="eval")
    except SyntaxError:
        raise _unsafe(where, formula, expr, "text that is not an expression") from None
    for node in ast.walk(tree):
        if not isinstance(node, _OK_NODES):
            raise _unsafe(where, formula, expr, type(node).__name__)
        if isinstance(node, ast.Name) and "__" in node.id:
            raise _unsafe(where, formula, expr, f"the dunder name {node.id!r}")
        if isinstance(node, ast.Call) and not (isinstance(node.func, ast.Name) and node.func.id in ALLOWED_FUNCTIONS):
            raise _unsafe(where, formula, expr, f"a call of {ast.unparse(node.func)[:40]!r}")
        if isinstance(node, ast.keyword) and node.arg != "degree":
            raise _unsafe(where, formula, expr, f"the keyword argument {node.arg!r}")


def _unsafe(where: str, formula: str, expr: str, what: str) -> SpecError:
    return SpecError(f"{where}: formula {excerpt(formula)}: term {excerpt(expr, 0, 60)} uses {what}, which is not "
                     f"allowed; use column names, numbers, + - * / ** and the functions {', '.join(ALLOWED_FUNCTIONS)}")


def formula_variables(formula: Formula) -> tuple[str | None, set[str]]:
    """The response column (or None) and the data columns the right-hand side needs."""
    lhs = None
    if hasattr(formula, "lhs"):
        names = [str(f.expr) for t in formula.lhs for f in t.factors]
        lhs = names[0] if names else None
        rhs = formula.rhs
    else:
        rhs = formula
    needed = {str(v) for v in rhs.required_variables} - set(ALLOWED_FUNCTIONS)
    return lhs, needed


class _AllowedOnly(PandasMaterializer):
    """formulaic's pandas materializer with a context of the data and ALLOWED_FUNCTIONS only.

    The stock materializer layers formulaic's transforms (np, contr, bs, ...) under the
    context; here names resolve to data columns or allowed functions, nothing else.
    """

    def __init__(self, data: pd.DataFrame) -> None:
        super().__init__(data, context=ALLOWED_FUNCTIONS)
        self.layered_context = LayeredMapping(
            LayeredMapping(self.data_context, name="data"),
            LayeredMapping(dict(ALLOWED_FUNCTIONS), name="context"),
        )


MAX_DESIGN_COLUMNS = 1000
"""Largest fixed-part design (columns) a spec may ask for: a text column read by mistake as a category with a
level per row would otherwise cost minutes of rank checking and gigabytes before any message."""

_CATEGORY_CALL = re.compile(r"^C\(\s*`?([^`()]+?)`?\s*\)$")


def _check_design_size(rhs: Formula, frame: pd.DataFrame, where: str) -> None:
    """Refuse, before building it, a design whose categorical terms alone exceed MAX_DESIGN_COLUMNS."""
    total = 0
    widest: tuple[int, str] = (0, "")
    for term in rhs:
        width = 1
        for factor in term.factors:
            expr = str(factor.expr).strip("`")
            match = _CATEGORY_CALL.match(expr)
            column = match.group(1) if match else expr
            if column in frame.columns and (match or not pd.api.types.is_numeric_dtype(frame[column])):
                levels = int(frame[column].nunique())
                width *= max(levels - 1, 1)
                widest = max(widest, (levels, column))
        total += width
    if total > MAX_DESIGN_COLUMNS:
        levels, column = widest
        raise DataError(f"{where}: the design would have about {total} columns, more than the budget of "
                        f"{MAX_DESIGN_COLUMNS}; column {excerpt(column)} is a category with {levels} distinct values. "
                        "If it holds numbers, fix the cells that are not; else use fewer categories "
                        "(or random effects for a factor with many levels)")


def fixed_design(formula: Formula, frame: pd.DataFrame, where: str = "fixed") -> tuple[np.ndarray, tuple[str, ...]]:
    """Evaluate the right-hand side into a dense design matrix and its column names.

    Errors are DataError messages starting with `where` (the spec key of the formula).
    """
    rhs = formula.rhs if hasattr(formula, "lhs") else formula
    missing = sorted(formula_variables(formula)[1] - {str(c) for c in frame.columns})
    if missing:
        raise DataError(f"{where}: the formula names columns {missing} that are not in the data")
    built = numeric_design(rhs, frame)
    if built is None or len(built[1]) > MAX_DESIGN_COLUMNS:  # a numeric design has one column per term
        _check_design_size(rhs, frame, where)
    if built is not None:
        X, names = built
    else:
        try:
            with np.errstate(all="ignore"):  # log(0) and the like are reported below, by term, not as warnings
                mm = _AllowedOnly(frame).get_model_matrix(rhs, na_action="raise", output="numpy")
        except Exception as exc:  # formulaic wraps evaluation errors in several types
            detail = _plain(exc, 200)
            raise DataError(f"{where}: cannot build the design from {excerpt(str(rhs))}: {detail}; check that "
                            "every term can be computed on every row (e.g. log() needs positive values)") from None
        # numpy output skips formulaic's pandas frame of the result; column-major as that frame converted
        X = np.asarray(mm, dtype=float, order="F")
        names = tuple(str(c) for c in mm.model_spec.column_names)
    bad = [names[j] for j in np.flatnonzero(~np.isfinite(X).all(axis=0))]
    if bad:
        raise DataError(f"{where}: the terms {bad[:5]} are infinite or undefined on some rows (e.g. log of 0 or "
                        "of a negative number, or a huge power); transform the column so it stays finite")
    if X.shape[1] > MAX_DESIGN_COLUMNS:
        raise DataError(f"{where}: the design has {X.shape[1]} columns, more than the budget of {MAX_DESIGN_COLUMNS}; "
                        "use fewer categories (or random effects for a factor with many levels)")
    if X.shape[1] and np.linalg.matrix_rank(X) < X.shape[1]:
        raise DataError(
            f"{where}: the design columns {excerpt(', '.join(names), 0, 200)} are collinear (rank deficient); "
            "drop or recode a term"
        )
    return X, names


def numeric_design(rhs: Formula, frame: pd.DataFrame) -> tuple[np.ndarray, tuple[str, ...]] | None:
    """The design of a right-hand side made only of the intercept and numeric columns, built with numpy.

    This is what formulaic builds for such a formula (a column of ones named
    'Intercept', each column as floats under its own name, in the formula's term
    order) without its per-call overhead, which is most of a small model's
    compile. None for anything else (categories, functions, interactions,
    literals, bool or extension dtypes, missing or infinite values, no column at all): formulaic builds those.
    """
    columns: list[np.ndarray] = []
    names: list[str] = []
    for term in rhs:
        if len(term.factors) != 1:
            return None
        factor = term.factors[0]
        expr = str(factor.expr)
        if factor.eval_method == Factor.EvalMethod.LITERAL and expr == "1":
            columns.append(np.ones(len(frame)))
            names.append("Intercept")
            continue
        if factor.eval_method != Factor.EvalMethod.LOOKUP or not expr.isidentifier() or expr not in frame.columns:
            return None
        values = frame[expr]
        if not (isinstance(values.dtype, np.dtype) and values.dtype.kind in "iuf"):
            return None
        column = values.to_numpy(dtype=float)
        if not np.isfinite(column).all():
            return None
        columns.append(column)
        names.append(expr)
    if not columns:
        return None
    X = np.empty((len(frame), len(columns)), order="F")  # column-major, as formulaic's frame converts
    for j, column in enumerate(columns):
        X[:, j] = column
    return X, tuple(names)

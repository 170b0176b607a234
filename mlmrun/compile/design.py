"""Fixed-part design matrices via formulaic, with formula functions from an allowed list only.

Specs may come from untrusted pull requests, so every factor expression of a
formula is parsed with `ast` and rejected unless it uses column names,
numbers, arithmetic and the functions in ALLOWED_FUNCTIONS.
"""

from __future__ import annotations

import ast

import numpy as np
import pandas as pd
from formulaic import Formula, model_matrix

from mlmrun.errors import DataError, SpecError

ALLOWED_FUNCTIONS = {
    "C": None, "I": None, "center": None, "scale": None, "poly": None,
    "log": np.log, "log1p": np.log1p, "exp": np.exp, "sqrt": np.sqrt, "abs": np.abs,
}
_OK_NODES = (ast.Expression, ast.Name, ast.Load, ast.Constant, ast.BinOp, ast.UnaryOp, ast.Call,
             ast.Add, ast.Sub, ast.Mult, ast.Div, ast.Pow, ast.USub, ast.UAdd, ast.keyword, ast.Compare,
             ast.Eq, ast.NotEq, ast.Gt, ast.GtE, ast.Lt, ast.LtE)


def parse_formula(text: str) -> Formula:
    """Parse a formula and check every expression in it is safe to evaluate."""
    try:
        formula = Formula(text)
    except Exception as exc:  # formulaic raises several parser exception types
        raise SpecError(f"fixed: cannot parse formula {text!r}: {exc}") from None
    for side in ([formula.lhs, formula.rhs] if hasattr(formula, "lhs") else [formula]):
        for term in side:
            for factor in term.factors:
                check_expression(str(factor.expr), text)
    return formula


def check_expression(expr: str, formula: str) -> None:
    """Reject anything but columns, numbers, arithmetic and allowed function calls."""
    try:
        tree = ast.parse(expr.strip("`"), mode="eval")
    except SyntaxError:
        if expr.startswith("`") or expr.replace("_", "").replace(".", "").isalnum():
            return
        raise SpecError(f"fixed: formula {formula!r}: cannot read term {expr!r}") from None
    for node in ast.walk(tree):
        if not isinstance(node, _OK_NODES):
            raise SpecError(
                f"fixed: formula {formula!r}: term {expr!r} uses {type(node).__name__}, which is not allowed; "
                f"use column names, numbers, + - * / ** and the functions {sorted(ALLOWED_FUNCTIONS)}"
            )
        if isinstance(node, ast.Call):
            if not isinstance(node.func, ast.Name) or node.func.id not in ALLOWED_FUNCTIONS:
                name = getattr(node.func, "id", ast.unparse(node.func))
                raise SpecError(
                    f"fixed: formula {formula!r}: function {name!r} is not allowed; allowed functions are {sorted(ALLOWED_FUNCTIONS)}"
                )


def formula_variables(formula: Formula) -> tuple[str | None, set[str]]:
    """The response column (or None) and the data columns the right-hand side needs."""
    lhs = None
    if hasattr(formula, "lhs"):
        names = [str(f.expr) for t in formula.lhs for f in t.factors]
        lhs = names[0] if names else None
        rhs = formula.rhs
    else:
        rhs = formula
    needed = set(rhs.required_variables) - set(ALLOWED_FUNCTIONS)
    return lhs, needed


def fixed_design(formula: Formula, frame: pd.DataFrame) -> tuple[np.ndarray, tuple[str, ...]]:
    """Evaluate the right-hand side into a dense design matrix and its column names."""
    rhs = formula.rhs if hasattr(formula, "lhs") else formula
    context = {k: v for k, v in ALLOWED_FUNCTIONS.items() if v is not None}
    try:
        mm = model_matrix(rhs, frame, context=context, na_action="raise")
    except Exception as exc:  # formulaic wraps evaluation errors in several types
        raise DataError(f"cannot build the fixed-effects design from {formula}: {exc}") from None
    X = np.asarray(mm, dtype=float)
    names = tuple(str(c) for c in mm.columns)
    if X.shape[1] and np.linalg.matrix_rank(X) < X.shape[1]:
        raise DataError(
            f"the fixed-effects design {names} is rank deficient (collinear columns); drop or recode a term"
        )
    return X, names

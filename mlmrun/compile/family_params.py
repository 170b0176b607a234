"""Parameter columns of the count and censored families: partable rows, designs and data bounds.

A family with per-row parameter columns (families/row_params.py) gets, per
equation, one `ParamColumn` per column: a linear model `design @ values[rows]`
of partable rows (the NB dispersion is a one-column design of ones; the
zero-inflation logit is the `zero_inflation:` formula's design) or a fixed data
vector (censoring bounds). `FamilyParams.values` builds the (rows x columns)
array the family reads; `FamilyParams.adjoint` maps its gradient back onto
partable rows, so the likelihood code stays parameter-blind.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from mlmrun.compile.design import fixed_design, formula_variables, parse_formula
from mlmrun.compile.partable import ParTableBuilder
from mlmrun.data.shown import excerpt
from mlmrun.errors import DataError, SpecError
from mlmrun.families import Family, get_family
from mlmrun.families.composite import Composite
from mlmrun.spec.model import Equation as EquationSpec

ZERO_INFLATED = {"poisson": "zip", "nbinom2": "zinb2", "nbinom1": "zinb1"}
COMPOSITE = {"poisson": "composite_poisson", "gaussian": "composite_gaussian"}
COLUMN_FAMILIES = frozenset({"nbinom2", "nbinom1", "zip", "zinb2", "zinb1", "censored_gaussian", "composite_poisson",
                             "composite_gaussian"})
_DISPERSION = {"nbinom2": "theta", "nbinom1": "phi"}
_SHOWN = 5


@dataclass(frozen=True)
class ParamColumn:
    """One parameter column on an equation's rows: `design @ values[rows]`, or fixed `data`."""

    design: np.ndarray | None
    rows: np.ndarray
    data: np.ndarray | None = None


@dataclass(frozen=True)
class FamilyParams:
    """The parameter columns of one equation's family, in the family's order."""

    columns: tuple[ParamColumn, ...]

    def values(self, values: np.ndarray) -> np.ndarray:
        """(equation rows x columns) parameter array at natural partable values."""
        cols = [c.data if c.design is None else c.design @ values[c.rows] for c in self.columns]
        return np.column_stack(cols)

    def adjoint(self, grad: np.ndarray, g: np.ndarray) -> None:
        """Add d loglik / d partable row into `g`, given d loglik / d column values `grad` (rows x columns)."""
        for j, c in enumerate(self.columns):
            if c.design is not None:
                np.add.at(g, c.rows, c.design.T @ grad[:, j])


def make_family(eq: EquationSpec, k: int) -> Family:
    """The Family of a response (ValueError for a link the family lacks); composite links carry their term links."""
    name = family_name(eq, k)
    if eq.composite is None:
        return get_family(name, eq.link)
    cls = type(get_family(name))
    assert issubclass(cls, Composite)
    return cls(eq.link, tuple(t.link for t in eq.composite))


def family_name(eq: EquationSpec, k: int) -> str:
    """The registry family of a response: `zero_inflation:`, `censoring:` and `composite:` select extended families."""
    extras = [key for key in ("zero_inflation", "censoring", "composite") if getattr(eq, key) is not None]
    if len(extras) > 1:
        raise SpecError.at(("responses", k, extras[1]), f"give one of {' / '.join(extras)} per response, not several; "
                                                         "keep the one the model needs")
    if eq.composite is not None:
        if eq.family not in COMPOSITE:
            raise SpecError.at(("responses", k, "composite"), f"composite links are for the poisson and gaussian "
                                                              f"families, not {eq.family}; drop `composite:` or change "
                                                              "the family")
        if eq.variance or eq.variance_by:
            raise SpecError.at(("responses", k, "composite"), "a composite gaussian response has one residual SD; "
                                                              "drop `variance:`/`variance_by:` or the composite link")
        return COMPOSITE[eq.family]
    if eq.zero_inflation is not None:
        if eq.family not in ZERO_INFLATED:
            raise SpecError.at(("responses", k, "zero_inflation"),
                               f"zero_inflation is for count families ({', '.join(ZERO_INFLATED)}), not {eq.family}; "
                               "drop it or use family: poisson or nbinom2")
        return ZERO_INFLATED[eq.family]
    if eq.censoring is not None:
        if eq.family != "gaussian":
            raise SpecError.at(("responses", k, "censoring"), f"censoring is for the gaussian family, not {eq.family}; "
                                                              "drop it or use family: gaussian")
        if eq.variance or eq.variance_by:
            raise SpecError.at(("responses", k, "censoring"), "a censored gaussian response has one residual SD; "
                                                              "drop `variance:`/`variance_by:` or the censoring")
        return "censored_gaussian"
    return eq.family


def extra_columns(eq: EquationSpec, k: int) -> dict[str, str]:
    """Data columns named by `zero_inflation:` and `censoring:` -> the key naming them (for used_columns)."""
    cols: dict[str, str] = {}
    if eq.zero_inflation is not None:
        where = f"responses.{k}.zero_inflation"
        for c in sorted(formula_variables(parse_formula(eq.zero_inflation, where, "one_sided"))[1]):
            cols.setdefault(c, where)
    for j, term in enumerate(eq.composite or []):
        where = f"responses.{k}.composite.{j}.formula"
        for c in sorted(formula_variables(parse_formula(term.formula, where, "one_sided"))[1]):
            cols.setdefault(c, where)
    if eq.censoring is not None:
        for key in ("left", "right", "upper"):
            if getattr(eq.censoring, key):
                cols.setdefault(getattr(eq.censoring, key), f"responses.{k}.censoring.{key}")
    return cols


def _shown(idx: np.ndarray) -> str:
    more = ", ..." if len(idx) > _SHOWN else ""
    return ", ".join(str(int(i)) for i in idx[:_SHOWN]) + more


def _numbers(frame: pd.DataFrame, col: str, rows: np.ndarray, key: str) -> np.ndarray:
    """A censoring column as floats on the equation's rows; text that is no number is refused naming the column."""
    from mlmrun.compile.data_checks import numeric_column  # data_checks imports this module

    return np.array(numeric_column(frame, col, rows, key), dtype=float)  # a copy: the bounds are edited in place


def _indicator(frame: pd.DataFrame, col: str, rows: np.ndarray, k: int, key: str) -> np.ndarray:
    v = _numbers(frame, col, rows, f"responses.{k}.censoring.{key}")
    bad = np.flatnonzero((v != 0.0) & (v != 1.0))
    if bad.size:
        raise DataError.at(("responses", k, "censoring", key),
                           f"censoring column {excerpt(col)} must hold 0 (observed) or 1 (censored); {bad.size} rows "
                           f"do not, first rows of the equation (0-based): {_shown(bad)}; recode it as 0/1")
    return v == 1.0


def censoring_bounds(eq: EquationSpec, k: int, frame: pd.DataFrame, rows: np.ndarray,
                     y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(lo, hi) per row of the equation: lo == hi == y observed, -inf/+inf for left/right censoring."""
    cen = eq.censoring
    lo, hi = y.copy(), y.copy()
    left = _indicator(frame, cen.left, rows, k, "left") if cen.left else np.zeros(len(rows), bool)
    right = _indicator(frame, cen.right, rows, k, "right") if cen.right else np.zeros(len(rows), bool)
    both = np.flatnonzero(left & right)
    if both.size:
        raise DataError.at(("responses", k, "censoring", "right"),
                           f"{both.size} rows are flagged both left- and right-censored (first rows of the equation, "
                           f"0-based: {_shown(both)}); give an interval with `upper:` instead, or fix the flags")
    if cen.upper:
        up = _numbers(frame, cen.upper, rows, f"responses.{k}.censoring.upper")
        below = np.flatnonzero(up < y)
        if below.size:
            raise DataError.at(("responses", k, "censoring", "upper"),
                               f"upper bound column {excerpt(cen.upper)} is below the response {excerpt(eq.name)} on "
                               f"{below.size} rows (first rows of the equation, 0-based: {_shown(below)}); the "
                               "response is the lower bound, so swap the columns or fix them")
        clash = np.flatnonzero((left | right) & (up != y))
        if clash.size:
            raise DataError.at(("responses", k, "censoring", "upper"),
                               f"{clash.size} rows flagged left- or right-censored also have an upper bound other "
                               f"than the response (first rows of the equation, 0-based: {_shown(clash)}); give "
                               "each row one kind of censoring (set `upper` equal to the response on flagged rows)")
        hi = up
    lo[left] = -np.inf
    hi[right] = np.inf
    return lo, hi


def family_params(eq: EquationSpec, k: int, family: str, frame: pd.DataFrame, rows: np.ndarray, y: np.ndarray,
                  pt: ParTableBuilder, suffix: str) -> FamilyParams | None:
    """Partable rows and parameter columns of an equation whose family takes per-row columns (else None)."""
    if family not in COLUMN_FAMILIES:
        return None
    ones = np.ones((len(rows), 1))
    common = dict(equation=eq.name, lhs=eq.name)
    cols: list[ParamColumn] = []
    if family.startswith("composite"):
        if family == "composite_gaussian":
            rid = pt.add(f"sd(Residual{suffix})", "residual", value=float(np.std(y)) or 1.0, transform="log",
                         op="~~", rhs=eq.name, **common)
            cols.append(ParamColumn(ones, np.array([rid])))
        for j, term in enumerate(eq.composite):
            where = f"responses.{k}.composite.{j}.formula"
            D, names = fixed_design(parse_formula(term.formula, where, "one_sided"),
                                    frame.iloc[rows].reset_index(drop=True), where)
            if not D.shape[1]:
                raise SpecError.at(("responses", k, "composite", j, "formula"),
                                   f"{term.formula!r} has no terms; write '~ 1' for a constant added term")
            ids = [pt.add(f"composite{j + 1}({nm}){suffix}", "composite", value=-1.0 if nm == "Intercept" else 0.0,
                          op=f"composite{j + 1}", rhs=nm, **common) for nm in names]
            cols.append(ParamColumn(D, np.array(ids)))
        return FamilyParams(tuple(cols))
    if family == "censored_gaussian":
        rid = pt.add(f"sd(Residual{suffix})", "residual", value=float(np.std(y)) or 1.0, transform="log",
                     op="~~", rhs=eq.name, **common)
        lo, hi = censoring_bounds(eq, k, frame, rows, y)
        return FamilyParams((ParamColumn(ones, np.array([rid])), ParamColumn(None, np.zeros(0, int), lo),
                             ParamColumn(None, np.zeros(0, int), hi)))
    base = eq.family
    if base in _DISPERSION:
        rid = pt.add(f"{_DISPERSION[base]}{suffix}", "dispersion", value=1.0, transform="log", op="~~", rhs=eq.name,
                     **common)
        cols.append(ParamColumn(ones, np.array([rid])))
    if eq.zero_inflation is not None:
        where = f"responses.{k}.zero_inflation"
        D, names = fixed_design(parse_formula(eq.zero_inflation, where, "one_sided"),
                                frame.iloc[rows].reset_index(drop=True), where)
        if not D.shape[1]:
            raise SpecError.at(("responses", k, "zero_inflation"), f"{eq.zero_inflation!r} has no terms; write '~ 1' "
                                                                   "for a constant zero-inflation probability")
        ids = [pt.add(f"zi({nm}){suffix}", "zeroinfl", value=-2.0 if nm == "Intercept" else 0.0, op="zi", rhs=nm,
                      **common) for nm in names]
        cols.append(ParamColumn(D, np.array(ids)))
    return FamilyParams(tuple(cols))

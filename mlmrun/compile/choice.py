"""Multinomial and ranking equations: choice sets from the spec's `choice:` block, without reshaping by hand.

Rows of the compiled model are alternatives. `layout: per_choice` data (one row per choice,
the response naming the chosen alternative) are expanded here to one row per alternative
(the response becomes 1 for the chosen row, 0 otherwise; a new column, `choice.alternatives`,
names each row's alternative); `layout: per_alternative` data (gllamm's expanded form) are
used as they are, sets given by `choice.set`. Chooser covariates (`choice.case`) get one
coefficient per non-base alternative (columns ALTERNATIVE:TERM appended to the fixed design);
the fixed formula holds alternative-specific covariates (conditional logit), with the
intercept dropped (it cancels within a set). Random effects specific to alternatives are
latent variables with loadings `by:` the alternatives column.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from mlmrun.compile.design import fixed_design, formula_variables, parse_formula
from mlmrun.data.levels import LevelIndex
from mlmrun.data.shown import excerpt, excerpts
from mlmrun.errors import DataError, SpecError
from mlmrun.families.choice import check_sets
from mlmrun.spec.model import Spec

CHOICE_FAMILIES = ("multinomial", "ranking")
SET_COLUMN = "_choice_set_{k}"
"""Column created by per_choice expansion: the original row of each expanded row (its choice set)."""


@dataclass(frozen=True)
class ChoiceDesign:
    """The choice sets of one equation."""

    set_of_row: np.ndarray
    """(n,) choice-set code of each row of the model (nan on other equations' rows)."""
    alternatives: tuple[str, ...]
    base: str


def _set_column(eq, k: int) -> str:
    return eq.choice.set if eq.choice.layout == "per_alternative" else SET_COLUMN.format(k=k)


def check_choice_spec(spec: Spec) -> None:
    """`choice:` exactly where the family needs it, and the fields its layout needs."""
    for k, eq in enumerate(spec.responses):
        where = f"responses.{k}"
        if eq.family in CHOICE_FAMILIES and eq.choice is None:
            raise SpecError(f"{where}: the {eq.family} family needs a `choice:` block saying how the data hold choice "
                            "sets, e.g. choice: {layout: per_alternative, alternatives: alt, set: id}")
        if eq.choice is None:
            continue
        if eq.family not in CHOICE_FAMILIES:
            raise SpecError(f"{where}.choice is only for the multinomial and ranking families (found {eq.family}); "
                            "drop `choice:` or use family: multinomial")
        if eq.choice.layout == "per_alternative" and not eq.choice.set:
            raise SpecError(f"{where}.choice.set: per_alternative data need the column identifying each choice set; "
                            "write set: COLUMN (e.g. the chooser's id)")
        if eq.choice.layout == "per_choice":
            if eq.choice.set:
                raise SpecError(f"{where}.choice.set: with layout per_choice every row is a choice set; drop `set:`")
            if eq.family == "ranking":
                raise SpecError(f"{where}.choice.layout: rankings need one row per alternative holding its rank; "
                                "write layout: per_alternative")
            if len(spec.responses) > 1:
                raise SpecError(f"{where}.choice.layout: per_choice expands every row into one per alternative, "
                                "which mixed responses cannot share; write the data per_alternative")


def choice_columns(spec: Spec) -> dict[str, str]:
    """Data columns the choice blocks use -> where they are named (the created alternatives column excluded)."""
    cols: dict[str, str] = {}
    for k, eq in enumerate(spec.responses):
        if eq.choice is None:
            continue
        if eq.choice.layout == "per_alternative":
            cols.setdefault(eq.choice.alternatives, f"responses.{k}.choice.alternatives")
            if eq.choice.set:
                cols.setdefault(eq.choice.set, f"responses.{k}.choice.set")
        for c in sorted(formula_variables(case_formula(eq, k))[1]):
            cols.setdefault(c, f"responses.{k}.choice.case")
    return cols


def case_formula(eq, k: int):
    return parse_formula(eq.choice.case, f"responses.{k}.choice.case", "one_sided")


MAX_ALTERNATIVES = 100
"""Most alternatives a choice response may have: per_choice data are expanded to one row per alternative and
case covariates get one coefficient per alternative, so the count bounds the cost of a spec."""


def _check_alternative_count(alts: list[str] | tuple[str, ...], k: int) -> None:
    if len(alts) > MAX_ALTERNATIVES:
        raise DataError.at(("responses", k, "choice", "alternatives"),
                           f"the choice has {len(alts)} alternatives, more than the {MAX_ALTERNATIVES} allowed; "
                           "merge rare alternatives, or model the response with another family")


def expand_per_choice(spec: Spec, frame: pd.DataFrame) -> pd.DataFrame:
    """Expand per_choice data to one row per alternative (the model's rows), rows ordered by choice then alternative."""
    for k, eq in enumerate(spec.responses):
        if eq.choice is None or eq.choice.layout != "per_choice":
            continue
        where = f"responses.{k}"
        if eq.name not in frame.columns:
            return frame  # _check_columns names the missing response column
        if eq.choice.alternatives in frame.columns:
            raise DataError(f"{where}.choice.alternatives: expanding would create column {excerpt(eq.choice.alternatives)}, "
                            "which already exists; choose another name")
        labels = frame[eq.name]
        present = sorted({str(v) for v in labels.dropna()})
        alts = [str(a) for a in eq.choice.alternatives_order] if eq.choice.alternatives_order else present
        unknown = sorted(set(present) - set(alts))
        if unknown:
            raise DataError(f"{where}.choice.alternatives_order: the response {excerpt(eq.name)} holds {excerpts(unknown)}, "
                            f"which are not among the alternatives {excerpts(alts, 10)}; add them")
        if len(alts) < 2:
            raise DataError(f"{where}: the response {excerpt(eq.name)} has {len(alts)} alternative; a choice needs two or more")
        _check_alternative_count(alts, k)
        n, m = len(frame), len(alts)
        long = frame.loc[frame.index.repeat(m)].reset_index(drop=True)
        alt_col = np.tile(np.array(alts, dtype=object), n)
        chosen = labels.astype(str).to_numpy().repeat(m) == alt_col
        long[eq.name] = np.where(labels.isna().to_numpy().repeat(m), np.nan, chosen.astype(float))
        long[eq.choice.alternatives] = alt_col
        long[SET_COLUMN.format(k=k)] = np.arange(n).repeat(m)
        frame = long
    return frame


def _alternatives(eq, k: int, frame: pd.DataFrame, rows: np.ndarray) -> tuple[np.ndarray, tuple[str, ...], str]:
    alt = frame[eq.choice.alternatives].astype(str).to_numpy()[rows]
    alts = tuple(sorted(set(alt)))
    if eq.choice.layout == "per_choice" and eq.choice.alternatives_order:
        alts = tuple(str(a) for a in eq.choice.alternatives_order)
    _check_alternative_count(alts, k)
    base = alts[0] if eq.choice.base is None else str(eq.choice.base)
    if base not in alts:
        raise SpecError(f"responses.{k}.choice.base: {excerpt(base)} is not an alternative; alternatives are "
                        f"{excerpts(alts, 10)}; write one of them")
    return alt, alts, base


def case_design(spec: Spec, frame: pd.DataFrame, eq_rows: list[np.ndarray]) -> tuple[np.ndarray, tuple[str, ...]]:
    """Chooser covariates times non-base alternative indicators, on each choice equation's rows (0 elsewhere)."""
    blocks, names = [], []
    for k, (eq, rows) in enumerate(zip(spec.responses, eq_rows, strict=True)):
        if eq.choice is None:
            continue
        alt, alts, base = _alternatives(eq, k, frame, rows)
        S, s_names = fixed_design(case_formula(eq, k), frame.iloc[rows].reset_index(drop=True),
                                  f"responses.{k}.choice.case")
        for a in alts:
            if a == base:
                continue
            block = np.zeros((len(frame), S.shape[1]))
            block[rows] = S * (alt == a)[:, None]
            blocks.append(block)
            names += [f"{a}:{nm}" for nm in s_names]
    return (np.hstack(blocks) if blocks else np.zeros((len(frame), 0))), tuple(names)


def choice_design(eq, k: int, frame: pd.DataFrame, rows: np.ndarray, y: np.ndarray) -> ChoiceDesign:
    """The equation's sets, checked: two or more distinct alternatives and one choice (multinomial) or a rank each."""
    alt, alts, base = _alternatives(eq, k, frame, rows)
    set_col = _set_column(eq, k)
    raw = frame[set_col].to_numpy()[rows]
    codes = pd.factorize(pd.Series(raw).astype(str))[0]
    dup = pd.DataFrame({"s": codes, "a": alt}).duplicated()
    if dup.any():
        first = raw[np.flatnonzero(dup.to_numpy())[0]]
        raise DataError(f"responses.{k}.choice.set: a choice set ({set_col} = {excerpt(first)}) lists an alternative "
                        f"twice ({int(dup.sum())} repeated rows); give each alternative one row per set")
    check_sets(y, codes, eq.family, f"responses.{k}.choice.set", raw)
    set_of_row = np.full(len(frame), np.nan)
    set_of_row[rows] = codes
    return ChoiceDesign(set_of_row, alts, base)


def check_within_sets(spec: Spec, designs: list[tuple[int, ChoiceDesign]], X: np.ndarray, x_names: tuple[str, ...],
                      levels: list[LevelIndex], latent_levels: set[int]) -> None:
    """Sets lie within one unit of every latent level, and every fixed column varies within some set."""
    for k, design in designs:
        rows = np.flatnonzero(~np.isnan(design.set_of_row))
        sets = design.set_of_row[rows].astype(np.intp)
        for i in sorted(latent_levels):
            codes = levels[i].codes[rows]
            lo = np.full(sets.max() + 1, np.iinfo(np.intp).max)
            hi = np.full(sets.max() + 1, -1)
            np.minimum.at(lo, sets, codes)
            np.maximum.at(hi, sets, codes)
            if np.any(lo != hi):
                raise DataError(f"responses.{k}.choice.set: {int((lo != hi).sum())} choice sets span several units of "
                                f"level '{levels[i].name}'; the alternatives of a set share its random effects, so "
                                "a set must lie within one unit of every level with random effects")
        Xr = X[rows]
        lo = np.full((sets.max() + 1, X.shape[1]), np.inf)
        hi = np.full((sets.max() + 1, X.shape[1]), -np.inf)
        np.minimum.at(lo, sets, Xr)
        np.maximum.at(hi, sets, Xr)
        flat = [x_names[j] for j in range(X.shape[1]) if np.all(lo[:, j] == hi[:, j]) and np.any(Xr[:, j] != 0)]
        if flat:
            raise SpecError(f"fixed: the columns {list(flat)} do not vary within any choice set of responses.{k}, so "
                            "they cancel from the choice probabilities; move chooser covariates to "
                            f"responses.{k}.choice.case (one coefficient per alternative)")


def n_observations(model) -> int:
    """Independent observations for BIC and the report: rows, with each choice set counted once (not per alternative)."""
    n = model.n
    for eq in model.equations:
        if eq.choice is not None:
            sets = eq.choice.set_of_row[eq.rows]
            n -= len(eq.rows) - len(np.unique(sets))
    return int(n)

"""Latent structure -> latent variables, covariance blocks, B and Gamma entries, and their partable rows.

`random:` blocks are shorthand: each term becomes a latent variable with one
loading fixed at 1 on the term's covariate (1 for the intercept).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from mlmrun.compile.design import fixed_design, term_formula
from mlmrun.compile.discrete import is_discrete
from mlmrun.compile.model import CovBlock, LatentVar
from mlmrun.compile.partable import ParTableBuilder
from mlmrun.data.levels import LevelIndex
from mlmrun.errors import KEY, DataError, IdentificationError, Loc, SpecError
from mlmrun.spec.formula_grammar import excerpt
from mlmrun.spec.model import CovarianceSpec, Spec


@dataclass
class LatentParts:
    """Intermediate result: latent variables and structure with partable row ids."""

    latent: list[LatentVar] = field(default_factory=list)
    blocks: list[CovBlock] = field(default_factory=list)
    B_entries: list[tuple[int, int, int]] = field(default_factory=list)
    Gamma_entries: list[tuple[int, int, int]] = field(default_factory=list)
    W: np.ndarray | None = None
    w_names: tuple[str, ...] = ()
    spec_of: dict[int, int] = field(default_factory=dict)
    """Latent index -> position in spec.latent (discrete entries are compiled by compile/discrete.py)."""
    class_W: dict[str, tuple[np.ndarray, tuple[str, ...]]] = field(default_factory=dict)
    """Per latent class variable: its Gamma covariates (row-level) and their names."""


def term_name(term: int | str) -> str:
    """Display name of a random term (Stata's _cons for the intercept)."""
    return "_cons" if str(term) == "1" else str(term)


def _numeric(frame: pd.DataFrame, col: str, loc: Loc) -> np.ndarray:
    if col not in frame.columns:
        raise DataError.at(loc, f"column '{col}' is not in the data")
    if not pd.api.types.is_numeric_dtype(frame[col]):
        raise DataError.at(loc, f"column '{col}' must be numeric (found {frame[col].dtype}); use `by:` loadings for categories")
    return frame[col].to_numpy(dtype=float)


def _category_labels(frame: pd.DataFrame, col: str) -> list[str]:
    values = frame[col]
    uniq = pd.unique(values)
    try:
        uniq = sorted(uniq)
    except TypeError:
        uniq = sorted(uniq, key=str)
    return [str(u) for u in uniq]


def _add_block(pt: ParTableBuilder, parts: LatentParts, level_idx: int, level_name: str,
               members: list[int], kind: str, fixed_sd: dict[int, float], origin: str) -> None:
    names = [parts.latent[m].name for m in members]
    sd_rows = []
    for m, nm in zip(members, names, strict=True):
        equal = f"sd({names[0]})@{level_name}" if kind in ("identity", "exchangeable") and m != members[0] else None
        fixed = m in fixed_sd
        sd_rows.append(pt.add(f"sd({nm})@{level_name}", "sd", value=fixed_sd.get(m, 1.0), free=not fixed,
                              lhs=nm, op="~~", rhs=nm, level=level_name, lower=0.0, origin=origin,
                              equal_to=None if fixed else equal))
    corr_rows = []
    if kind in ("exchangeable", "unstructured") and len(members) > 1:
        k = len(members)
        first = None
        for a in range(1, k):
            for b in range(a):
                name = f"corr({names[a]},{names[b]})@{level_name}"
                lower = -1.0 / (k - 1) if kind == "exchangeable" else -1.0
                corr_rows.append(pt.add(name, "corr", value=0.0, lhs=names[a], op="~~", rhs=names[b],
                                        level=level_name, lower=lower, upper=1.0, origin=origin,
                                        equal_to=first if kind == "exchangeable" else None))
                first = first or name
    parts.blocks.append(CovBlock(level=level_idx, members=tuple(members), kind=kind,
                                 sd_rows=np.array(sd_rows, dtype=int), corr_rows=np.array(corr_rows, dtype=int)))


def compile_latent(spec: Spec, frame: pd.DataFrame, levels: list[LevelIndex], pt: ParTableBuilder) -> LatentParts:
    """Build latent variables (random shorthand first, then `latent:`), blocks, B and Gamma."""
    parts = LatentParts()
    level_pos = {lv.name: i for i, lv in enumerate(levels)}
    n = len(frame)

    for i, block in enumerate(spec.random):
        if is_discrete(block):
            continue
        members = []
        for j, term in enumerate(block.terms):
            tname = term_name(term)
            if any(lat.name == tname and lat.level == level_pos[block.level] for lat in parts.latent):
                raise SpecError.at(("random", i, "terms", j), f"random term '{tname}' appears twice at level "
                                                              f"'{block.level}'; list each term once per level")
            col = np.ones(n) if str(term) == "1" else _numeric(frame, str(term), ("random", i, "terms", j))
            row = pt.add(f"loading({tname}@{block.level})", "loading", value=1.0, free=False,
                         lhs=tname, op="=~", rhs=str(term), level=block.level, origin="shorthand")
            parts.latent.append(LatentVar(tname, level_pos[block.level], col[:, None], np.array([row]),
                                          (str(term),), "random"))
            members.append(len(parts.latent) - 1)
        _add_block(pt, parts, level_pos[block.level], block.level, members, block.covariance, {}, "shorthand")

    first_latent = len(parts.latent)
    for i, lat in enumerate(spec.latent):
        if is_discrete(lat):
            continue
        Z, rows, labels = _loadings(i, lat, frame, pt)
        parts.spec_of[len(parts.latent)] = i
        parts.latent.append(LatentVar(lat.name, level_pos[lat.level], Z, np.array(rows, dtype=int), tuple(labels), "latent"))
    _structural(spec, frame, parts, pt, first_latent)
    _identify(spec, parts, pt, first_latent)

    for lvl_name, lvl_idx in level_pos.items():
        members = [m for m in range(first_latent, len(parts.latent)) if parts.latent[m].level == lvl_idx]
        if not members:
            continue
        cov = spec.covariance.get(lvl_name, "unstructured")
        cov = cov if isinstance(cov, CovarianceSpec) else CovarianceSpec(type=cov)
        fixed_sd = {}
        for m in members:
            declared = spec.latent[parts.spec_of[m]].variance
            from_cov = cov.fix.get(f"var({parts.latent[m].name})")
            value = declared if declared is not None else from_cov
            if value is not None:
                if value < 0:
                    where: Loc = (("latent", parts.spec_of[m], "variance") if declared is not None
                                  else ("covariance", lvl_name, "fix", f"var({parts.latent[m].name})"))
                    raise SpecError.at(where, f"variance of '{parts.latent[m].name}' fixed at {value}; variances must be >= 0: "
                                              "fix it at 0 or more")
                fixed_sd[m] = float(np.sqrt(value))
        unknown = [k for k in cov.fix if not (k.startswith("var(") and k[4:-1] in {parts.latent[m].name for m in members})]
        if unknown:
            raise SpecError.at(("covariance", lvl_name, "fix", unknown[0], KEY),
                               f"{unknown} not understood; write 'var(NAME): value' for a latent variable at this level")
        if cov.type == "independent":
            for m in members:
                _add_block(pt, parts, lvl_idx, lvl_name, [m], "independent", fixed_sd, "user")
        else:
            _add_block(pt, parts, lvl_idx, lvl_name, members, "unstructured", fixed_sd, "user")
    if parts.W is None:
        parts.W = np.zeros((n, 0))
    return parts


def _loadings(i: int, lat, frame: pd.DataFrame, pt: ParTableBuilder) -> tuple[np.ndarray, list[int], list[str]]:
    spec_l = lat.loadings
    n = len(frame)
    if spec_l is None:
        return np.zeros((n, 0)), [], []
    base: Loc = ("latent", i, "loadings")
    if spec_l.by is not None:
        if spec_l.by not in frame.columns:
            raise DataError.at(base + ("by",), f"column '{spec_l.by}' is not in the data")
        cats = _category_labels(frame, spec_l.by)
        labels = [str(c) for c in spec_l.only] if spec_l.only is not None else cats
        missing = [j for j, c in enumerate(labels) if c not in cats]
        if missing:
            bad = [labels[j] for j in missing]
            raise DataError.at(base + ("only", missing[0]), f"latent '{lat.name}': {bad} are not categories of "
                                                            f"'{spec_l.by}'; its categories are {cats}")
        col = frame[spec_l.by].astype(str).to_numpy()
        Z = np.stack([(col == c).astype(float) for c in labels], axis=1)
    else:
        labels = [str(c) for c in spec_l.on or []]
        Z = np.stack([np.ones(n) if c == "1" else _numeric(frame, c, base + ("on", j))
                      for j, c in enumerate(labels)], axis=1)
    keys: list[tuple[object, Loc]] = ([(k, base + ("fix", k, KEY)) for k in spec_l.fix]
                                      + [(k, base + ("start", k, KEY)) for k in spec_l.start]
                                      + [(x, base + ("equal", g, j)) for g, grp in enumerate(spec_l.equal)
                                         for j, x in enumerate(grp)])
    for key, where in keys:
        if str(key) not in labels:
            close = difflib.get_close_matches(str(key), labels, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise SpecError.at(where, f"latent '{lat.name}': loading '{key}' is not among its loadings {labels}{hint}")
    equal_to: dict[str, str] = {}
    for grp in spec_l.equal:
        for other in grp[1:]:
            equal_to[str(other)] = str(grp[0])
    rows = []
    for lab in labels:
        fixed = lab in {str(k) for k in spec_l.fix}
        value = {str(k): v for k, v in spec_l.fix.items()}.get(lab, {str(k): v for k, v in spec_l.start.items()}.get(lab, 1.0))
        eq = equal_to.get(lab)
        rows.append(pt.add(f"loading({lat.name}->{lab})", "loading", value=value, free=not fixed,
                           lhs=lat.name, op="=~", rhs=lab, level=lat.level,
                           equal_to=f"loading({lat.name}->{eq})" if eq and not fixed else None))
    return Z, rows, labels


def _structural(spec: Spec, frame: pd.DataFrame, parts: LatentParts, pt: ParTableBuilder, first: int) -> None:
    index = {parts.latent[m].name: m for m in range(first, len(parts.latent))}
    discrete = {lat.name: lat for lat in spec.latent if is_discrete(lat)}
    for outcome, preds in spec.structural.B.items():
        for pred, val in preds.items():
            if outcome in discrete or pred in discrete:
                raise SpecError.at(("structural", "B", outcome, pred, KEY),
                                   f"'{outcome if outcome in discrete else pred}' is discrete (mass points or classes) and "
                                   "cannot enter structural.B; drop this entry or give it a normal distribution")
            i, j = index[outcome], index[pred]
            if parts.latent[j].level < parts.latent[i].level:
                raise SpecError.at(("structural", "B", outcome, pred, KEY),
                                   "a latent variable can only be regressed on latent variables at the same or a higher "
                                   f"level ('{pred}' is at a lower level than '{outcome}'); reverse the arrow or move '{pred}' to a "
                                   "level at or above its outcome's")
            free = val == "free"
            parts.B_entries.append((i, j, pt.add(f"B({outcome}<-{pred})", "B", value=0.5 if free else float(val),
                                                 free=free, lhs=outcome, op="~", rhs=pred)))
    w_cols: list[str] = []
    for outcome, preds in spec.structural.Gamma.items():
        if outcome in discrete:
            if discrete[outcome].classes is None:
                raise SpecError.at(("structural", "Gamma", outcome, KEY),
                                   f"'{outcome}' has discrete mass points, whose mean is fixed at 0; covariates of a "
                                   "discrete distribution are only for latent classes (`classes: K`): put them in `fixed`")
            names = tuple(str(c) for c in preds)
            W = [_covariate(frame, c, ("structural", "Gamma", outcome, c, KEY)) for c in names]
            parts.class_W[outcome] = (np.stack(W, axis=1) if W else np.zeros((len(frame), 0)), names)
            continue
        for col, val in preds.items():
            if col not in w_cols:
                w_cols.append(col)
            free = val == "free"
            parts.Gamma_entries.append((index[outcome], w_cols.index(col),
                                        pt.add(f"Gamma({outcome}<-{col})", "Gamma", value=0.0 if free else float(val),
                                               free=free, lhs=outcome, op="~", rhs=col)))
    if w_cols:
        first_use = {c: o for o, preds in reversed(spec.structural.Gamma.items()) for c in preds}
        parts.W = np.stack([_covariate(frame, c, ("structural", "Gamma", first_use[c], c, KEY)) for c in w_cols], axis=1)
        parts.w_names = tuple(w_cols)


def _covariate(frame: pd.DataFrame, term: str, loc: Loc) -> np.ndarray:
    """One numeric Gamma covariate: a column, or a formula term such as age:bus (the formula grammar's)."""
    if term in frame.columns:
        return _numeric(frame, term, loc)
    where = f"structural.Gamma.{loc[2]}"
    try:
        X, names = fixed_design(term_formula(term, where), frame, where)
    except SpecError as exc:
        raise SpecError.at(loc, str(exc).removeprefix(f"{where}: ")) from None
    except DataError as exc:
        raise DataError.at(loc, str(exc).removeprefix(f"{where}: ")) from None
    if X.shape[1] != 1:
        raise SpecError.at(loc, f"covariate {excerpt(term)} expands to {len(names)} columns {list(names)[:5]}; "
                           "give numeric terms one at a time")
    return X[:, 0]


def _identify(spec: Spec, parts: LatentParts, pt: ParTableBuilder, first: int) -> None:
    """Obvious identification failures, caught before any fitting."""
    for m, k in parts.spec_of.items():
        lat_spec = spec.latent[k]
        rows = [pt.rows[r] for r in parts.latent[m].loading_rows]
        fixed_nonzero = any(not r["free"] and r["value"] != 0 for r in rows)
        free_any = any(r["free"] for r in rows)
        as_predictor = [pt.rows[row] for i, j, row in parts.B_entries if j == m]
        if rows and not free_any and not fixed_nonzero:
            raise IdentificationError.at(("latent", k), f"latent '{lat_spec.name}': every loading is fixed at zero, so it does not enter the model; free a loading or remove it")
        if not rows and not as_predictor:
            raise IdentificationError.at(("latent", k), f"latent '{lat_spec.name}' has no loadings and no role in structural.B; give it loadings or use it as a predictor in B")
        scaled = (lat_spec.variance is not None or fixed_nonzero
                  or (not rows and any(not r["free"] and r["value"] != 0 for r in as_predictor)))
        if not scaled:
            raise IdentificationError.at(
                ("latent", k), f"latent '{lat_spec.name}' has no fixed scale: every loading and its variance are free. "
                f"Fix one loading (loadings: {{fix: {{ITEM: 1}}}}) or its variance (variance: 1)."
            )

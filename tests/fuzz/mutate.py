"""Hypothesis strategies that break shipped specs and their data the way attackers and careless users do.

A case is a shipped spec (specs/*.yaml) read as plain YAML data plus its CSV read
as text rows; 1-3 spec mutations (a key deleted, renamed or added, a value
replaced by a wrong type, a random string, a number, null or a nested list, or
by another value of the same spec) and 0-2 data mutations (a column dropped,
renamed or emptied, cells replaced, columns or rows shuffled, rows cut) are
drawn and applied to copies; nothing here touches the shipped files.
"""

from __future__ import annotations

import copy
import csv
import io
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[2]
SPECS = ROOT / "specs"
SPEC_FILES = tuple(sorted(p.name for p in SPECS.glob("*.yaml")))

Path_ = tuple[Any, ...]

VOCABULARY = (
    "gaussian", "binomial", "poisson", "gamma", "ordinal", "logit", "probit", "log", "identity", "cloglog",
    "free", "ML", "REML", "adaptive", "laplace", "ghq", "mode", "mean", "independent", "unstructured",
    "exchangeable", "identity", "1", "0", "~", "y ~ x", "y ~ 0 + C(item)", "~ x", "C(item)", "poly(x, 3)",
    "log(x)", "x:z", "x * z", "I(x**2)", "center(x)", "scale(x)", "var(x)", "cov(a,b)", "sd(Residual)",
    "data/pig.csv", "../x.csv", "/etc/passwd", ".git/config", "results.json", "data", "", " ", "-1", "1e308",
    "nan", "inf", "true", "null", "ü", "a\tb", "{x}", "`x`", "x.__class__", "__import__", "0x10", "01",
    # the spec keys and values of the families, weights and choice sets added after the fuzz was written
    "thresholds", "scale", "choice", "zero_inflation", "censoring", "composite", "weights", "pweight", "fweight",
    "pwscale", "size", "effective", "gk", "vce", "robust", "oim", "cluster", "nbinom1", "nbinom2", "multinomial",
    "ranking", "layout", "per_choice", "per_alternative", "alternatives", "set", "base", "case", "left", "right",
    "upper", "formula", "alternatives_order", "~ 0", "~ 1 + x",
)
FEATURE_KEYS = ("thresholds", "scale", "choice", "zero_inflation", "censoring", "composite", "weights", "pweight",
                "vce", "family")
"""What `add_feature` grafts onto a spec: the keys of the families, weights and choice sets."""


@cache
def shipped_spec(name: str) -> tuple[Any, str]:
    """A shipped spec's YAML data (never mutated: callers deep-copy) and its data path."""
    data = yaml.safe_load((SPECS / name).read_text())
    return data, data["data"]["path"]


@cache
def shipped_table(rel_path: str) -> tuple[tuple[str, ...], tuple[tuple[str, ...], ...]]:
    """Header and rows of a shipped CSV, as text (so cells can be replaced by anything)."""
    with (SPECS / rel_path).open(newline="") as handle:
        rows = list(csv.reader(handle))
    return tuple(rows[0]), tuple(tuple(r) for r in rows[1:])


def _paths(node: Any, prefix: Path_ = ()) -> list[Path_]:
    """Every path to a dict entry or list item below node."""
    out: list[Path_] = []
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, value in items:
        out.append(prefix + (key,))
        out += _paths(value, prefix + (key,))
    return out


def _values(node: Any) -> list[Any]:
    """Every scalar and container value in the tree (for swapping values across keys)."""
    out: list[Any] = []
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, value in items:
        out.append(value)
        out.append(key)
        out += _values(value)
    return out


def _parent(tree: Any, path: Path_) -> Any:
    node = tree
    for part in path[:-1]:
        node = node[part]
    return node


scalars = st.one_of(
    st.none(), st.booleans(),
    st.integers(min_value=-3, max_value=40), st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12), st.sampled_from(VOCABULARY),
)
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.one_of(st.sampled_from(VOCABULARY), st.text(max_size=6)), inner, max_size=3),
), max_leaves=6)


@dataclass
class Case:
    """One fuzz case: a spec tree and a CSV (header + rows) to write, and what was done to them."""

    spec_name: str
    tree: Any
    data_path: str
    header: list[str]
    rows: list[list[str]]
    actions: list[str] = field(default_factory=list)

    def spec_text(self) -> str:
        """The mutated spec as YAML (safe_dump: no Python tags)."""
        return yaml.safe_dump(self.tree, sort_keys=False, allow_unicode=True)

    def csv_text(self) -> str:
        """The mutated data as CSV."""
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(self.header)
        writer.writerows(self.rows)
        return buf.getvalue()


def mutate_spec(draw: st.DrawFn, case: Case) -> None:
    """Apply one mutation to the spec tree."""
    paths = _paths(case.tree)
    kind = draw(st.sampled_from(["delete", "rename", "replace", "swap", "add", "same_type", "same_type", "same_type",
                                 "feature", "feature"]))
    if kind == "feature" and isinstance(case.tree, dict):
        add_feature(draw, case)
        return
    path = draw(st.sampled_from(paths)) if paths else ()
    if not path:
        case.tree = draw(values)
        case.actions.append(f"spec := {case.tree!r}")
        return
    parent, key = _parent(case.tree, path), path[-1]
    if kind == "delete":
        del parent[key]
        case.actions.append(f"delete {path}")
    elif kind == "rename" and isinstance(parent, dict):
        new = draw(st.one_of(st.sampled_from(VOCABULARY), st.text(min_size=1, max_size=10),
                             st.just(str(key)[:-1] or "x"), st.just(f"{key}s"), st.integers(-2, 5)))
        parent[new] = parent.pop(key)
        case.actions.append(f"rename {path} -> {new!r}")
    elif kind == "swap":
        new = copy.deepcopy(draw(st.sampled_from(_values(case.tree) or [None])))
        parent[key] = new
        case.actions.append(f"set {path} = {new!r} (from elsewhere in the spec)")
    elif kind == "same_type":
        parent[key] = _same_type(draw, parent[key], case)
        case.actions.append(f"set {path} = {parent[key]!r} (same type)")
    elif kind == "add" and isinstance(parent[key], dict):
        new_key = draw(st.one_of(st.sampled_from(VOCABULARY), st.text(min_size=1, max_size=8)))
        parent[key][new_key] = draw(values)
        case.actions.append(f"add {path + (new_key,)} = {parent[key][new_key]!r}")
    else:
        parent[key] = draw(st.one_of(values, st.sampled_from(case.header or ["x"]), st.sampled_from(VOCABULARY)))
        case.actions.append(f"set {path} = {parent[key]!r}")


def add_feature(draw: st.DrawFn, case: Case) -> None:
    """Graft one feature's key onto the spec with a plausible value built from the data's columns.

    Plausible values reach compile and the likelihood (where features meet), where random values stop at the
    schema: a formula on a column, a 0/1 column as a censoring flag, a column as a weight, set or alternative.
    """
    col = draw(st.sampled_from(case.header or ["x"]))
    other = draw(st.sampled_from(case.header or ["x"]))
    key = draw(st.sampled_from(FEATURE_KEYS))
    tree = case.tree
    responses = tree.get("responses")
    eq = responses[0] if isinstance(responses, list) and responses and isinstance(responses[0], dict) else None
    value: Any
    if key == "weights":
        value = draw(st.sampled_from([{"fweight": col}, {"pweight": col}, {"pweight": col, "pwscale": "size"},
                                      {"pweight": f"{col} / {other}", "pwscale": "gk"}, {"fweight": col, "pweight": other}]))
        tree["weights"] = value
    elif key == "vce":
        value = draw(st.sampled_from(["robust", "oim", {"cluster": col}]))
        est = tree.setdefault("estimation", {})
        if isinstance(est, dict):
            est["vce"] = value
    elif key == "pweight":
        levels = tree.get("levels")
        if not (isinstance(levels, list) and levels and isinstance(levels[0], dict)):
            return
        value = col
        draw(st.sampled_from(levels))["pweight"] = value
    elif eq is None:
        return
    elif key == "family":
        value = draw(st.sampled_from(["nbinom1", "nbinom2", "multinomial", "ranking", "ordinal", "poisson"]))
        eq["family"] = value
    else:
        value = {
            "thresholds": f"~ {col}", "scale": f"~ {col}", "zero_inflation": draw(st.sampled_from(["~ 1", f"~ {col}"])),
            "censoring": draw(st.sampled_from([{"left": col}, {"right": col}, {"upper": col}, {"left": col, "upper": other}])),
            "composite": [{"formula": f"~ {col}", "link": draw(st.sampled_from(["log", "logit", "identity"]))}],
            "choice": draw(st.sampled_from([{"layout": "per_alternative", "alternatives": col, "set": other},
                                            {"layout": "per_choice", "alternatives": "alt_new"},
                                            {"layout": "per_choice", "alternatives": col, "base": other}])),
        }[key]
        eq[key] = value
    case.actions.append(f"feature {key} = {value!r}")


def _same_type(draw: st.DrawFn, value: Any, case: Case) -> Any:
    """A plausible value of the same type: the mistakes that pass the schema and reach compile and fit."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int | float):
        return draw(st.sampled_from([0, -1, 1, 2, 0.5, 1e308, -1e308, float("nan"), float("inf"), 10**6, 100]))
    if isinstance(value, str):
        names = [str(v) for v in _values(case.tree) if isinstance(v, str) and len(str(v)) < 40]
        return draw(st.sampled_from(case.header + names + ["1", "free"] if case.header else names + ["1"]))
    if isinstance(value, list):
        edit = draw(st.sampled_from(["empty", "duplicate", "drop", "reverse", "extend"]))
        if edit == "empty" or not value:
            return []
        if edit == "duplicate":
            return value + [copy.deepcopy(value[0])]
        if edit == "drop":
            return value[1:]
        if edit == "reverse":
            return value[::-1]
        return value + [draw(st.sampled_from(case.header or ["x"]))]
    if isinstance(value, dict):
        if not value:
            return {draw(st.sampled_from(case.header or ["x"])): 1}
        drop = draw(st.sampled_from(sorted(value, key=str)))
        return {k: v for k, v in value.items() if k != drop}
    return value


cells = st.one_of(st.sampled_from(["", "NA", "nan", "inf", "-inf", "1e400", "x", "01", "1.0", "-1", "0", "TRUE"]),
                  st.text(max_size=8).filter(lambda s: "\x00" not in s), st.integers().map(str))


def mutate_data(draw: st.DrawFn, case: Case) -> None:
    """Apply one mutation to the data table."""
    kind = draw(st.sampled_from(["drop", "rename", "shuffle_columns", "cells", "blank_column", "cut_rows",
                                 "header_only", "shuffle_rows", "text_column", "cells"]))
    ncol = len(case.header)
    if kind in ("drop", "rename", "cells", "blank_column", "text_column") and ncol == 0:
        return
    text = case.spec_text()
    used = [i for i, name in enumerate(case.header) if name and name in text]
    j = draw(st.sampled_from(used) if used and draw(st.booleans()) else st.integers(0, ncol - 1)) if ncol else 0
    if kind == "drop":
        case.actions.append(f"data: drop column {case.header[j]!r}")
        del case.header[j]
        for row in case.rows:
            del row[j:j + 1]
    elif kind == "rename":
        new = draw(st.one_of(st.sampled_from(case.header), st.text(min_size=1, max_size=8).filter(lambda s: "\x00" not in s)))
        case.actions.append(f"data: rename column {case.header[j]!r} -> {new!r}")
        case.header[j] = new
    elif kind == "shuffle_columns":
        order = draw(st.permutations(range(ncol)))
        case.header = [case.header[i] for i in order]
        case.rows = [[row[i] if i < len(row) else "" for i in order] for row in case.rows]
        case.actions.append(f"data: columns reordered {order}")
    elif kind == "cells" and case.rows:
        for _ in range(draw(st.integers(1, 5))):
            i = draw(st.integers(0, len(case.rows) - 1))
            value = draw(cells)
            if j < len(case.rows[i]):
                case.rows[i][j] = value
            case.actions.append(f"data: row {i} column {case.header[j]!r} = {value!r}")
    elif kind == "blank_column":
        for row in case.rows:
            if j < len(row):
                row[j] = ""
        case.actions.append(f"data: column {case.header[j]!r} all missing")
    elif kind == "text_column":
        word = draw(st.sampled_from(["a", "x y", "inf", "-inf", "1e400", "01", "TRUE"]))
        for i, row in enumerate(case.rows):
            if j < len(row) and i % 3 == 0:
                row[j] = word
        case.actions.append(f"data: column {case.header[j]!r} every third cell = {word!r}")
    elif kind == "cut_rows":
        keep = draw(st.integers(1, 20))
        case.rows = case.rows[:keep]
        case.actions.append(f"data: keep first {keep} rows")
    elif kind == "header_only":
        case.rows = []
        case.actions.append("data: header only")
    elif kind == "shuffle_rows" and case.rows:
        step = draw(st.integers(2, 7))
        case.rows = case.rows[::step] + case.rows[1::step]
        case.actions.append(f"data: rows resampled with step {step}")


def make_fit_friendly(tree: Any, rows: list[list[str]], max_rows: int) -> list[list[str]]:
    """Small quadrature, few iterations and no point check, on the first rows: a fit that takes seconds."""
    est = tree.setdefault("estimation", {}) if isinstance(tree, dict) else None
    if isinstance(est, dict):
        est["max_iter"] = 15
        est.pop("check_points", None)
        integ = est.get("integration")
        if isinstance(integ, dict) and "points" in integ and integ.get("method") != "laplace":
            integ["points"] = 3
        elif integ is None:
            est["integration"] = {"points": 3}
    return rows[:max_rows]


@st.composite
def cases(draw: st.DrawFn, fit_every: int = 0, fit_rows: int = 150) -> tuple[Case, bool]:
    """A mutated (spec, data) pair, and whether to fit it too (about one case in fit_every).

    A case to fit is made small enough to fit in seconds and is mutated less.
    """
    fit = fit_every > 0 and draw(st.integers(0, fit_every - 1)) == fit_every // 2
    name = draw(st.sampled_from(SPEC_FILES))
    tree, data_path = shipped_spec(name)
    header, rows = shipped_table(data_path)
    case = Case(name, copy.deepcopy(tree), data_path, list(header), [list(r) for r in rows])
    if fit:
        case.rows = make_fit_friendly(case.tree, case.rows, fit_rows)
    n_spec = draw(st.sampled_from([0, 0, 1, 1, 2] if fit else [0, 1, 1, 1, 2]))
    n_data = draw(st.sampled_from([0, 0, 0, 1] if fit else [0, 0, 1, 1, 2]))
    if n_spec + n_data == 0 and not fit:
        n_data = 1
    for _ in range(n_spec):
        mutate_spec(draw, case)
    for _ in range(n_data):
        mutate_data(draw, case)
    return case, fit

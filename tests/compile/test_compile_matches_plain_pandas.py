"""The compile's numpy shortcuts give what plain pandas and formulaic give.

Compiling a small model was made cheaper by replacing pandas steps with
numpy (missing values, level codes, nesting and level-order checks, duplicate
times), by building intercept-and-numeric-column designs without formulaic,
and by a parameter table that keeps numpy columns and makes its DataFrame on
first use. Each test here recomputes one of those results the plain way, with
pandas or formulaic on the raw data, and compares: on every shipped spec, and
on small adversarial columns (numbers written as text, whitespace, inf/nan
words, non-ASCII ids, missing values of every dtype).
"""

from __future__ import annotations

import operator
import types
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlmrun.compile import design as compile_design
from mlmrun.compile import partable as partable_module
from mlmrun.compile import used_columns
from mlmrun.compile.data_checks import drop_missing
from mlmrun.compile.design import _AllowedOnly, numeric_design, parse_formula
from mlmrun.compile.level_order import _most_per_unit
from mlmrun.compile.residuals import _check_nesting, _check_times
from mlmrun.data.levels import LevelIndex, _number_label, build_levels, unit_ids
from mlmrun.data.load import apply_filters
from mlmrun.errors import DataError, SpecError
from mlmrun.pipeline import prepare
from mlmrun.spec.model import DataSpec, Level

ROOT = Path(__file__).resolve().parents[2]
SPECS = sorted((ROOT / "specs").glob("*.yaml"))


def _plain_unit_ids(values: pd.Series) -> tuple[np.ndarray, list[str]]:
    """Level codes the plain way: ids read as numbers when every one is a number, else as text; sorted."""
    numbers = pd.to_numeric(values.astype(str).str.strip(), errors="coerce")
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        numbers = values
    elif pd.api.types.is_bool_dtype(values) or (numbers.isna() & values.notna()).any():
        codes, uniques = pd.factorize(values.astype(str), sort=True)
        return codes, [str(u) for u in uniques]
    keys = numbers.to_numpy() if pd.api.types.is_integer_dtype(numbers) else numbers.to_numpy(dtype=float) + 0.0
    codes, uniques = pd.factorize(keys, sort=True)
    return codes, [_number_label(v) for v in uniques]


@pytest.mark.parametrize("path", SPECS, ids=[p.stem for p in SPECS])
def test_shipped_spec_compiles_to_what_pandas_and_formulaic_give(path: Path, monkeypatch) -> None:
    rows_seen: list[list[dict]] = []
    build = partable_module.ParTableBuilder.build

    def keep_rows(self):
        rows_seen.append([dict(r) for r in self.rows])
        return build(self)

    monkeypatch.setattr(partable_module.ParTableBuilder, "build", keep_rows)
    compile_design.PARSED.clear()
    prepared = prepare(path)
    spec, model = prepared.spec, prepared.model

    raw = pd.read_csv(path.parent / spec.data.path)
    if not spec.data.filter and spec.data.stack is None:
        pd.testing.assert_frame_equal(prepared.data.frame, raw)
    frame = prepared.data.frame
    cols = used_columns(spec)
    if all(c in frame.columns for c in cols):
        complete = frame[list(cols)].notna().all(axis=1)
        assert model.n_dropped_missing == int((~complete).sum())
        kept = frame.loc[complete].reset_index(drop=True)
        assert model.n == len(kept) or any(eq.choice is not None for eq in spec.responses)
        plain_families = all(eq.family not in ("ordinal",) and eq.choice is None for eq in spec.responses)
        if plain_families:
            rhs = parse_formula(spec.fixed).rhs
            mm = _AllowedOnly(kept).get_model_matrix(rhs, na_action="raise")
            X = np.asarray(mm, dtype=float)
            assert model.x_names == tuple(str(c) for c in mm.columns)
            np.testing.assert_array_equal(model.X, X)
            assert model.X.flags["F_CONTIGUOUS"] == X.flags["F_CONTIGUOUS"]
        for lv, index in zip(spec.levels, model.levels, strict=True):
            if lv.within_parent:
                continue
            codes, labels = _plain_unit_ids(kept[lv.id])
            np.testing.assert_array_equal(index.codes, codes)
            assert [str(v) for v in index.labels] == labels

    table = model.partable
    rows = rows_seen[-1]
    plain = pd.DataFrame(rows, columns=partable_module.COLUMNS)
    assert list(table.frame.columns) == partable_module.COLUMNS
    assert list(table.frame.dtypes) == list(plain.assign(free=plain["free"].astype(int)).dtypes)
    for col in ("name", "block", "lhs", "op", "rhs", "level", "equation", "transform", "group", "origin",
                "lower", "upper"):
        pd.testing.assert_series_equal(table.frame[col], plain[col])
    free = table.frame["free"].to_numpy()
    np.testing.assert_array_equal(free > 0, plain["free"].to_numpy() > 0)
    numbers = [k for k in free if k > 0]
    assert sorted(set(numbers)) == list(range(1, table.n_free + 1))
    assert [k for i, k in enumerate(numbers) if k not in numbers[:i]] == list(range(1, table.n_free + 1))
    for col in partable_module.COLUMNS:
        np.testing.assert_array_equal(table.column(col), table.frame[col].to_numpy())
    with pytest.raises(ValueError):
        table.column("free")[0] = 5


TRICKY = ["1", "01", " 1", "1.0", "1e2", "inf", "-inf", "Infinity", "nan", "NaN", "", " ", "a", "B", "b", "é",
          "Z", "10", "2", "\u0663", "1_000", "0x10", "+1", "-0", "0.0", "TRUE", "\u00d7", "a b", "z\u00e9", "\u00e9a"]
NUMERIC_TEXT = ["1", "01", " 1", "1.0", "1e2", "10", "2", "+1", "-0", "0.0", "3.5", "inf", "-inf", "7 "]


def _random_columns(seed: int) -> list[pd.Series]:
    rng = np.random.default_rng(seed)
    out = []
    for pool in (TRICKY, NUMERIC_TEXT, ["x", "y", "Y", "x "], ["5", "6", "05"], [str(i) for i in range(40)]):
        for size in (1, 2, 7, 60):
            picked = rng.choice(pool, size=size)
            out.append(pd.Series(picked, dtype="str"))
    out.append(pd.Series(rng.integers(-3, 3, size=50)))
    out.append(pd.Series(rng.normal(size=20).round(1)))
    out.append(pd.Series(["a", None, "b"], dtype="str"))
    out.append(pd.Series(["1", None, "2"], dtype="str"))
    return out


@pytest.mark.parametrize("seed", range(8))
def test_level_codes_equal_plain_pandas_factorize(seed: int) -> None:
    for values in _random_columns(seed):
        if values.isna().any():
            continue  # build_levels runs after missing ids are dropped
        codes, labels = unit_ids(values)
        want_codes, want_labels = _plain_unit_ids(values)
        np.testing.assert_array_equal(codes, want_codes)
        assert [str(v) for v in labels] == want_labels
        assert codes.dtype == np.intp


@pytest.mark.parametrize("seed", range(6))
def test_units_per_unit_equal_pandas_groupby(seed: int) -> None:
    rng = np.random.default_rng(seed)
    for n in (1, 5, 80):
        frame = pd.DataFrame({
            "i": rng.integers(0, 6, size=n),
            "s": pd.Series(rng.choice(["a", "b", "c", "01", "1"], size=n), dtype="str"),
            "f": rng.integers(0, 3, size=n).astype(float),
            "t": pd.Series(rng.choice(["x", "y", "1"], size=n), dtype="str"),
        })
        for unit in frame.columns:
            for other in frame.columns:
                pairs = pd.DataFrame({"u": frame[unit].astype(str), "o": frame[other].astype(str)})
                want = int(pairs.groupby("u", sort=False)["o"].nunique().max())
                assert _most_per_unit(frame, unit, other) == want


def test_nesting_parents_and_the_first_unit_not_nested_match_drop_duplicates() -> None:
    rng = np.random.default_rng(3)
    levels = [Level(name="child", id="c"), Level(name="parent", id="p")]
    for trial in range(30):
        n_parent = int(rng.integers(1, 5))
        child = rng.integers(0, 12, size=40)
        parent = child % n_parent
        if trial % 2:
            flip = rng.integers(0, 40, size=2)
            parent[flip] = (parent[flip] + 1) % max(n_parent, 2)
        frame = pd.DataFrame({"c": child, "p": parent})
        pairs = pd.DataFrame({"unit": child, "parent": parent}).drop_duplicates()
        dup = pairs["unit"].duplicated(keep=False)
        if dup.any():
            with pytest.raises(DataError, match=f"c='{pairs.loc[dup, 'unit'].iloc[0]}' occurs in several"):
                build_levels(frame, levels)
            continue
        child_index, parent_index = build_levels(frame, levels)
        want = pd.Series(pairs["parent"].to_numpy(), index=pairs["unit"].to_numpy()).sort_index()
        np.testing.assert_array_equal(child_index.labels[np.arange(child_index.n_units)].astype(int), want.index)
        np.testing.assert_array_equal(parent_index.labels[child_index.parent].astype(int), want.to_numpy())


def test_duplicate_times_and_split_clusters_are_reported_as_pandas_finds_them() -> None:
    rng = np.random.default_rng(5)
    res = types.SimpleNamespace(time="time")
    for _ in range(40):
        n = 30
        cluster = rng.integers(0, 4, size=n).astype(np.intp)
        t = rng.integers(0, 12, size=n).astype(float)
        level = LevelIndex("mare", "mare", cluster, 4, np.array(["m0", "m1", "m2", "m3"], dtype=object), False, None)
        frame = pd.DataFrame({"c": cluster, "t": t})
        dup = frame.duplicated(keep=False)
        if dup.any():
            first = frame[dup].iloc[0]
            with pytest.raises(DataError) as err:
                _check_times(t, cluster, res, 0, level)
            assert f"has the value '{int(first['t'])}' twice within mare 'm{int(first['c'])}'" in str(err.value)
        else:
            _check_times(t, cluster, res, 0, level)
        other_codes = rng.integers(0, 3, size=n).astype(np.intp)
        other = LevelIndex("day", "day", other_codes, 3, np.array(["d0", "d1", "d2"], dtype=object), True, None)
        spec = types.SimpleNamespace(random=[types.SimpleNamespace(level="day")], latent=[])
        pairs = pd.DataFrame({"c": cluster, "u": other_codes}).drop_duplicates()
        split = pairs["c"].duplicated(keep=False)
        if split.any():
            with pytest.raises(SpecError, match=f"changes within mare 'm{int(pairs.loc[split, 'c'].iloc[0])}'"):
                _check_nesting(spec, [level, other], cluster, level)
        else:
            _check_nesting(spec, [level, other], cluster, level)


def test_rows_dropped_for_missing_values_equal_pandas_notna_for_every_dtype() -> None:
    frame = pd.DataFrame({
        "f": [1.0, np.nan, 3.0, 4.0, np.inf, 6.0],
        "i": [1, 2, 3, 4, 5, 6],
        "s": pd.Series(["a", "b", None, "d", "e", "f"], dtype="str"),
        "o": pd.Series([1, "x", 3, None, 5, 6], dtype=object),
        "n": pd.array([1, 2, 3, 4, None, 6], dtype="Int64"),
        "c": pd.Categorical(["u", "v", "u", "v", "u", None]),
        "d": pd.to_datetime(["2020-01-01", None, "2020-01-03", "2020-01-04", "2020-01-05", "2020-01-06"]),
        "b": [True, False, True, True, False, True],
        "ok": [1.5, 2.5, 3.5, 4.5, 5.5, 6.5],
    })
    for cols in (["f"], ["i", "b"], ["s", "o"], ["n", "c", "d"], list(frame.columns), ["ok", "i"]):
        where = {c: "fixed" for c in cols}
        kept, n_dropped = drop_missing(frame, where)
        complete = frame[cols].notna().all(axis=1)
        assert n_dropped == int((~complete).sum())
        pd.testing.assert_frame_equal(kept, frame.loc[complete].reset_index(drop=True))
    shifted = frame.set_index(pd.Index(np.arange(10, 16)))
    kept, n_dropped = drop_missing(shifted, {"ok": "fixed"})
    assert n_dropped == 0 and list(kept.index) == list(range(6))


@pytest.mark.parametrize("formula", ["y ~ a", "y ~ a + b + c", "y ~ 0 + a + b", "y ~ 1", "y ~ c + a - 1",
                                     "y ~ b + flag", "y ~ a + gap", "y ~ a + f32", "y ~ a + C(k)", "y ~ a:b",
                                     "y ~ log(b)", "y ~ 0 + big"])
def test_numeric_designs_equal_formulaic(formula: str) -> None:
    rng = np.random.default_rng(11)
    n = 25
    frame = pd.DataFrame({
        "y": rng.normal(size=n), "a": rng.normal(size=n), "b": rng.uniform(1, 2, size=n),
        "c": rng.integers(-5, 5, size=n), "flag": rng.integers(0, 2, size=n).astype(bool),
        "gap": np.where(np.arange(n) == 3, np.nan, 1.0), "f32": rng.normal(size=n).astype(np.float32),
        "k": rng.integers(0, 3, size=n), "big": rng.integers(2**40, 2**41, size=n),
    })
    rhs = parse_formula(formula).rhs
    try:
        mm = _AllowedOnly(frame).get_model_matrix(rhs, na_action="raise")
    except Exception:
        assert numeric_design(rhs, frame) is None  # formulaic refuses it: the numpy path must not build it
        return
    built = numeric_design(rhs, frame)
    if built is None:
        assert any(t in formula for t in ("flag", "gap", "C(", ":", "log("))
        return
    X, names = built
    want = np.asarray(mm, dtype=float)
    assert names == tuple(str(c) for c in mm.columns)
    np.testing.assert_array_equal(X, want)
    assert X.flags["F_CONTIGUOUS"] == want.flags["F_CONTIGUOUS"]


def test_row_filters_keep_the_rows_pandas_comparisons_keep() -> None:
    frame = pd.DataFrame({"f": [1.0, np.nan, 3.0, 4.5, -np.inf, 4.0], "i": [1, 5, 3, 4, 0, 4],
                          "s": pd.Series(["a", None, "b", "4", "a", "c"], dtype="str")})
    ops = {"==": operator.eq, "!=": operator.ne, ">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le}
    for column in frame.columns:
        for op, compare in ops.items():
            for value in (4, 3.0, "a", 0, 2**60):
                spec = DataSpec(path="x.csv", filter=[{"column": column, "op": op, "value": value}])
                try:
                    want = compare(frame[column], value).fillna(False).astype(bool)
                except TypeError:
                    with pytest.raises(DataError, match="cannot compare"):
                        apply_filters(frame, spec)
                    continue
                if not want.any():
                    with pytest.raises(DataError, match="no row satisfies"):
                        apply_filters(frame, spec)
                    continue
                pd.testing.assert_frame_equal(apply_filters(frame, spec), frame.loc[want].reset_index(drop=True))

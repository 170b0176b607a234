"""Partitions of one fit: which worker reads which Parquet files, the data-wide schema, and the checks.

The data are a partitioned Parquet folder (mlmrun/data/dataset.py). Each
worker reads its files once (`Partition`, kept in the worker's memory for the
whole fit), reports small facts about them (the top-level units of each file,
the values of categorical covariates) and, once the client has put those
together (`Schema`), compiles its rows into a CompiledModel of its own. The
likelihood of a nested model is a sum over top-level units, so partitions
whose units are disjoint add up to the likelihood of the whole data; a unit
in two files is refused (`check_disjoint`), and so is a partition whose
parameter table differs from the others (`check_tables`): every design column
must exist in every partition, which the schema's categories guarantee for
categorical covariates.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from mlmrun.compile import compile_model
from mlmrun.compile.design import formula_variables, parse_formula
from mlmrun.compile.model import CompiledModel
from mlmrun.data.dataset import DatasetFile, combined_digest, read_file
from mlmrun.data.levels import unit_ids
from mlmrun.data.load import LoadedData, apply_filters
from mlmrun.data.reshape import stack_long
from mlmrun.data.shown import excerpt, shown_path
from mlmrun.errors import DataError, SpecError
from mlmrun.spec.model import Spec

TABLE_COLUMNS = ("name", "block", "free", "value", "lower", "upper", "transform")
"""Parameter-table columns that must agree between partitions (`value` only where fixed: the starting values
of free residual SDs are the response's SD, which the client recomputes data-wide, `residual_starts`)."""


def top_level_column(spec: Spec) -> tuple[str, str]:
    """(name, id column) of the top nested level that carries latent variables: the units the likelihood sums over."""
    used = {b.level for b in spec.random} | {lat.level for lat in spec.latent}
    nested = [lv for lv in spec.levels if not lv.crossed and lv.name in used]
    if not nested:
        raise SpecError.at(("estimation", "distributed"), "a distributed fit sums the likelihood over top-level "
                           "units, and this model has no latent variables at a nested level; fit it in one process "
                           "(drop `distributed`)")
    return nested[-1].name, nested[-1].id


def categorical_columns(spec: Spec) -> set[str]:
    """Columns of the fixed part written inside C(...): categories whatever their type."""
    return set(re.findall(r"\bC\(\s*`?([A-Za-z_][A-Za-z0-9_.]*)`?\s*[,)]", spec.fixed))


def fixed_columns(spec: Spec) -> set[str]:
    """The data columns the fixed part's right-hand side reads."""
    return formula_variables(parse_formula(spec.fixed))[1]


def _is_category(series: pd.Series) -> bool:
    return not (pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series))


@dataclass
class FileFacts:
    """What a worker reports about one file: its name, rows and top-level units."""

    name: str
    rows: int
    units: np.ndarray


@dataclass
class Schema:
    """Data-wide facts every partition compiles with: the categories of each categorical covariate."""

    categories: dict[str, list] = field(default_factory=dict)


def _sorted_values(values: set) -> list:
    try:
        return sorted(values)
    except TypeError:
        return sorted(values, key=str)


def merge_schema(spec: Spec, reports: list[dict[str, Any]]) -> Schema:
    """The categories of every categorical covariate: the sorted union of what every partition holds."""
    declared = categorical_columns(spec)
    kinds: dict[str, bool] = {}
    for rep in reports:
        for col, is_cat in rep["kinds"].items():
            kinds[col] = kinds.get(col, False) or is_cat
    cats = {}
    for col in sorted(c for c, is_cat in kinds.items() if is_cat or c in declared):
        union: set = set()
        for rep in reports:
            union |= set(rep["values"].get(col, ()))
        cats[col] = _sorted_values(union)
    return Schema(cats)


def check_disjoint(facts: list[FileFacts], level: str, column: str) -> None:
    """Refuse a top-level unit whose rows lie in two files (its likelihood would be split in two)."""
    seen: dict[str, str] = {}
    for f in facts:
        for unit in f.units.tolist():
            other = seen.setdefault(unit, f.name)
            if other != f.name:
                raise DataError(f"data.path: unit {column}={excerpt(unit)} of level '{level}' has rows in two "
                                f"partition files ({other} and {f.name}); the likelihood is a sum over whole "
                                f"'{level}' units, so write all rows of a unit into one file (partition by {column})")


def check_tables(tables: list[pd.DataFrame], names: list[str]) -> None:
    """Refuse partitions whose parameter tables differ (a category or column absent from one of them)."""
    first = tables[0]
    for table, name in zip(tables[1:], names[1:], strict=True):
        if len(table) == len(first) and all(_same(table, first, c) for c in TABLE_COLUMNS):
            continue
        a, b = list(first["name"]), list(table["name"])
        diff = sorted(set(a) ^ set(b)) or [x for x, y in zip(a, b, strict=False) if x != y] or a[len(b):] or b[len(a):]
        what = f"parameter {excerpt(diff[0])}" if diff else "the starting values"
        raise DataError(f"data.path: partition {name} compiles to another parameter table than {names[0]} "
                        f"({what} differs): the model depends on data-wide information a partition lacks "
                        "(e.g. the categories of a column used outside C() in the fixed part); fit it in one "
                        "process, or make every partition hold every category")


def _same(a: pd.DataFrame, b: pd.DataFrame, column: str) -> bool:
    if column != "value":
        return bool((a[column].to_numpy() == b[column].to_numpy()).all())
    fixed = (a["free"].to_numpy() == 0) & (b["free"].to_numpy() == 0)
    return bool((a["value"].to_numpy()[fixed] == b["value"].to_numpy()[fixed]).all())


def merge_moments(parts: list[tuple[int, float, float]]) -> tuple[int, float, float]:
    """Count, mean and sum of squared deviations of several groups combined (Chan et al.'s pairwise update)."""
    n, mean, m2 = 0, 0.0, 0.0
    for nb, mb, m2b in parts:
        if nb == 0:
            continue
        delta = mb - mean
        total = n + nb
        mean += delta * nb / total
        m2 += m2b + delta * delta * n * nb / total
        n = total
    return n, mean, m2


def residual_starts(model: CompiledModel, moments: list[list[tuple[int, float, float]]]) -> CompiledModel:
    """The model with the starting value of each equation's (free, single) residual SD set to its response's
    SD over the whole data, as compile starts it, from the partitions' per-equation moments (the only
    data-dependent start the supported models have; check_tables compares the fixed values)."""
    from dataclasses import replace

    from mlmrun.compile.partable import ParTable

    frame = model.partable.frame.copy()
    for e, eq in enumerate(model.equations):
        rows = np.flatnonzero((frame["block"] == "residual").to_numpy() & (frame["equation"] == eq.name).to_numpy()
                              & (frame["free"] > 0).to_numpy())
        if len(rows) != 1:
            continue
        n, _, m2 = merge_moments([m[e] for m in moments])
        frame.loc[int(rows[0]), "value"] = (float(np.sqrt(m2 / n)) if n else 0.0) or 1.0
    return replace(model, partable=ParTable(frame))


@contextlib.contextmanager
def whole_data_checks_off() -> Iterator[None]:
    """Switch off, while compiling a partition, compile_model's two checks of facts about the whole data.

    `check_level_sizes` (a level with random effects needs two units) and `check_level_order` (how the
    levels' units nest) would judge one partition as if it were all the data: a worker holding one region
    would be refused. The client makes both on the whole data instead (fit.open_fit: unit counts summed over
    partitions, nesting from every partition's distinct id combinations, which is all the checks read)."""
    import mlmrun.compile as compile_module

    saved = compile_module.check_level_sizes, compile_module.check_level_order
    compile_module.check_level_sizes = compile_module.check_level_order = _skip  # type: ignore[assignment]
    try:
        yield
    finally:
        compile_module.check_level_sizes, compile_module.check_level_order = saved


def _skip(*args: Any, **kwargs: Any) -> None:
    return None


def response_moments(model: CompiledModel) -> list[tuple[int, float, float]]:
    """Per equation: rows, mean and sum of squared deviations of its response (for `residual_starts`)."""
    out = []
    for eq in model.equations:
        y = model.y[np.asarray(eq.rows)]
        mean = float(y.mean()) if len(y) else 0.0
        out.append((len(y), mean, float(np.sum((y - mean) ** 2))))
    return out


class Partition:
    """One worker's rows: read once, compiled once, kept in the worker's memory for the whole fit."""

    def __init__(self, spec: Spec, files: list[DatasetFile]) -> None:
        self.spec = spec
        self.names = [str(f.path.name) for f in files]
        level, column = top_level_column(spec)
        frames, self.digests, self.facts = [], [], []
        for item in files:
            frame, digest = read_file(item)
            if column not in frame.columns:
                raise DataError(f"data.path: {shown_path(item.path)} has no column {excerpt(column)} (the id of "
                                f"level '{level}'); every partition file needs the columns the spec uses")
            units = unit_ids(frame[column].dropna())[1].astype(str)
            self.facts.append(FileFacts(shown_path(item.path), len(frame), units))
            frames.append(frame)
            self.digests.append(digest)
        frame = pd.concat(frames, ignore_index=True)
        self.n_rows_read = len(frame)
        frame = apply_filters(frame, spec.data)
        if spec.data.stack is not None:
            frame = stack_long(frame, spec.data.stack)
        self.frame: pd.DataFrame | None = frame
        self.model: CompiledModel | None = None
        self.engine: Any = None

    def report(self) -> dict[str, Any]:
        """File facts, and the kind and values of every fixed-part column (for the data-wide schema)."""
        assert self.frame is not None
        kinds, values = {}, {}
        declared = categorical_columns(self.spec)
        for col in fixed_columns(self.spec):
            if col not in self.frame.columns:
                continue
            s = self.frame[col]
            kinds[col] = _is_category(s)
            if kinds[col] or col in declared:
                values[col] = [v.item() if hasattr(v, "item") else v for v in pd.unique(s.dropna())]
        nested = [lv.id for lv in self.spec.levels if not lv.crossed and lv.id in self.frame.columns]
        ids = self.frame[list(dict.fromkeys(nested))].drop_duplicates()
        return {"facts": self.facts, "kinds": kinds, "values": values, "digests": self.digests, "ids": ids}

    def compile(self, schema: Schema) -> dict[str, Any]:
        """Compile the rows with the data-wide categories; returns the parameter table and level facts."""
        assert self.frame is not None
        frame, self.frame = self.frame, None  # cast in place: the compiled arrays are all a fit needs after this
        for col, cats in schema.categories.items():
            if col in frame.columns:
                frame[col] = pd.Categorical(frame[col], categories=cats)
        data = LoadedData(frame, combined_digest(self.digests), self.n_rows_read, ",".join(self.names))
        with whole_data_checks_off():
            self.model = compile_model(self.spec, data)
        m = self.model
        levels = [{"sizes": lv.sizes(), "labels": lv.labels, "parent": lv.parent} for lv in m.levels]
        return {"table": m.partable.frame[list(TABLE_COLUMNS)].copy(), "n": m.n, "n_rows_read": m.n_rows_read,
                "n_dropped": m.n_dropped_missing, "levels": levels, "moments": response_moments(m)}


    def sample(self, schema: Schema, units: int, rows: int) -> pd.DataFrame:
        """The rows of the first `units` top-level units (at most `rows` of them), categories cast as in
        `compile` (the client compiles its model, for the parameter table and structure, from these)."""
        assert self.frame is not None
        _, column = top_level_column(self.spec)
        ids = self.frame[column]
        frame = self.frame.loc[ids.isin(pd.unique(ids.dropna())[:units])].head(rows).reset_index(drop=True)
        for col, cats in schema.categories.items():
            if col in frame.columns:
                frame[col] = pd.Categorical(frame[col], categories=cats)
        return frame

    def build(self, kind: str) -> None:
        """The engine of the fit's route on the compiled rows (distributed/objective.py's worker side)."""
        from mlmrun.distributed.objective import GaussianPart, LaplacePart, QuadraturePart

        assert self.model is not None
        parts = {"gaussian": GaussianPart, "laplace": LaplacePart, "quadrature": QuadraturePart}
        self.engine = parts[kind](self.model)

    def run(self, method: str, *args: Any) -> Any:
        """The engine's `method(*args)` (one actor call per partition and evaluation)."""
        return getattr(self.engine, method)(*args)

"""The pipeline as public steps: load_spec -> load_data -> compile_model -> estimate."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mlmrun.compile import CompiledModel, compile_model
from mlmrun.compile.spec_checks import check_spec
from mlmrun.compile.start_from import apply_start_from
from mlmrun.data.load import LoadedData, load_data
from mlmrun.data.stata import code_columns
from mlmrun.errors import DataError, MlmrunError, SpecError
from mlmrun.likelihood.preflight import preflight
from mlmrun.spec.loader import Loc, load_spec, locate
from mlmrun.spec.model import Spec


@dataclass(frozen=True)
class Prepared:
    """A spec read, its data loaded and the model compiled: everything before estimation."""

    path: Path
    spec: Spec
    marks: dict[Loc, tuple[int, int]]
    data: LoadedData
    model: CompiledModel


def prepare(path: str | Path, allow_outside_data: bool = False) -> Prepared:
    """Load, validate and compile a spec file and run fit's pre-flight checks, without fitting.

    Errors carry FILE:LINE:COL where the spec is at fault: the key an error
    names in its `loc`, else the key its message starts with. Files a spec
    names must lie inside its folder unless `allow_outside_data` (for trusted specs).
    """
    path = Path(path)
    spec, marks = load_spec(path)
    try:
        check_spec(spec)
    except SpecError as exc:
        raise _located(exc, marks, path) from None
    try:
        data = load_data(spec.data, path.parent, allow_outside_data, code_columns(spec))
    except DataError as exc:
        located = exc.loc or str(exc).startswith("data.")  # e.g. `data.filter.0: ...` points at that key
        where = _where(marks, path, exc) if located else locate(marks, str(path), "data")
        raise DataError(f"{where}: {exc}", exc.loc) from None
    try:
        model = apply_start_from(compile_model(spec, data), path.parent, allow_outside_data)
        preflight(model)  # every check fit makes before optimising, so a spec that validates fits
    except (SpecError, DataError) as exc:
        raise _located(exc, marks, path) from None
    return Prepared(path, spec, marks, data, model)


def _located(exc: MlmrunError, marks: dict[Loc, tuple[int, int]], path: Path) -> MlmrunError:
    """The same error with FILE:LINE:COL in front of every problem."""
    if isinstance(exc, SpecError):
        lines = [f"{_where(marks, path, part)}: {part}" for part in exc.parts]
        located = type(exc)(f"{path}: {exc}", lines, exc.loc)
        located.parts = exc.parts
        return located
    return DataError(f"{_where(marks, path, exc)}: {exc}", exc.loc)


def _where(marks: dict[Loc, tuple[int, int]], path: Path, exc: MlmrunError) -> str:
    """FILE:LINE:COL of an error: its `loc`, else (best effort) the spec key its message starts with."""
    if exc.loc:
        return locate(marks, str(path), *exc.loc)
    head = str(exc).split(":", 1)[0].split(" ", 1)[0]
    loc: list[str | int] = [int(p) if p.isdigit() else p for p in head.split(".")] if head else []
    if not loc or loc[0] not in {k[0] for k in marks if k}:
        return locate(marks, str(path))
    return locate(marks, str(path), *loc)

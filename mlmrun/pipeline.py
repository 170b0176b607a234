"""The pipeline as public steps: load_spec -> load_data -> compile_model -> estimate."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mlmrun.compile import CompiledModel, compile_model
from mlmrun.compile.start_from import apply_start_from
from mlmrun.data.load import LoadedData, load_data
from mlmrun.errors import DataError, SpecError
from mlmrun.likelihood.plan import integration_plan
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
    """Load, validate and compile a spec file; errors carry FILE:LINE:COL where the spec is at fault.

    Files a spec names must lie inside its folder unless `allow_outside_data` (for trusted specs).
    """
    path = Path(path)
    spec, marks = load_spec(path)
    try:
        data = load_data(spec.data, path.parent, allow_outside_data)
    except DataError as exc:
        raise DataError(f"{locate(marks, str(path), 'data')}: {exc}") from None
    try:
        model = apply_start_from(compile_model(spec, data), path.parent, allow_outside_data)
        if not (model.is_linear_gaussian and spec.estimation.exact):
            integration_plan(model)  # quadrature settings are checked before fitting (mlmrun validate)
    except SpecError as exc:
        raise type(exc)(f"{path}: {exc}", [f"{_where(marks, path, str(exc))}: {exc}"]) from None
    except DataError as exc:
        raise DataError(f"{_where(marks, path, str(exc))}: {exc}") from None
    return Prepared(path, spec, marks, data, model)


def _where(marks: dict[Loc, tuple[int, int]], path: Path, message: str) -> str:
    """Best-effort location for a compile error: the spec key its message starts with (e.g. 'responses.0')."""
    head = message.split(":", 1)[0].split(" ", 1)[0]
    loc: list[str | int] = [int(p) if p.isdigit() else p for p in head.split(".")] if head else []
    if not loc or loc[0] not in {k[0] for k in marks if k}:
        return locate(marks, str(path))
    return locate(marks, str(path), *loc)

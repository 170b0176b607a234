"""`estimation.start_from`: starting values from a previous results.json (gllamm's from()).

The file (relative to the spec) is read for its "parameters" list of
{name, estimate}; every free partable row whose name appears takes that
estimate as its starting value. Rows the file does not name keep their
defaults, derived rows of the file (var(...), corr(...)) that are not
parameters here are ignored, so a results file of a smaller model can seed
a larger one. The file obeys the rules of data files (data/files.py): inside
the spec's folder, not hidden, a regular file, here with the extension .json;
messages never quote its content.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

from mlmrun.compile.model import CompiledModel
from mlmrun.data.files import read_regular_file, spec_file
from mlmrun.data.shown import shown_path
from mlmrun.errors import DataError, SpecError

KEY = "estimation.start_from"


def _estimates(raw: bytes, shown: str) -> dict[str, float]:
    """name -> estimate from a results.json's bytes; messages never quote the file's content."""
    expected = f"{KEY}: {shown} is not an mlmrun results.json with a 'parameters' list of {{name, estimate}}"
    try:
        document = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise SpecError(f"{expected} (it is not UTF-8 text)") from None
    except json.JSONDecodeError as exc:
        raise SpecError(f"{expected} (invalid JSON at line {exc.lineno}, column {exc.colno})") from None
    except RecursionError:
        raise SpecError(f"{expected} (nested too deeply)") from None
    entries = document.get("parameters") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise SpecError(f"{expected} (no 'parameters' list)")
    estimates: dict[str, float] = {}
    for j, entry in enumerate(entries):
        value = entry.get("estimate") if isinstance(entry, dict) else None
        if value is None:
            continue
        if not isinstance(entry.get("name"), str) or isinstance(value, bool) or not isinstance(value, int | float):
            raise SpecError(f"{expected} (entry {j} of 'parameters' needs a text 'name' and a numeric 'estimate')")
        try:
            estimates[entry["name"]] = float(value)
        except OverflowError:
            continue
    return estimates


def apply_start_from(model: CompiledModel, spec_dir: Path, allow_outside: bool = False) -> CompiledModel:
    """The model with starting values taken from `estimation.start_from` (unchanged when it is not set)."""
    source = model.spec.estimation.start_from
    if not source:
        return model
    try:
        path = spec_file(Path(spec_dir), source, KEY, (".json",), allow_outside)
        raw = read_regular_file(path, KEY, "results file")
    except DataError as exc:
        raise SpecError(str(exc)) from None
    estimates = _estimates(raw, shown_path(path))
    pt = model.partable
    values = pt.start_values
    free = pt.frame["free"].to_numpy()
    used = 0
    for i, name in enumerate(pt.names):
        if free[i] and name in estimates and math.isfinite(estimates[name]):
            values[i] = estimates[name]
            used += 1
    if not used:
        raise SpecError(f"{KEY}: {shown_path(path)} names none of this model's free parameters "
                        f"({', '.join(pt.free_names())})")
    return replace(model, partable=pt.with_values(values))

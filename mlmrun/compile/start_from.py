"""`estimation.start_from`: starting values from a previous results.json (gllamm's from()).

The file (relative to the spec) is read for its "parameters" list of
{name, estimate}; every free partable row whose name appears takes that
estimate as its starting value. Rows the file does not name keep their
defaults, derived rows of the file (var(...), corr(...)) that are not
parameters here are ignored, so a results file of a smaller model can seed
a larger one.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

from mlmrun.compile.model import CompiledModel
from mlmrun.data.load import spec_relative_path
from mlmrun.errors import DataError, SpecError


def apply_start_from(model: CompiledModel, spec_dir: Path, allow_outside: bool = False) -> CompiledModel:
    """The model with starting values taken from `estimation.start_from` (unchanged when it is not set)."""
    source = model.spec.estimation.start_from
    if not source:
        return model
    try:
        path = spec_relative_path(Path(spec_dir), source, "estimation.start_from", allow_outside)
    except DataError as exc:
        raise SpecError(str(exc)) from None
    try:
        document = json.loads(path.read_text())
        entries = document["parameters"]
        estimates = {str(e["name"]): float(e["estimate"]) for e in entries if e.get("estimate") is not None}
    except FileNotFoundError:
        raise SpecError(f"estimation.start_from: no file {path} (the path is relative to the spec file)") from None
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise SpecError(f"estimation.start_from: {path} is not an mlmrun results.json with a 'parameters' list "
                        f"of {{name, estimate}} ({exc})") from None
    pt = model.partable
    values = pt.start_values
    free = pt.frame["free"].to_numpy()
    used = 0
    for i, name in enumerate(pt.names):
        if free[i] and name in estimates and math.isfinite(estimates[name]):
            values[i] = estimates[name]
            used += 1
    if not used:
        raise SpecError(f"estimation.start_from: {path} names none of this model's free parameters "
                        f"({', '.join(pt.free_names())})")
    return replace(model, partable=pt.with_values(values))

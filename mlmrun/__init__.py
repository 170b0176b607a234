"""mlmrun: generalized linear latent and mixed models (GLLAMM) from declarative YAML specs.

The pipeline, each step public and testable on its own:
    spec  = load_spec(path)            -> Spec (pydantic), YAML line map
    data  = load_data(spec.data, dir)  -> LoadedData (filtered, stacked)
    model = compile_model(spec, data)  -> CompiledModel (frozen) with its ParTable
    fit   = estimate(model)            -> FitResult

and for notebooks `mlmrun.fit(spec_or_dict, data=None)` -> Fit (summary, params, ranef, predict, to_json).

The steps are imported on first use, so that `import mlmrun` (and the start of the
`mlmrun` command, which guards its own heavy imports against Ctrl-C) stays cheap.
"""

import importlib
import os
import sys
import types
from typing import TYPE_CHECKING, Any

# Many small matrix operations per likelihood evaluation: threaded BLAS only adds overhead
# (measured: 1M-row LMM 3.8-5.4 s on one thread vs 6.7 s on two). An explicit setting wins.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

__version__ = "0.1.0"
__all__ = ["Fit", "FitResult", "compile_model", "estimate", "fit", "load_data", "load_fitted", "load_spec", "prepare",
           "__version__"]

_EXPORTS = {"FitResult": "mlmrun.results", "compile_model": "mlmrun.compile", "estimate": "mlmrun.estimate",
            "load_data": "mlmrun.data", "load_spec": "mlmrun.spec", "prepare": "mlmrun.pipeline",
            "fit": "mlmrun.api", "Fit": "mlmrun.api", "load_fitted": "mlmrun.postest.fitted"}

if TYPE_CHECKING:
    from mlmrun.api import Fit, fit
    from mlmrun.compile import compile_model
    from mlmrun.data import load_data
    from mlmrun.estimate import estimate
    from mlmrun.pipeline import prepare
    from mlmrun.postest.fitted import load_fitted
    from mlmrun.results import FitResult
    from mlmrun.spec import load_spec


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'mlmrun' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


class _Package(types.ModuleType):
    """Keeps `mlmrun.estimate` the function when the submodule of the same name is imported."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _EXPORTS and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package

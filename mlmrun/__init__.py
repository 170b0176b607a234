"""mlmrun: generalized linear latent and mixed models (GLLAMM) from declarative YAML specs.

The pipeline, each step public and testable on its own:
    spec  = load_spec(path)            -> Spec (pydantic), YAML line map
    data  = load_data(spec.data, dir)  -> LoadedData (filtered, stacked)
    model = compile_model(spec, data)  -> CompiledModel (frozen) with its ParTable
    fit   = estimate(model)            -> FitResult
"""

from mlmrun.compile import compile_model
from mlmrun.data import load_data
from mlmrun.estimate import estimate
from mlmrun.pipeline import prepare
from mlmrun.results import FitResult
from mlmrun.spec import load_spec

__version__ = "0.1.0"
__all__ = ["FitResult", "compile_model", "estimate", "load_data", "load_spec", "prepare", "__version__"]

"""A 2000 persons x 50 items crossed logistic model (100,000 rows, 2,050 random effects) in bounded memory.

A dense H or H^-1 would take 2050^2 doubles (34 MB) and a list of the unit-pair
combinations a blocked elimination of the fully crossed design enumerates
2000 x 50^2 entries per index array (hundreds of MB); the engine's Schur
complement keeps the peak (tracemalloc) of building the engine and one value
with its gradient at a few times the data's size.
"""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd

from mlmrun.likelihood.laplace.objective import LaplaceEngine
from tests.laplace.laplace_engine_models import compile_spec


def test_crossed_2000_by_50_stays_under_100_mb(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    persons, items = 2000, 50
    person = np.repeat(np.arange(persons), items)
    item = np.tile(np.arange(items), persons)
    x = rng.normal(size=len(person))
    eta = -0.3 + 0.5 * x + rng.normal(size=persons)[person] + 0.6 * rng.normal(size=items)[item]
    y = (rng.uniform(size=len(person)) < 1 / (1 + np.exp(-eta))).astype(int)
    frame = pd.DataFrame({"person": person, "item": item, "x": x, "y": y})
    model = compile_spec(tmp_path, """
levels:
  - {name: person, id: person, crossed: true}
  - {name: item, id: item, crossed: true}
responses:
  - {name: y, family: binomial, link: logit}
fixed: "y ~ x"
random:
  - {level: person, terms: [1]}
  - {level: item, terms: [1]}
""", "big", frame)
    free = model.partable.pack(model.partable.start_values)
    tracemalloc.start()
    try:
        engine = LaplaceEngine(model)
        value, grad = engine.loglik_gradient(free)
        post = engine.posterior(free)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert np.isfinite(value) and np.all(np.isfinite(grad))
    assert [p.mode.shape for p in post] == [(persons, 1), (items, 1)]
    assert peak < 100e6, f"peak {peak / 1e6:.0f} MB"

"""Frequency weights in the Laplace engine, and the models it refuses.

A frequency weight f on a row is the same likelihood as f copies of the row:
the engine's value with weights equals its value on the expanded data (and
its gradient the central differences). Compile takes weights with nested
levels only (compile/weights.py), so the model here is nested. Level weights above the rows, choice
sets and discrete latent variables are refused with a ValueError naming why.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mlmrun.likelihood.laplace.objective import LaplaceEngine
from tests.laplace.laplace_engine_models import central_gradient, compile_spec, crossed_frame, random_values

BODY = """
levels:
  - {name: person, id: person}
responses:
  - {name: ysucc, family: binomial, link: logit, trials: ntr}
fixed: "ysucc ~ x"
random:
  - {level: person, terms: [1, w], covariance: unstructured}
"""


def test_frequency_weights_equal_copies_of_rows(tmp_path: Path) -> None:
    frame = crossed_frame()
    frame["f"] = np.random.default_rng(4).integers(1, 4, size=len(frame))
    weighted = compile_spec(tmp_path, BODY + "weights: {fweight: f}\n", "weighted", frame)
    copies = compile_spec(tmp_path, BODY, "copies", frame.loc[frame.index.repeat(frame["f"])].reset_index(drop=True))
    a, b = LaplaceEngine(weighted), LaplaceEngine(copies)
    for seed in (0, 1):
        values = random_values(weighted, seed)
        assert a.loglik(weighted.partable.pack(values)) == pytest.approx(b.loglik(copies.partable.pack(values)),
                                                                          abs=1e-8)
    free = weighted.partable.pack(random_values(weighted, 2))
    _, grad = a.loglik_gradient(free)
    fd = central_gradient(a.loglik, free)
    np.testing.assert_allclose(grad, fd, rtol=1e-5, atol=1e-5 * max(1.0, float(np.abs(fd).max())))


def test_level_weights_are_refused(tmp_path: Path) -> None:
    frame = crossed_frame()
    frame["pw"] = 1.0 + (frame["person"] % 3)
    body = BODY.replace("{name: person, id: person}", "{name: person, id: person, pweight: pw}")
    model = compile_spec(tmp_path, body, "level_weights", frame)
    with pytest.raises(ValueError, match="level weights"):
        LaplaceEngine(model)

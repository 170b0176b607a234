"""simple_formula builds exactly the object formulaic's parser builds, or leaves the formula to formulaic.

'Exactly' is checked on the whole object tree (every attribute, slot and
nested object: terms, factors, tokens with their source offsets, parsers,
ordering), not only on the formula's text, so anything downstream that reads
the formula (model matrices, required variables, error messages quoting a
token) sees no difference.
"""

from __future__ import annotations

import enum
from pathlib import Path

import numpy as np
import pytest
import yaml
from formulaic import Formula

from mlmrun.compile.design import ALLOWED_FUNCTIONS, parse_formula
from mlmrun.compile.simple_formula import simple_formula

SPECS = sorted((Path(__file__).resolve().parents[2] / "specs").glob("*.yaml"))


def _tree(x: object, depth: int = 0) -> str:
    """Every attribute of `x`, recursively, as text (cached hashes left out: they are derived)."""
    if depth > 14:
        raise AssertionError("object tree deeper than expected")
    if isinstance(x, str | int | float | bool | type(None) | enum.Enum):
        return repr(x)
    if isinstance(x, list | tuple):
        return type(x).__name__ + "[" + ", ".join(_tree(v, depth + 1) for v in x) + "]"
    if isinstance(x, set | frozenset):
        return type(x).__name__ + "{" + ", ".join(sorted(_tree(v, depth + 1) for v in x)) + "}"
    if isinstance(x, dict):
        return "{" + ", ".join(f"{_tree(k, depth + 1)}: {_tree(v, depth + 1)}" for k, v in x.items()) + "}"
    attrs: dict[str, object] = {}
    for cls in type(x).__mro__:
        for slot in getattr(cls, "__slots__", ()):
            if hasattr(x, slot):
                attrs[slot] = getattr(x, slot)
    if hasattr(x, "__dict__"):
        attrs.update(vars(x))
    if not attrs:
        return f"{type(x).__name__}({x!r})"
    return type(x).__name__ + "(" + ", ".join(f"{k}={_tree(v, depth + 1)}" for k, v in attrs.items()
                                              if k != "_hash") + ")"


SIMPLE = ["y ~ a", "y ~ a + b", "y~a+b", "  y ~ a  ", "y ~ 1", "y ~ 1 + a + b", "y ~ 0 + a", "y ~ 0 + a + b",
          "y ~ b + a", "Reaction ~ Days", "gsp ~ private + emp + hwy + water + other + unemp", "y_1 ~ x2 + _z",
          "y ~\ta +\n b", "weight ~ week"]
NOT_SIMPLE = ["y ~ a:b", "y ~ a*b", "y ~ log(a)", "y ~ C(a)", "y ~ a + 1", "y ~ 0", "y ~ a - 1", "y ~ a + a",
              "y ~ y", "y ~ `a b`", "y ~ a + C", "y ~ lambda", "y ~ __a", "y ~ 2 + a", "y ~ 1a", "y ~ a.b",
              "~ a", "y ~", "y", "y ~ a + + b", "y ~ I(a**2)", "y ~ a + b\u00a0", "y ~ caf\u00e9", "y ~ a + True",
              "y ~ 0 + 1 + a", "y ~ (a + b)", "y ~ a | g"]


@pytest.mark.parametrize("text", SIMPLE)
def test_simple_formulas_are_formulaic_objects_attribute_for_attribute(text: str) -> None:
    built = simple_formula(text, frozenset(ALLOWED_FUNCTIONS))
    assert built is not None
    assert _tree(built) == _tree(Formula(text))


@pytest.mark.parametrize("text", NOT_SIMPLE)
def test_other_formulas_are_left_to_formulaic(text: str) -> None:
    assert simple_formula(text, frozenset(ALLOWED_FUNCTIONS)) is None


def test_random_sums_of_columns_match_formulaic() -> None:
    rng = np.random.default_rng(7)
    pool = ["a", "b", "x1", "long_name", "Z", "_t", "emp", "k9"]
    for _ in range(60):
        k = int(rng.integers(1, 6))
        names = list(rng.choice(pool, size=k, replace=False))
        start = str(rng.choice(["", "0 + ", "1 + "]))
        space = [str(rng.choice(["", " ", "  ", "\t"])) for _ in range(2 * k + 4)]
        text = f"{space[0]}resp{space[1]}~{space[2]}{start}" + "".join(
            f"{space[3 + 2 * i]}{'+' if i else ''}{space[4 + 2 * i]}{n}" for i, n in enumerate(names))
        built = simple_formula(text)
        assert built is not None, text
        assert _tree(built) == _tree(Formula(text)), text


@pytest.mark.parametrize("path", SPECS, ids=[p.stem for p in SPECS])
def test_shipped_fixed_parts_parse_as_formulaic_parses_them(path: Path) -> None:
    text = yaml.safe_load(path.read_text())["fixed"]
    assert _tree(parse_formula(text, f"fixed of {path.stem}")) == _tree(Formula(text))

"""The formula grammar accepts the documented language, refuses the rest within its budgets, and formulaic
evaluates what it accepts with nothing but the data and the allowed functions in scope."""

from __future__ import annotations

import random
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from formulaic import Formula

from mlmrun import cli
from mlmrun.compile.design import check_factor, fixed_design, parse_formula
from mlmrun.errors import DataError, SpecError
from mlmrun.pipeline import prepare
from mlmrun.spec import formula_grammar
from mlmrun.spec.formula_grammar import check_formula, excerpt
from tests.conftest import SPECS

LEGIT = [
    ("y ~ x", "y", ("x",)),
    ("y ~ 0 + C(item)", "y", ("item",)),
    ("y ~ x - 1", "y", ("x",)),
    ("y ~ -1 + x", "y", ("x",)),
    ("diameter ~ 1", "diameter", ()),
    ("y ~ 0 + chd + chd:age + chd:bus + chd:age:bus + fiber", "y", ("chd", "age", "bus", "fiber")),
    ("y ~ (a + b + c)**2", "y", ("a", "b", "c")),
    ("y ~ a*b + a/b", "y", ("a", "b")),
    ("y ~ I(x**2) + I(x ** -1) + I(1e3 * x)", "y", ("x",)),
    ("y ~ I(item == 'defect') + I((item != \"a\") * x) + I(x > 2)", "y", ("item", "x")),
    ("y ~ poly(x, 2) + poly(z, degree=3)", "y", ("x", "z")),
    ("y ~ log(x + 1) + log1p(x) + sqrt(abs(x)) + exp(-x) + center(x) + scale(x)", "y", ("x",)),
    ("`my y` ~ `a b` + log(`a b`) + `x.1`", "my y", ("a b", "x.1")),
    ("y ~ x\n  + z", "y", ("x", "z")),
    ("y ~ \u00e9t\u00e9 + log(\u00e9t\u00e9)", "y", ("\u00e9t\u00e9",)),
]


@pytest.mark.parametrize(("text", "response", "columns"), LEGIT)
def test_documented_formulas_are_accepted_with_their_columns(text: str, response: str, columns: tuple[str, ...]) -> None:
    parsed = check_formula(text, "fixed")
    assert parsed.response == response
    assert parsed.columns == columns


@pytest.mark.parametrize("spec", sorted(p.name for p in SPECS.glob("*.yaml")))
def test_every_shipped_spec_still_validates(spec: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["validate", str(SPECS / spec)]) == 0, capsys.readouterr().err


def test_a_ten_megabyte_formula_is_refused_at_once() -> None:
    text = "y ~ " + "x + " * 2_500_000 + "x"
    start = time.perf_counter()
    with pytest.raises(SpecError, match=r"^fixed: the formula is 10000005 characters long, more than 2000") as info:
        check_formula(text, "fixed")
    assert time.perf_counter() - start < 0.5
    assert len(str(info.value)) < 300


def test_deep_nesting_is_a_spec_error_even_without_the_length_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(formula_grammar, "MAX_LENGTH", 10**6)
    for text in ["y ~ " + "(" * 20_000 + "x" + ")" * 20_000, "y ~ " + "log(" * 20_000 + "x" + ")" * 20_000,
                 "y ~ I(" + "-" * 20_000 + "x)"]:
        with pytest.raises(SpecError, match="nests more than 32 levels deep"):
            check_formula(text, "fixed")


@pytest.mark.parametrize(("text", "message"), [
    ("y ~ I(x**11)", "exponent must be a number from -10 to 10"),
    ("y ~ I(x**-11)", "exponent must be a number from -10 to 10"),
    ("y ~ I((x**2)**2)", "powers cannot be nested"),
    ("y ~ I(x**2**2)", "powers cannot be nested"),
    ("y ~ I(1234567890123456)", "too large or too long"),
    ("y ~ I(1e999 * x)", "too large or too long"),
    ("y ~ (a + b)**6", "whole number from 1 to 5"),
    ("y ~ poly(x, 0)", "degree must be a whole number from 1 to 10"),
    ("y ~ poly(x, 11)", "degree must be a whole number from 1 to 10"),
    ("y ~ poly(x, 2.5)", "degree must be a whole number from 1 to 10"),
    ("y ~ log(C(item))", "C(...) can only be a term of its own"),
    ("y ~ I(item < 'b')", "compared with == or !="),
    ("y ~ I(x == 'a' == x)", "chained comparisons"),
    ("y ~ I(item == '" + "a" * 101 + "')", "too long"),
    ("y ~ `" + "a" * 201 + "`", "too long"),
    ("y ~ log", "'log' is a function"),
    ("y ~ `z` + log(`a b` / `z`)", "write z without backticks"),
    ("y ~ `lambda`", "rename 'lambda'"),
    ("y ~ x\u00b2", "changes under Unicode normalisation"),
])
def test_budgets_and_rules_refuse_with_what_to_write(text: str, message: str) -> None:
    with pytest.raises(SpecError, match=r"^fixed: ") as info:
        check_formula(text, "fixed")
    assert message in str(info.value)


def test_kinds_of_formula_restrict_their_sides() -> None:
    with pytest.raises(SpecError, match="^responses.0.variance: this formula must be one-sided"):
        check_formula("y ~ x", "responses.0.variance", "one_sided")
    with pytest.raises(SpecError, match="^structural.Gamma.f: a covariate term cannot contain '~'"):
        check_formula("~ age", "structural.Gamma.f", "term")
    assert check_formula("age:bus", "structural.Gamma.f", "term").columns == ("age", "bus")


def test_excerpts_of_long_formulas_are_short_and_show_the_fault() -> None:
    text = "y ~ " + "x + " * 300 + "x.__class__ + " + "z + " * 100 + "z"
    with pytest.raises(SpecError) as info:
        check_formula(text, "fixed")
    message = str(info.value)
    assert "__class__" in message and len(message) < 400
    assert len(excerpt(text, 1000)) < 100


def test_evaluation_scope_holds_only_data_and_allowed_functions() -> None:
    """Third gate, checked by bypassing the first two: formulaic's own transforms (np) are out of scope."""
    frame = pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0]})
    with pytest.raises(DataError, match="np"):
        fixed_design(Formula("~ 0 + I(np.log(x))"), frame)


@pytest.mark.parametrize("text", ["~ {x.__class__}", "~ {__import__('os')}", "~ {open('x')}", "~ {[x][0]}"])
def test_factor_gate_refuses_python_the_grammar_would_never_pass(text: str) -> None:
    formula = Formula(text)
    factors = [f for term in formula for f in term.factors if str(f.expr) != "1"]
    with pytest.raises(SpecError, match="^fixed: formula .* which is not allowed"):
        for factor in factors:
            check_factor(factor, text, "fixed")


def test_parse_formula_runs_the_grammar_first() -> None:
    with pytest.raises(SpecError, match=r"^responses.2.variance: the character '\{' is not allowed"):
        parse_formula("~ {x}", "responses.2.variance", "one_sided")


TRICKY = """\
name: tricky
data: {path: data.csv}
levels: [{name: g, id: g}]
responses: [{name: y, family: gaussian, variance: "~ I(item == 'b')"}]
fixed: "y ~ 0 + `my x` + I(z**2) + z:`my x` + I((item == 'b') * z) + log1p(z) + C(item)"
random: [{level: g, terms: [1]}]
"""


def test_tricky_legitimate_formulas_build_the_columns_computed_by_hand(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    n = 60
    frame = pd.DataFrame({"g": np.repeat(np.arange(12), 5), "item": np.tile(list("abc"), 20),
                          "my x": rng.normal(size=n), "z": rng.uniform(0.5, 2.0, n), "y": rng.normal(size=n)})
    frame.to_csv(tmp_path / "data.csv", index=False)
    (tmp_path / "spec.yaml").write_text(TRICKY)
    model = prepare(tmp_path / "spec.yaml").model
    x, z, item = frame["my x"].to_numpy(), frame["z"].to_numpy(), frame["item"].to_numpy()
    expected = {"my x": x, "I(z ** 2)": z**2, "z:my x": z * x, "I((item == 'b') * z)": (item == "b") * z,
                "log1p(z)": np.log1p(z), **{f"C(item)[{c}]": (item == c).astype(float) for c in "abc"}}
    names = list(model.x_names)
    for name, column in expected.items():
        key = name if name in names else next(n for n in names if n.replace(" ", "") == name.replace(" ", ""))
        np.testing.assert_allclose(model.X[:, names.index(key)], column, rtol=1e-12)
    assert "Intercept" not in names
    (hetero,) = [eq.hetero for eq in model.equations]
    np.testing.assert_allclose(hetero[:, 0], (item == "b").astype(float))


def _random_formula(rng: random.Random) -> str:
    """A formula from the documented language, drawn at random (columns x, z, `my x`, item)."""
    def column() -> str:
        return rng.choice(["x", "z", "`my x`", "`m-y`"])

    def python(depth: int) -> str:
        r = rng.random()
        if depth > 3 or r < 0.3:
            return rng.choice([column(), column(), "2", "1.5", "0.5"])
        if r < 0.5:
            return f"{python(depth + 1)} {rng.choice('+-*/')} {python(depth + 1)}"
        if r < 0.6:
            return f"-{python(depth + 1)}"
        if r < 0.7:
            return f"({python(depth + 1)})"
        if r < 0.8:
            return f"{column()}**{rng.choice(['2', '-1', '0.5', '3'])}"
        return f"{rng.choice(['log', 'log1p', 'exp', 'sqrt', 'abs', 'center', 'scale', 'I'])}({python(depth + 1)})"

    def term(depth: int) -> str:
        r = rng.random()
        if depth > 2 or r < 0.3:
            return column()
        if r < 0.4:
            return "C(item)"
        if r < 0.5:
            return f"poly({column()}, {rng.randint(1, 3)})"
        if r < 0.65:
            return f"I({python(0)})" if r < 0.6 else f"I(item {rng.choice(['==', '!='])} '{rng.choice('abq')}')"
        if r < 0.72:
            return f"{rng.choice(['log', 'exp', 'sqrt', 'abs', 'center', 'scale', 'log1p'])}({python(0)})"
        op = rng.choice([":", "*", "/", " - "])
        if r < 0.9:
            return f"{term(depth + 1)}{op}{term(depth + 1)}"
        return f"({term(depth + 1)} + {term(depth + 1)}){rng.choice(['**', '^'])}{rng.randint(1, 3)}"

    lead = rng.choice(["y ~ ", "~ ", "y ~ 0 + ", "y ~ -1 + ", ""])
    return lead + " + ".join(term(0) for _ in range(rng.randint(1, 4)))


def test_whatever_the_grammar_accepts_formulaic_parses_and_the_factor_gate_passes() -> None:
    rng = random.Random(20261129)
    for _ in range(300):
        text = _random_formula(rng)
        check_formula(text, "fixed")
        parse_formula(text)


def test_token_soup_is_refused_with_spec_errors_only() -> None:
    rng = random.Random(7)
    pieces = ["x", "z", "`my x`", "0", "1", "2", "1.5", "+", "-", "*", "/", ":", "**", "^", "(", ")", ",", "==", ">",
              "'b'", "C(", "I(", "log(", "poly(", "~", "degree=", "`", ".", "[", "{", "__class__", "lambda", ":="]
    accepted = 0
    for _ in range(3000):
        text = " ".join(rng.choice(pieces) for _ in range(rng.randint(1, 12)))
        try:
            check_formula(text, "fixed")
        except SpecError as exc:
            assert str(exc).startswith("fixed: ") and "; " in str(exc)
            continue
        parse_formula(text)
        accepted += 1
    assert 0 < accepted < 3000

"""Formulas from untrusted specs never run code: every injection attempt in every formula-bearing field
(`fixed`, `responses[].variance`, `structural.Gamma` covariates) exits 2 at that key, and no marker file appears.

Each attempt is an rhs fragment placed in one field while the others stay valid; MARK stands for a
file in the test's folder that the attempt would create if it were evaluated.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlmrun import cli

POPEN = ("x + {`x` if [x for x in x.__class__.__mro__[-1].__subclasses__() "
         "if x.__name__ == 'Popen' and x(['touch', 'MARK'])] else `x`}")

ATTEMPTS = {
    "backtick_block_popen": POPEN,
    "backtick_name_with_code": "`x` + `__import__('os').system('touch MARK')`",
    "backtick_then_code": "`x` + __import__('os').system('touch MARK') * 0 + `x`",
    "brace_block_import": "x + {__import__('os').system('touch MARK')}",
    "brace_block_open": "x + {open('MARK', 'w')}",
    "call_import": "x + __import__('os').system('touch MARK')",
    "attribute_access": "x.__class__",
    "attribute_numpy": "np.log(x)",
    "subscript": "x[0]",
    "dunder_name": "__builtins__",
    "lambda": "I((lambda: open('MARK', 'w'))())",
    "comprehension": "I([open('MARK', 'w') for x in [1]])",
    "walrus": "I((x := 1))",
    "f_string": "I(f'{open(\"MARK\", \"w\")}')",
    "bytes_literal": "I(b'x')",
    "string_multiplication": "I('a' * 10**9)",
    "string_outside_comparison": "I('MARK')",
    "power_tower": "I(10**10**10)",
    "huge_exponent": "I(2**100000)",
    "huge_literal": "I(" + "9" * 400 + ")",
    "long_formula_20kb": "x + " * 5_000 + "x",
    "deep_nesting_20000": "(" * 20_000 + "x" + ")" * 20_000,
    "deep_nesting_short": "(" * 600 + "x" + ")" * 600,
    "unary_chain": "I(" + "-" * 1500 + "x)",
    "eval_call": "eval('1')",
    "open_call": "open('MARK', 'w')",
    "getattr_call": "getattr(x, 'real')",
    "contrast_attribute": "C(x, contr.treatment)",
    "contrast_levels_list": "C(item, levels=['b'])",
    "keyword_argument": "scale(x, ddof=0)",
    "poly_degree_huge": "poly(x, 1000)",
    "poly_degree_variable": "poly(x, x)",
    "conditional": "I(x if x else x)",
    "keyword_statement": "x\nimport os",
    "fullwidth_open": "\uff4f\uff50\uff45\uff4e('MARK')",
    "backslash_escape": "`x\\` + `y`",
    "bitwise_xor_after_power": "I(x ^ 2 ^ 2)",
    "product_explosion": "*".join(f"x{i}" for i in range(14)),
    "comparison_outside_I": "x == 1",
    "all_columns_dot": ".",
    "python_block_pipe": "x | item",
}

BASE_DATA = pd.DataFrame({
    "person": np.repeat(np.arange(30), 3),
    "item": np.tile(["a", "b", "c"], 30),
    "x": np.linspace(-1.0, 2.0, 90),
    "w": np.repeat(np.linspace(0.0, 1.0, 30), 3),
    "y": np.sin(np.arange(90.0)) + np.repeat(np.cos(np.arange(30.0)), 3),
})

SPEC = """\
name: injection
data: {{path: data.csv}}
levels: [{{name: person, id: person}}]
responses:
  - name: y
    family: gaussian
    variance: {variance}
fixed: {fixed}
latent:
  - {{name: f, level: person, loadings: {{by: item, fix: {{a: 1}}}}}}
structural:
  Gamma:
    f:
      ? {gamma}
      : free
"""
FIELDS = {  # field -> (how the attempt becomes its formula, key named in the message, line of the formula)
    "fixed": (lambda rhs: f"y ~ {rhs}", "fixed", 8),
    "variance": (lambda rhs: f"~ {rhs}", "responses.0.variance", 7),
    "gamma": (lambda rhs: rhs, "structural.Gamma.f", 14),
}
VALID = {"fixed": "y ~ x + C(item)", "variance": "~ x", "gamma": "w"}
LOCATED = re.compile(r"(?P<file>\S*spec\.yaml):(?P<line>\d+):(?P<col>\d+): (?P<what>.*)$")


def write_case(folder: Path, field: str | None = None, rhs: str = "") -> Path:
    """The data and a spec whose `field` holds the attempt (MARK replaced by a path in `folder`)."""
    BASE_DATA.to_csv(folder / "data.csv", index=False)
    formulas = dict(VALID)
    if field is not None:
        formulas[field] = FIELDS[field][0](rhs.replace("MARK", str(folder / "MARK")))
    spec = folder / "spec.yaml"
    spec.write_text(SPEC.format(**{k: json.dumps(v) for k, v in formulas.items()}))
    return spec


def run_cli(spec: Path, command: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    args = [command, str(spec)] + (["--out", str(spec.parent / "out"), "--quiet"] if command == "fit" else [])
    code = cli.main(args)
    return code, capsys.readouterr().err


def test_the_valid_spec_validates(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run_cli(write_case(tmp_path), "validate", capsys)
    assert code == 0, err


@pytest.mark.parametrize("field", sorted(FIELDS))
@pytest.mark.parametrize("attempt", sorted(ATTEMPTS))
def test_injection_attempt_is_refused_at_its_key(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                 monkeypatch: pytest.MonkeyPatch, field: str, attempt: str) -> None:
    monkeypatch.chdir(tmp_path)
    spec = write_case(tmp_path, field, ATTEMPTS[attempt])
    start = time.perf_counter()
    code, err = run_cli(spec, "validate", capsys)
    assert time.perf_counter() - start < 10
    assert code == 2, err
    assert "Traceback" not in err and "internal error" not in err
    _, key, line = FIELDS[field]
    located = [m for m in map(LOCATED.search, err.splitlines()) if m]
    assert located, err
    assert int(located[0]["line"]) == line
    assert located[0]["what"].startswith(f"{key}: "), located[0]["what"]
    assert len(located[0]["what"]) < 700  # long formulas are shortened in messages
    assert not (tmp_path / "MARK").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.csv", "spec.yaml"]


@pytest.mark.parametrize("field", sorted(FIELDS))
@pytest.mark.parametrize("attempt", ["backtick_block_popen", "brace_block_open", "lambda", "power_tower",
                                     "string_multiplication"])
def test_injection_attempt_is_refused_by_fit_before_anything_is_written(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
        field: str, attempt: str) -> None:
    monkeypatch.chdir(tmp_path)
    code, err = run_cli(write_case(tmp_path, field, ATTEMPTS[attempt]), "fit", capsys)
    assert code == 2, err
    assert LOCATED.search(err) and int(LOCATED.search(err)["line"]) == FIELDS[field][2]
    assert not (tmp_path / "MARK").exists()
    assert not (tmp_path / "out").exists()


COLUMN_SPEC = """\
name: columns
data: {{path: data.csv}}
levels: [{{name: person, id: person}}]
responses:
  - {{name: y, family: gaussian{response_extra}}}
fixed: "y ~ x"
{extra}
"""
COLUMN_FIELDS = {  # fields that name a column: looked up, never evaluated -> (response key or None, extra lines, line)
    "variance_by": ("variance_by", "", 5),
    "offset": ("offset", "", 5),
    "select": ("select", "", 5),
    "random_terms": (None, "random: [{{level: person, terms: [1, {column}]}}]", 7),
    "loadings_on": (None, "latent: [{{name: f, level: person, loadings: {{on: [{column}], fix: {{1: 1}}}}}}]", 7),
    "loadings_by": (None, "latent: [{{name: f, level: person, loadings: {{by: {column}}}, variance: 1}}]", 7),
}


@pytest.mark.parametrize("field", sorted(COLUMN_FIELDS))
@pytest.mark.parametrize("attempt", ["backtick_block_popen", "brace_block_open", "call_import"])
def test_code_in_a_column_name_field_is_only_a_missing_column(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                              monkeypatch: pytest.MonkeyPatch,
                                                              field: str, attempt: str) -> None:
    monkeypatch.chdir(tmp_path)
    BASE_DATA.to_csv(tmp_path / "data.csv", index=False)
    column = json.dumps(ATTEMPTS[attempt].replace("MARK", str(tmp_path / "MARK")))
    key, extra, line = COLUMN_FIELDS[field]
    if key == "select":
        column = "{" + column + ": [1]}"
    spec = tmp_path / "spec.yaml"
    spec.write_text(COLUMN_SPEC.format(response_extra=f", {key}: {column}" if key else "",
                                       extra=extra.format(column=column)))
    code, err = run_cli(spec, "validate", capsys)
    assert code == 2, err
    assert "Traceback" not in err and "internal error" not in err
    located = LOCATED.search(err)
    assert located and int(located["line"]) == line, err
    assert not (tmp_path / "MARK").exists()

"""Reading a spec costs little whatever it holds: size, node, depth and alias budgets, checked as the YAML is read."""

from __future__ import annotations

import time
import tracemalloc

import pytest

from mlmrun.errors import SpecError
from mlmrun.spec import yaml_read
from mlmrun.spec.yaml_read import MAX_ALIAS_NODES, MAX_DEPTH, MAX_NODES, MAX_SPEC_BYTES, parse_yaml
from tests.cli_safety.helpers import located, run_cli

BOMB = "\n".join(
    [
        'a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]',
        *(f"{c}: &{c} [{', '.join([f'*{p}'] * 9)}]" for p, c in zip("abcdefgh", "bcdefghi", strict=True)),
    ]
) + "\n"
"""Billion laughs: 9**9 (387 million) strings when expanded, 99 nodes as written."""

LOADERS = [pytest.param(yaml_read._Loader, id="default")]
if yaml_read._Loader is not yaml_read._PyLoader:
    LOADERS.append(pytest.param(yaml_read._PyLoader, id="pure-python"))


@pytest.fixture(params=LOADERS)
def loader(request, monkeypatch):
    """Each test runs with libyaml's parser (when installed) and with PyYAML's pure-Python one."""
    monkeypatch.setattr(yaml_read, "_Loader", request.param)
    return request.param


def _refused(text: str) -> tuple[str, float]:
    """Parse `text`; return the error message and the seconds it took."""
    start = time.perf_counter()
    with pytest.raises(SpecError) as info:
        parse_yaml(text, "s.yaml")
    return str(info.value), time.perf_counter() - start


def test_alias_bomb_is_refused_fast_with_little_memory(loader):
    tracemalloc.start()
    try:
        message, seconds = _refused(BOMB)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert f"aliases repeat more than {MAX_ALIAS_NODES} YAML nodes" in message
    assert message.startswith("s.yaml:")
    assert seconds < 2.0
    assert peak < 20 * 2**20


def test_alias_bomb_through_the_cli_exits_2_at_the_alias(tmp_path, capsys):
    spec = tmp_path / "bomb.yaml"
    spec.write_text(BOMB)
    start = time.perf_counter()
    code, _, err = run_cli(["validate", str(spec)], capsys)
    assert time.perf_counter() - start < 2.0
    assert code == 2
    ((line, col, what),) = located(err, spec)
    assert "alias bomb" in what and 2 <= line <= 9 and col > 1


def test_aliases_that_repeat_a_little_are_fine():
    text = "base: &b {method: ML, max_iter: 10}\none: *b\ntwo: *b\nlist: [*b, *b]\n"
    data, marks = parse_yaml(text, "s.yaml")
    assert data["one"] == data["two"] == data["list"][1] == {"method": "ML", "max_iter": 10}
    assert marks[("two",)] == (3, 6)  # an alias is located where it is used


def test_merge_keys_keep_explicit_keys_first():
    data, _ = parse_yaml("base: &b {method: ML, max_iter: 10}\nest:\n  <<: *b\n  method: REML\n", "s.yaml")
    assert data["est"] == {"method": "REML", "max_iter": 10}


def test_recursive_alias_is_refused():
    message, _ = _refused("a: &a [1, *a]\n")
    assert message.startswith("s.yaml:1:11: alias *a names no anchor defined before it")


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 20_000])
def test_deep_flow_nesting_is_a_spec_error_not_recursion(loader, depth):
    message, seconds = _refused("a: " + "[" * depth + "]" * depth + "\n")
    assert f"nested more than {MAX_DEPTH} deep" in message and message.startswith("s.yaml:1:")
    assert seconds < 2.0


def test_deep_block_nesting_is_a_spec_error(loader):
    text = "a:\n" + "".join(" " * i + "- \n" for i in range(1, 1000))
    message, seconds = _refused(text)
    assert message.startswith(f"s.yaml:{MAX_DEPTH + 1}:") and f"nested more than {MAX_DEPTH} deep" in message
    assert seconds < 2.0


def test_nesting_up_to_the_limit_is_read():
    depth = MAX_DEPTH - 1
    data, _ = parse_yaml("a: " + "[" * depth + "1" + "]" * depth + "\n", "s.yaml")
    for _ in range(depth):
        (data,) = data if isinstance(data, list) else data.values()
    assert data == [1] or data == 1


def test_deep_nesting_through_the_cli_exits_2(tmp_path, capsys):
    spec = tmp_path / "deep.yaml"
    spec.write_text("name: " + "[" * 20_000 + "]" * 20_000 + "\n")
    code, _, err = run_cli(["validate", str(spec)], capsys)
    assert code == 2
    ((line, _, what),) = located(err, spec)
    assert line == 1 and "nested more than" in what and "RecursionError" not in err


def test_too_many_nodes_is_refused():
    message, _ = _refused("a: [" + "1," * MAX_NODES + "1]\n")
    assert f"more than {MAX_NODES} YAML nodes" in message


def test_spec_larger_than_the_budget_is_refused_before_reading(tmp_path, capsys):
    spec = tmp_path / "huge.yaml"
    with spec.open("wb") as fh:  # sparse: 8 GiB that are never read
        fh.truncate(8 << 30)
    start = time.perf_counter()
    code, _, err = run_cli(["validate", str(spec)], capsys)
    assert time.perf_counter() - start < 2.0
    assert code == 2
    assert f"{spec}: spec file is {8 << 30} bytes, more than the {MAX_SPEC_BYTES} allowed" in err


def test_spec_just_over_the_budget_is_refused(tmp_path, capsys):
    spec = tmp_path / "big.yaml"
    spec.write_text("name: x\n" + "#" * MAX_SPEC_BYTES + "\n")
    code, _, err = run_cli(["validate", str(spec)], capsys)
    assert code == 2 and "more than the 1048576 allowed" in err


@pytest.mark.parametrize("literal", ["9" * 5000, "1" + ":30" * 30_000, "0x" + "f" * 1000])
def test_very_long_numbers_are_refused_without_converting_them(literal):
    message, seconds = _refused(f"a: {literal}\n")
    assert message.startswith("s.yaml:1:4: a number of") and "quote it if it is text" in message
    assert seconds < 2.0


def test_long_plain_text_stays_text():
    text = "word " * 100 + "1:30"
    data, _ = parse_yaml(f"description: {text}\n", "s.yaml")
    assert data == {"description": text}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a: !!python/object/apply:os.system [touch x]\n", "s.yaml:1:4: tag tag:yaml.org,2002:python/object/apply"),
        ("a: !!python/name:os.system\n", "s.yaml:1:4: not valid YAML (could not determine a constructor"),
        ("a: !!set {x, y}\n", "s.yaml:1:4: tag tag:yaml.org,2002:set is not allowed"),
        ("? [a, b]\n: 1\n", "s.yaml:1:3: a key must be a plain name"),
        ("a: &k x\n*k : 2\n", "s.yaml:2:1: a key must be a plain name, not an alias"),
        ("a: 1\n---\nb: 2\n", "s.yaml:2:1: a spec is one YAML document"),
        ("a: \x1b[31m\n", "s.yaml:1:4: character \\x1b is not allowed in YAML"),
    ],
)
def test_unsafe_or_odd_yaml_is_a_located_error(loader, text, expected):
    message, _ = _refused(text)
    assert message.startswith(expected)

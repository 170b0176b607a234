"""Values quoted in messages are short and printable, whatever the spec holds."""

from __future__ import annotations

import pytest

from mlmrun.display import EXCERPT_CHARS, LINE_CHARS, clip, excerpt, sanitize
from tests.cli_safety.helpers import PIG_SPEC, located, run_cli
from tests.conftest import write_spec

LONG = "x" * 9_000 + "!"


def _printable(line: str) -> bool:
    return not any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 or 0x202A <= ord(c) <= 0x202E for c in line)


@pytest.mark.parametrize(
    ("old", "new", "key"),
    [
        ("name: pig_slope", f"name: {LONG}", "name"),
        ("{method: ML}", f"{{method: {LONG}}}", "estimation.method"),
        ("{method: ML}", f"{{method: ML, max_iter: {LONG}}}", "estimation.max_iter"),
        ("estimation: {method: ML}", f"estimation:\n  method: ML\n  ? {LONG}\n  : 1", "estimation." + LONG),
    ],
)
def test_long_values_are_shortened_with_their_length(spec_dir, capsys, old, new, key):
    spec = write_spec(spec_dir, PIG_SPEC.replace(old, new))
    code, _, err = run_cli(["validate", str(spec)], capsys)
    assert code == 2
    ((_, _, what),) = located(err, spec)
    assert what.startswith(clip(key, 300).split("...")[0])
    assert len(what) < 3 * EXCERPT_CHARS + 300
    assert "9001 characters" in what
    assert "x" * (EXCERPT_CHARS + 1) not in what


def test_control_and_bidi_characters_are_escaped(spec_dir, capsys):
    text = PIG_SPEC.replace("{method: ML}", '{method: "ML\\e[2J\\u202e", "\\e[31mred": 1}')
    spec = write_spec(spec_dir, text)
    code, _, err = run_cli(["validate", str(spec)], capsys)
    assert code == 2
    assert all(_printable(line) for line in err.splitlines())
    assert "\\x1b[2J\\u202e" in err and "\\x1b[31mred" in err


def test_every_message_line_is_bounded(spec_dir, capsys):
    spec = write_spec(spec_dir, PIG_SPEC.replace('"weight ~ week"', '"weight ~ ' + " + ".join(["week"] * 3000) + '"'))
    code, _, err = run_cli(["validate", str(spec)], capsys)
    assert code in (0, 2)
    assert all(len(line) <= LINE_CHARS + 100 and _printable(line) for line in err.splitlines())


def test_many_problems_are_listed_up_to_a_limit(spec_dir, capsys):
    items = ", ".join(f"bad{i}: 1" for i in range(300))
    spec = write_spec(spec_dir, PIG_SPEC.replace("{method: ML}", f"{{method: ML, {items}}}"))
    code, _, err = run_cli(["validate", str(spec)], capsys)
    assert code == 2
    lines = err.splitlines()
    assert lines[0] == "mlmrun: 50 problems:" and len(lines) == 52
    assert lines[-1] == f"mlmrun: ... and 250 more problems in {spec}"


def test_excerpt_is_bounded_for_any_value():
    nested: list = []
    for _ in range(500):
        nested = [nested, "y" * 10_000]
    assert len(excerpt(nested)) < EXCERPT_CHARS + 60
    assert len(excerpt("z" * 10**6)) < EXCERPT_CHARS + 60
    assert excerpt("short") == "'short'"
    assert sanitize("a\tb\x1b\u2066") == "a\\tb\\x1b\\u2066"

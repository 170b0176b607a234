"""Compile errors point at the offending key or list item (FILE:LINE:COL), not at 1:1, with a hint."""

from __future__ import annotations

import pytest

from tests.compile_errors.helpers import position, refused, write

DATA = ("abortion_sim.csv",)
FACTOR = """\
name: located
data: {path: abortion_sim.csv}
levels:
  - {name: person, id: person}
  - {name: district, id: district}
responses:
  - {name: resp, family: binomial, link: logit}
fixed: "resp ~ 0 + C(item)"
latent:
  - name: general
    level: person
    loadings: {by: item, fix: {woman: 1}}
  - name: extreme
    level: person
    loadings: {by: item, only: [defect, risk, rape], fix: {defect: 1}}
  - name: general_district
    level: district
structural:
  B: {general: {general_district: 1}}
covariance: {person: independent}
estimation:
  integration: {method: adaptive, points: {person: 4, district: 3}}
"""


def _edit(old: str, new: str) -> str:
    assert old in FACTOR
    return FACTOR.replace(old, new)


# (edit of FACTOR, the text the error must point at and which occurrence of it, words of the hint)
CASES = {
    "undeclared level of a latent variable": (
        ("level: district\n", "level: distrct\n"), ("distrct", 1), "did you mean 'district'?"),
    "undeclared level of a random block": (
        ("covariance: {person: independent}\n", "random: [{level: persn, terms: [1]}]\n"), ("persn", 1),
        "did you mean 'person'?"),
    "undeclared level in covariance": (
        ("{person: independent}", "{persons: independent}"), ("persons", 1), "did you mean 'person'?"),
    "duplicate level names": (
        ("{name: district, id: district}", "{name: person, id: district}"), ("person", 3),
        "already used by levels.0"),
    "duplicate latent names": (
        ("name: extreme\n", "name: general\n"), ("general", 2), "already used by latent.0"),
    "a cycle in B": (
        ("B: {general: {general_district: 1}}", "B: {general: {general_district: 1}, general_district: {general: 1}}"),
        ("general: 1}", 1), "general -> general_district -> general"),
    "an unknown predictor in B": (
        ("{general_district: 1}", "{general_distrct: 1}"), ("general_distrct", 1), "did you mean 'general_district'?"),
    "a wrong item in loadings.only": (
        ("only: [defect, risk, rape]", "only: [defect, risky, rape]"), ("risky", 1), "its categories are"),
    "a repeated item in loadings.only": (
        ("only: [defect, risk, rape]", "only: [defect, risk, defect]"), ("defect]", 1), "listed twice"),
    "an empty loadings.only": (
        ("only: [defect, risk, rape]", "only: []"), ("[]", 1), "give at least one entry"),
    "a loading fixed that the factor does not have": (
        ("fix: {defect: 1}", "fix: {woman: 1}"), ("woman", 2), "not among its loadings"),
    "a repeated item across loadings.equal": (
        ("fix: {woman: 1}}", "fix: {woman: 1}, equal: [[couple, defect], [rape, defect]]}"), ("defect]]", 1),
        "already in equal.0"),
    "crossed levels with a non-gaussian response": (
        ("{name: district, id: district}", "{name: district, id: district, crossed: true}"), ("crossed", 1),
        "every response gaussian with the identity link"),
    "a constraint on an unknown parameter": (
        ("covariance: {person: independent}\n", 'covariance: {person: independent}\nconstraints: {fix: {"sd(generl)@person": 1}}\n'),
        ('"sd(generl)@person"', 1), "did you mean 'sd(general)@person'?"),
    "a parameter repeated in constraints.equal": (
        ("covariance: {person: independent}\n",
         'covariance: {person: independent}\nconstraints: {equal: [["sd(general)@person", "sd(general)@person"]]}\n'),
        ('"sd(general)@person"]]', 1), "listed twice"),
    "a regression on a lower-level factor": (
        ("B: {general: {general_district: 1}}", "B: {general_district: {general: 1}}"), ("general: 1", 1),
        "same or a higher level"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_compile_error_points_at_the_offending_key(tmp_path, capsys, case):
    (old, new), (needle, occurrence), hint = CASES[case]
    text = _edit(old, new)
    problems = refused(write(tmp_path, text, DATA), capsys)
    line, col, what = problems[0]
    assert (line, col) == position(text, needle, occurrence), what
    assert hint in what


@pytest.mark.parametrize("command", ["validate", "fit"])
def test_levels_listed_highest_first_say_lowest_first(tmp_path, capsys, command):
    """Not the within_parent hint, which would fit a district level made of persons."""
    text = _edit("  - {name: person, id: person}\n  - {name: district, id: district}\n",
                 "  - {name: district, id: district}\n  - {name: person, id: person}\n")
    ((line, col, what),) = refused(write(tmp_path, text, DATA), capsys, command)
    assert (line, col) == position(text, "{name: district")
    assert "levels go lowest first" in what and "within_parent" not in what
    assert "levels: [{name: person, id: person}, {name: district, id: district}]" in what


def test_levels_highest_first_are_refused_even_with_within_parent(tmp_path, capsys):
    """Following the old hint (within_parent on the higher level) must not make the reversed order pass."""
    text = _edit("  - {name: person, id: person}\n  - {name: district, id: district}\n",
                 "  - {name: district, id: district, within_parent: true}\n  - {name: person, id: person}\n")
    ((line, col, what),) = refused(write(tmp_path, text, DATA), capsys)
    assert (line, col) == position(text, "{name: district")
    assert "levels go lowest first" in what


def test_ids_numbered_within_parent_still_get_the_within_parent_hint(tmp_path, capsys):
    """Person ids that restart in each district are not a reversed order: the nesting hint stays."""
    frame = (tmp_path / "abortion_sim.csv")
    write(tmp_path, "", DATA, "unused.yaml")
    lines = frame.read_text().splitlines()
    header, rows = lines[0].split(","), [r.split(",") for r in lines[1:]]
    d, p = header.index("district"), header.index("person")
    first: dict[str, int] = {}
    local: dict[str, int] = {}
    for r in rows:
        if r[p] not in local:
            first[r[d]] = first.get(r[d], 0) + 1
            local[r[p]] = first[r[d]]
        r[p] = str(local[r[p]])
    frame.write_text("\n".join([lines[0]] + [",".join(r) for r in rows]) + "\n")
    problems = refused(write(tmp_path, FACTOR, DATA), capsys)
    line, col, what = problems[0]
    assert (line, col) == position(FACTOR, "person", 2)
    assert "within_parent" in what and "lowest first" not in what


def test_several_spec_problems_are_listed_each_at_its_key(tmp_path, capsys):
    text = _edit("level: district\n", "level: distrct\n").replace("name: extreme\n", "name: general\n")
    problems = refused(write(tmp_path, text, DATA), capsys)
    assert {(line, col) for line, col, _ in problems} == {position(text, "distrct"), position(text, "general", 2)}


def test_a_latent_variable_named_like_a_random_term_at_its_level(tmp_path, capsys):
    """Both would make the parameter sd(_cons)@person: refused at the name, not an internal error."""
    text = _edit("name: extreme\n", "name: _cons\n").replace(
        "covariance: {person: independent}\n", "covariance: {person: independent}\nrandom: [{level: person, terms: [1]}]\n")
    ((line, col, what),) = refused(write(tmp_path, text, DATA), capsys)
    assert (line, col) == position(text, "_cons")
    assert "also the name of a term of random.0" in what and "rename the latent variable" in what


def test_a_repeated_ordinal_category_is_refused_at_the_item(tmp_path, capsys):
    text = """\
name: wine
data: {path: wine.csv}
levels:
  - {name: judge, id: judge}
responses:
  - {name: rating, family: ordinal, categories: [1, 2, 3, 2, 5]}
fixed: "rating ~ 0 + temp + contact"
random:
  - {level: judge, terms: [1]}
"""
    ((line, col, what),) = refused(write(tmp_path, text, ("wine.csv",)), capsys)
    assert (line, col) == position(text, "2, 5]")
    assert "listed twice" in what


def test_a_level_whose_units_hold_one_lower_unit_each_is_refused(tmp_path, capsys):
    """district ids equal to person ids: a district effect could not be told apart from the person effect."""
    text = _edit("{name: district, id: district}", "{name: district, id: person}")
    ((line, col, what),) = refused(write(tmp_path, text, DATA), capsys)
    assert (line, col) == position(text, "person}", 2)
    assert "holds exactly one 'person' unit" in what and "check the id column or drop the level" in what

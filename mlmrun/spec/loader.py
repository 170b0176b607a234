"""YAML -> Spec, keeping a map from YAML paths to line/column for error messages.

The file is read within budgets by `mlmrun.spec.yaml_read` (safe YAML, nothing in a
spec is ever evaluated). Pydantic errors are rewritten as
`FILE:LINE:COL: what is wrong; what to write instead`, quoting values only as short,
sanitised excerpts, with the file named relative to the working directory.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from mlmrun.display import clip, display_path, excerpt, sanitize
from mlmrun.errors import SpecError
from mlmrun.spec.model import Spec
from mlmrun.spec.yaml_read import KEY, Loc, SpecLoader, parse_yaml, read_spec_text

__all__ = ["KEY", "Loc", "SpecLoader", "load_spec", "locate", "parse_yaml", "validate_spec_dict"]

MAX_PROBLEMS = 50
"""Most problems listed for one spec; the rest are counted (a spec can hold thousands of bad entries)."""


def _position(loc: Loc, marks: dict[Loc, tuple[int, int]]) -> tuple[int, int]:
    for cut in range(len(loc), -1, -1):
        if loc[:cut] in marks:
            return marks[loc[:cut]]
    return (1, 1)


def _model_at(loc: Loc) -> type[BaseModel] | None:
    """The pydantic model that owns the mapping at `loc` (for did-you-mean on unknown keys)."""
    model: Any = Spec
    for part in loc:
        if isinstance(part, int) or model is None:
            continue
        field = model.model_fields.get(part)
        if field is None:
            return None
        model = _inner_model(field.annotation)
    return model


def _inner_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _inner_model(arg)
        if found is not None:
            return found
    return None


_TAGS = ("literal[", "function-", "union[", "dict[", "list[", "tagged-union[")
_SCALAR_TAGS = {"int", "float", "str", "bool", "none"}


def _clean_loc(loc: Loc, marks: dict[Loc, tuple[int, int]] | None = None) -> Loc:
    """Drop pydantic's union-branch tags ('CovarianceSpec', 'literal[...]', 'int') from a location.

    A part that names a key present in the YAML is always kept, so user keys such as
    a latent variable called 'General' survive; other parts are dropped when they look
    like a branch tag (a class name, a type name, or a bracketed type).
    """
    out: list[Any] = []
    for part in loc:
        if isinstance(part, str) and (marks is None or tuple(out) + (part,) not in marks):
            if part.startswith(_TAGS) or part in _SCALAR_TAGS or (part[:1].isupper() and part not in ("B", "Gamma")):
                continue
        out.append(part)
    return tuple(out)


_EXPECTED = {
    "int": ("a whole number", "10"),
    "float": ("a number", "0.5"),
    "bool": ("true or false", "true"),
    "string": ("text", '"text"'),
    "list": ("a list", "[a, b]"),
    "dict": ("a mapping", "{key: value}"),
    "model": ("a mapping", "{key: value}"),
}


def _expected(kind: str) -> tuple[str, str] | None:
    """What a pydantic type error expected, and an example, for kinds like int_parsing or dict_type."""
    head = kind.split("_", 1)[0]
    return _EXPECTED.get(head) if kind.endswith(("_type", "_parsing", "_from_float")) else None


def _example(loc: Loc, example: str) -> str:
    key = loc[-1] if loc else None
    return f"`{key}: {example}`" if isinstance(key, str) else f"`{example}`"


_BOUNDS = {"less_than_equal": ("of at most", "le"), "greater_than_equal": ("of at least", "ge"),
           "less_than": ("below", "lt"), "greater_than": ("above", "gt")}


def _explain(err: dict[str, Any], loc: Loc) -> str:
    """`what is wrong; what to write instead` for one pydantic error at an already cleaned location."""
    kind = err["type"]
    if kind == "extra_forbidden":
        key = str(loc[-1])
        owner = _model_at(loc[:-1])
        allowed = list(owner.model_fields) if owner else []
        close = difflib.get_close_matches(key, allowed, n=1)
        hint = f"did you mean '{close[0]}'?" if close else f"allowed keys here: {', '.join(allowed)}"
        return f"unknown key {excerpt(key)}; {hint}"
    if kind == "missing":
        return f"missing required key '{loc[-1]}'; add `{loc[-1]}: ...`"
    if kind == "literal_error":
        expected = err.get("ctx", {}).get("expected", "")
        return f"{excerpt(err['input'])} is not allowed; write one of {expected}"
    if kind == "value_error":
        return clip(sanitize(str(err["msg"]).removeprefix("Value error, ")), 600)
    if kind == "string_pattern_mismatch":
        return f"{excerpt(err['input'])} is not allowed here; use only letters, digits and _ . - (e.g. my_model)"
    if kind == "too_short":
        return "this list is empty; give at least one entry"
    if kind == "too_long":
        most = err.get("ctx", {}).get("max_length")
        return f"this list has too many entries (at most {most}); keep the {most} you need most"
    if kind in _BOUNDS:
        words, key = _BOUNDS[kind]
        limit = err.get("ctx", {}).get(key)
        example = f", e.g. {_example(loc, str(limit))}" if key in ("le", "ge") else ""
        return f"{excerpt(err.get('input'))} is out of range; write a number {words} {limit}{example}"
    found = _expected(kind)
    if found is not None:
        what, example = found
        return f"expected {what}, got {excerpt(err.get('input'))}; write {what}, e.g. {_example(loc, example)}"
    return f"{clip(sanitize(str(err['msg']).rstrip('.')), 300)} (got {excerpt(err.get('input'))})"


def _merge_branches(errors: list[dict[str, Any]], marks: dict[Loc, tuple[int, int]]) -> list[tuple[Loc, str]]:
    """One message per location: type errors from the branches of a union are joined with 'or'."""
    out: dict[Loc, list[str]] = {}
    wanted: dict[Loc, list[tuple[str, str]]] = {}
    for err in errors:
        loc = _clean_loc(err["loc"], marks)
        found = _expected(err["type"]) if len(err["loc"]) > len(loc) else None
        if found is not None:
            wanted.setdefault(loc, []).append(found)
            out.setdefault(loc, [])
            continue
        msg = _explain(err, loc)
        if msg not in out.setdefault(loc, []):
            out[loc].append(msg)
    merged = []
    for loc, msgs in out.items():
        if loc in wanted and not msgs:
            options = list(dict.fromkeys(what for what, _ in wanted[loc]))
            example = wanted[loc][0][1]
            value = next(e.get("input") for e in errors if _clean_loc(e["loc"], marks) == loc)
            msgs = [f"expected {' or '.join(options)}, got {excerpt(value)}; write e.g. {_example(loc, example)}"]
        merged += [(loc, m) for m in msgs]
    return merged


def validate_spec_dict(data: Any, marks: dict[Loc, tuple[int, int]], source: str) -> Spec:
    """Validate parsed YAML against the Spec model, raising SpecError with every problem located."""
    if not isinstance(data, dict):
        raise SpecError(f"{source}:1:1: a spec must be a YAML mapping (name:, data:, responses:, fixed:, ...)")
    try:
        return Spec.model_validate(data)
    except ValidationError as exc:
        located = []
        for loc, message in _merge_branches(exc.errors(include_url=False), marks):
            where = clip(sanitize(".".join(str(p) for p in loc)), 300) or "(top)"
            position = marks.get(loc + KEY) if message.startswith("unknown key") else None
            located.append((position or _position(loc, marks), f"{where}: {message}"))
        located.sort(key=lambda item: item[0])
        problems = [f"{source}:{line}:{col}: {text}" for (line, col), text in located]
        count = len(problems)
        if count > MAX_PROBLEMS:
            problems = problems[:MAX_PROBLEMS] + [f"mlmrun: ... and {count - MAX_PROBLEMS} more problems in {source}"]
        raise SpecError(f"{count} problem(s) in {source}", problems) from None


def load_spec(path: str | Path) -> tuple[Spec, dict[Loc, tuple[int, int]]]:
    """Read and validate a spec file; returns the Spec and its YAML line map."""
    path = Path(path)
    source = display_path(path)
    data, marks = parse_yaml(read_spec_text(path, source), source)
    return validate_spec_dict(data, marks, source), marks


def locate(marks: dict[Loc, tuple[int, int]], source: str, *loc: Any) -> str:
    """`FILE:LINE:COL` for a YAML path, for errors raised after validation (e.g. unknown columns)."""
    line, col = _position(tuple(loc), marks)
    return f"{source}:{line}:{col}"

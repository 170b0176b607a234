"""YAML -> Spec, keeping a map from YAML paths to line/column for error messages.

YAML is read with the safe loader only; nothing in a spec is ever evaluated.
Pydantic errors are rewritten as `FILE:LINE:COL: what is wrong; what to write instead`.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from mlmrun.errors import SpecError
from mlmrun.spec.model import Spec

Loc = tuple[Any, ...]


class SpecLoader(yaml.SafeLoader):
    """Safe loader with YAML 1.2 booleans: only true/false, so keys like `on` and categories like yes/no stay strings."""


SpecLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
SpecLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


KEY = ("<key>",)
"""Suffix of a YAML path whose mark is the key itself rather than its value (for unknown-key errors)."""


def _walk(node: yaml.Node, path: Loc, marks: dict[Loc, tuple[int, int]]) -> None:
    marks[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            kpath = path + (key.value,)
            marks[kpath] = marks[kpath + KEY] = (key.start_mark.line + 1, key.start_mark.column + 1)
            _walk(value, kpath, marks)
            marks.setdefault(kpath, (value.start_mark.line + 1, value.start_mark.column + 1))
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _walk(item, path + (i,), marks)


def parse_yaml(text: str, source: str) -> tuple[Any, dict[Loc, tuple[int, int]]]:
    """Parse YAML safely; return the data and a map of YAML path -> (line, column)."""
    try:
        node = yaml.compose(text, Loader=SpecLoader)
        data = yaml.load(text, Loader=SpecLoader)  # noqa: S506 - SpecLoader is a SafeLoader
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        raise SpecError(f"{where}: not valid YAML ({getattr(exc, 'problem', exc)}); check indentation and quoting") from None
    marks: dict[Loc, tuple[int, int]] = {}
    if node is not None:
        _walk(node, (), marks)
    return data, marks


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


def _explain(err: dict[str, Any], loc: Loc) -> str:
    """`what is wrong; what to write instead` for one pydantic error at an already cleaned location."""
    kind = err["type"]
    if kind == "extra_forbidden":
        key = str(loc[-1])
        owner = _model_at(loc[:-1])
        allowed = list(owner.model_fields) if owner else []
        close = difflib.get_close_matches(key, allowed, n=1)
        hint = f"did you mean '{close[0]}'?" if close else f"allowed keys here: {', '.join(allowed)}"
        return f"unknown key '{key}'; {hint}"
    if kind == "missing":
        return f"missing required key '{loc[-1]}'; add `{loc[-1]}: ...`"
    if kind == "literal_error":
        expected = err.get("ctx", {}).get("expected", "")
        return f"{err['input']!r} is not allowed; write one of {expected}"
    if kind == "value_error":
        return str(err["msg"]).removeprefix("Value error, ")
    if kind == "string_pattern_mismatch":
        return f"{err['input']!r} is not allowed here; use only letters, digits and _ . - (e.g. my_model)"
    if kind == "too_short":
        return "this list is empty; give at least one entry"
    found = _expected(kind)
    if found is not None:
        what, example = found
        return f"expected {what}, got {err.get('input')!r}; write {what}, e.g. {_example(loc, example)}"
    return f"{str(err['msg']).rstrip('.')} (got {err.get('input')!r})"


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
            msgs = [f"expected {' or '.join(options)}, got {value!r}; write e.g. {_example(loc, example)}"]
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
        for loc, message in _merge_branches(exc.errors(), marks):
            where = ".".join(str(p) for p in loc) or "(top)"
            position = marks.get(loc + KEY) if message.startswith("unknown key") else None
            located.append((position or _position(loc, marks), f"{where}: {message}"))
        located.sort(key=lambda item: item[0])
        problems = [f"{source}:{line}:{col}: {text}" for (line, col), text in located]
        raise SpecError(f"{len(problems)} problem(s) in {source}", problems) from None


def load_spec(path: str | Path) -> tuple[Spec, dict[Loc, tuple[int, int]]]:
    """Read and validate a spec file; returns the Spec and its YAML line map."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError(f"{path}: cannot read spec ({exc.strerror})") from None
    data, marks = parse_yaml(text, str(path))
    return validate_spec_dict(data, marks, str(path)), marks


def locate(marks: dict[Loc, tuple[int, int]], source: str, *loc: Any) -> str:
    """`FILE:LINE:COL` for a YAML path, for errors raised after validation (e.g. unknown columns)."""
    line, col = _position(tuple(loc), marks)
    return f"{source}:{line}:{col}"

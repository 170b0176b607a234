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


def _walk(node: yaml.Node, path: Loc, marks: dict[Loc, tuple[int, int]]) -> None:
    marks[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            kpath = path + (key.value,)
            marks[kpath] = (key.start_mark.line + 1, key.start_mark.column + 1)
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


def _clean_loc(loc: Loc) -> Loc:
    """Drop pydantic's union-branch tags (e.g. 'CovarianceSpec', 'literal[...]') from a location."""
    out = []
    for part in loc:
        if isinstance(part, str) and (part[:1].isupper() or part.startswith(("literal[", "function-", "union["))) and part not in ("B", "Gamma"):
            continue
        out.append(part)
    return tuple(out)


def _explain(err: dict[str, Any]) -> str:
    kind = err["type"]
    loc = _clean_loc(err["loc"])
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
    return f"{err['msg']} (got {err.get('input')!r})"


def validate_spec_dict(data: Any, marks: dict[Loc, tuple[int, int]], source: str) -> Spec:
    """Validate parsed YAML against the Spec model, raising SpecError with every problem located."""
    if not isinstance(data, dict):
        raise SpecError(f"{source}:1:1: a spec must be a YAML mapping (name:, data:, responses:, fixed:, ...)")
    try:
        return Spec.model_validate(data)
    except ValidationError as exc:
        problems = []
        seen = set()
        for err in exc.errors():
            loc = _clean_loc(err["loc"])
            line, col = _position(loc, marks)
            where = ".".join(str(p) for p in loc) or "(top)"
            msg = f"{source}:{line}:{col}: {where}: {_explain(err)}"
            if msg not in seen:
                seen.add(msg)
                problems.append(msg)
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

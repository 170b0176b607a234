"""The strict base node every spec model derives from."""

from __future__ import annotations

import ast
import inspect
import sys
from functools import cache
from typing import Any

from pydantic import BaseModel, ConfigDict


class SpecNode(BaseModel):
    """Frozen, closed pydantic model: unknown keys are errors, field docstrings become schema text.

    The models are built once, on first use (`defer_build`): validating a spec builds `Spec`
    with every node inside it, instead of each node's own validator at import. Field
    docstrings are read with one parse of the defining module (`attribute_docs`), not with
    pydantic's `use_attribute_docstrings`, which searches every loaded module once per
    model (a tenth of a second with pandas and scipy loaded).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, defer_build=True)

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        docs = attribute_docs(sys.modules[cls.__module__].__file__ or "").get(cls.__qualname__, {})
        for name, field in cls.__pydantic_fields__.items():
            if field.description is None and name in docs:
                field.description = docs[name]


@cache
def attribute_docs(filename: str) -> dict[str, dict[str, str]]:
    """Top-level class name -> {attribute: its docstring} in a module's source (none when it cannot be read).

    An attribute's docstring is the string statement right after its annotated assignment,
    cleaned like any docstring (`inspect.cleandoc`), as pydantic reads them.
    """
    try:
        with open(filename, encoding="utf-8") as source:
            tree = ast.parse(source.read())
    except (OSError, SyntaxError, ValueError):
        return {}
    out: dict[str, dict[str, str]] = {}
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            out[node.name] = {
                stmt.target.id: inspect.cleandoc(doc.value.value)
                for stmt, doc in zip(node.body, node.body[1:], strict=False)
                if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)
                and isinstance(doc, ast.Expr) and isinstance(doc.value, ast.Constant) and isinstance(doc.value.value, str)
            }
    return out

"""Find every place mlmrun raises a user-facing error, with the literal text of its message, by reading the source.

A raise site is a construction `SpecError(...)`, `DataError(...)` or
`IdentificationError(...)` anywhere in mlmrun/, also in the located form
`SpecError.at(loc, message)` (raised at once, returned by a helper or collected
into a list of problems that is raised together), plus `raise ValueError(...)`
in mlmrun/spec/ (pydantic validators, which the loader turns into located
SpecErrors). Its `literal` is the message's constant text with every
interpolated part replaced by NUL, so a fragment a test names matches only text
the message really contains, never a value that happened to be formatted in.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "mlmrun"
USER_ERRORS = {"SpecError", "DataError", "IdentificationError"}
HOLE = "\x00"


@dataclass(frozen=True)
class RaiseSite:
    """One `raise XError(message)` in the package."""

    module: str
    line: int
    function: str
    error: str
    literal: str

    def __str__(self) -> str:
        return f"mlmrun/{self.module}:{self.line} ({self.function}) raise {self.error}({self.literal.replace(HOLE, '{}')!r})"


def _literal(node: ast.expr | None) -> str:
    """Constant text of a message expression; interpolations become HOLE."""
    if node is None:
        return ""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(_literal(v) if isinstance(v, ast.Constant) else HOLE for v in node.values)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return _literal(node.left) + _literal(node.right)
    return HOLE


class _Finder(ast.NodeVisitor):
    def __init__(self, module: str, errors: set[str]) -> None:
        self.module, self.errors, self.stack, self.sites = module, errors, ["<module>"], []

    def _scope(self, node: ast.AST) -> None:
        self.stack.append(getattr(node, "name", "?"))
        self.generic_visit(node)
        self.stack.pop()

    visit_FunctionDef = visit_AsyncFunctionDef = visit_ClassDef = _scope

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        if isinstance(func, ast.Name) and func.id in self.errors:
            error, message = func.id, node.args[0] if node.args else None
        elif (isinstance(func, ast.Attribute) and func.attr == "at" and isinstance(func.value, ast.Name)
              and func.value.id in self.errors):
            error, message = func.value.id, node.args[1] if len(node.args) > 1 else None
        else:
            self.generic_visit(node)
            return
        self.sites.append(RaiseSite(self.module, node.lineno, ".".join(self.stack[1:]) or "<module>",
                                    error, _literal(message)))
        self.generic_visit(node)


def raise_sites(package: Path = PACKAGE) -> list[RaiseSite]:
    """Every user-facing raise site of the package, in file and line order."""
    sites: list[RaiseSite] = []
    for path in sorted(package.rglob("*.py")):
        module = path.relative_to(package).as_posix()
        errors = USER_ERRORS | ({"ValueError"} if module.startswith("spec/") else set())
        finder = _Finder(module, errors)
        finder.visit(ast.parse(path.read_text(), filename=str(path)))
        sites += finder.sites
    return sites


def has_words(literal: str) -> bool:
    """Whether the message has constant text to recognise it by (re-raises of another error's text do not)."""
    return any(len(word) >= 4 and word.isalpha() for part in literal.split(HOLE) for word in part.split())


if __name__ == "__main__":
    for site in raise_sites():
        print(site)

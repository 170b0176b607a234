"""One exception hierarchy for mlmrun; the CLI maps these to exit codes.

Errors about the spec may carry `loc`, the YAML path of the offending key or
list item (e.g. ("latent", 1, "loadings", "only", 2)); `mlmrun.pipeline`
turns it into FILE:LINE:COL. A path may end with KEY to point at a mapping's
key itself rather than at its value (e.g. a misspelt name in `constraints.fix`).
"""

from __future__ import annotations

from typing import TypeVar

Loc = tuple[str | int, ...]
"""A YAML path: mapping keys and list positions from the top of the spec."""

KEY = "<key>"
"""Last element of a Loc that points at a mapping key rather than at its value (same marker as the loader's)."""

_E = TypeVar("_E", bound="MlmrunError")


def dotted(loc: Loc) -> str:
    """`latent.1.loadings.only.2`: how messages name a YAML path (the KEY marker left out)."""
    return ".".join(str(p) for p in loc if p != KEY)


class MlmrunError(Exception):
    """Base class of mlmrun's errors."""

    loc: Loc | None = None

    @classmethod
    def at(cls: type[_E], loc: Loc, text: str) -> _E:
        """The error `loc-as-dotted-path: text`, located at `loc`."""
        err = cls(f"{dotted(loc)}: {text}")
        err.loc = tuple(loc)
        return err


class SpecError(MlmrunError):
    """The spec is invalid; `problems` holds one message per problem (FILE:LINE:COL: ...)."""

    def __init__(self, message: str, problems: list[str] | None = None, loc: Loc | None = None) -> None:
        super().__init__(message)
        self.problems = problems or [message]
        self.loc = None if loc is None else tuple(loc)
        self.parts: list[SpecError] = [self]

    @classmethod
    def many(cls, errors: list[SpecError]) -> SpecError:
        """One error reporting several located problems (each of `errors` keeps its own `loc`)."""
        if len(errors) == 1:
            return errors[0]
        err = cls(f"{len(errors)} problems: " + "; ".join(str(e) for e in errors), [str(e) for e in errors])
        err.parts = list(errors)
        return err


class DataError(MlmrunError):
    """The data do not fit the spec (missing column, wrong type, impossible response...)."""

    def __init__(self, message: str, loc: Loc | None = None) -> None:
        super().__init__(message)
        self.loc = None if loc is None else tuple(loc)


class IdentificationError(SpecError):
    """The model is not identified in an obvious way (detected before fitting)."""

"""One exception hierarchy for mlmrun; the CLI maps these to exit codes."""

from __future__ import annotations


class MlmrunError(Exception):
    """Base class of mlmrun's errors."""


class SpecError(MlmrunError):
    """The spec is invalid; `problems` holds one message per problem (FILE:LINE:COL: ...)."""

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or [message]


class DataError(MlmrunError):
    """The data do not fit the spec (missing column, wrong type, impossible response...)."""


class IdentificationError(SpecError):
    """The model is not identified in an obvious way (detected before fitting)."""

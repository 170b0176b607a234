"""The strict base node every spec model derives from."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class SpecNode(BaseModel):
    """Frozen, closed pydantic model: unknown keys are errors, field docstrings become schema text."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, use_attribute_docstrings=True, populate_by_name=True
    )

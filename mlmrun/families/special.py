"""`sc`: scipy.special, imported on its first use rather than with the families.

Building and checking a model (`mlmrun validate`) never evaluates a density, and
importing scipy.special costs about 0.13 s of start-up; the families reach it
through `sc.NAME` as before, the first such access importing it.
"""

from __future__ import annotations

import importlib
from typing import Any


class LazyModule:
    """A module imported on the first attribute read; each attribute is then kept on the proxy."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__"):
            raise AttributeError(attr)
        value = getattr(importlib.import_module(self._name), attr)
        setattr(self, attr, value)
        return value


sc: Any = LazyModule("scipy.special")

"""How values read from files appear in messages: short, sanitised excerpts and relative paths.

Specs can come from untrusted pull requests and their messages end up in CI
logs, so a message may name a column or quote a short piece of a cell, but
never a long value, a control character, or a file's lines; and paths are
shown relative to the working directory, so logs do not reveal where a
checkout lives.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from mlmrun.display import clip, display_path, sanitize

EXCERPT_CHARS = 40
"""Longest excerpt of a value read from a file that a message quotes."""

COLUMNS_SHOWN = 12
"""At most this many column names are listed in a hint."""


def excerpt(value: object, limit: int = EXCERPT_CHARS) -> str:
    """`value` as a quoted, printable excerpt of at most `limit` characters (control characters escaped)."""
    text = str(value)
    cut = len(text) > limit
    return "'" + printable(text[:limit]).replace("'", "\\'") + ("...'" if cut else "'")


def printable(text: str) -> str:
    """`text` with control, line-separator and bidirectional-override characters escaped (display.sanitize)."""
    return sanitize(text)


def excerpts(values: Iterable[object], most: int = 5) -> str:
    """A few values as excerpts, comma-separated, with how many more there are."""
    values = list(values)
    shown = ", ".join(excerpt(v) for v in values[:most])
    return shown + (f" and {len(values) - most} more" if len(values) > most else "")


def columns_hint(columns: Iterable[object]) -> str:
    """'columns are 'a', 'b', ...' for a hint in a message (a few sanitised names)."""
    return "columns are " + excerpts(columns, COLUMNS_SHOWN)


def shown_path(path: str | Path) -> str:
    """`path` relative to the working directory when it lies inside it; sanitised and at most about 200 characters."""
    try:
        path = os.path.abspath(path)
    except OSError:  # the working directory is gone: show the path as given
        pass
    return clip(display_path(path), 200)

"""How values and paths appear in messages: short, printable, and without absolute paths.

Specs and data may come from untrusted pull requests and messages end up in CI logs
and terminals, so every value quoted in a message goes through `excerpt` (bounded
length, control and bidirectional-override characters escaped) and every path
through `display_path` (relative to the working directory when inside it).
"""

from __future__ import annotations

import os
import re
import reprlib
from pathlib import Path
from typing import Any

EXCERPT_CHARS = 200
"""Longest quoted value in a message; longer values are cut in the middle and their length given."""

LINE_CHARS = 2000
"""Longest message line; a longer one (a message quoting something unbounded) is cut."""

_BIDI = {0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A)}


def _unsafe(char: str) -> bool:
    code = ord(char)
    return code < 0x20 or 0x7F <= code < 0xA0 or code in _BIDI or code in (0x2028, 0x2029)


def sanitize(text: str) -> str:
    """`text` with control, line-separator and bidirectional-override characters escaped (e.g. `\\x1b`)."""
    if not any(_unsafe(c) for c in text):
        return text
    out = []
    for char in text:
        if not _unsafe(char):
            out.append(char)
        elif char in "\n\t\r":
            out.append({"\n": "\\n", "\t": "\\t", "\r": "\\r"}[char])
        else:
            code = ord(char)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
    return "".join(out)


def clip(text: str, limit: int = EXCERPT_CHARS) -> str:
    """`text` cut in the middle to about `limit` characters, saying how long it was."""
    if len(text) <= limit:
        return text
    keep = max(limit - 40, 20)
    head, tail = keep * 2 // 3, keep // 3
    return f"{text[:head]}...{text[-tail:]} ({len(text)} characters)"


_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = EXCERPT_CHARS
_REPR.maxlist = _REPR.maxtuple = _REPR.maxdict = _REPR.maxset = 8
_REPR.maxlevel = 3


def excerpt(value: Any, limit: int = EXCERPT_CHARS) -> str:
    """A short, printable repr of a value read from a spec or a data file, safe to quote in a message.

    Bounded in time and length whatever the value (a 10 MB string, a deeply nested list):
    long strings are cut in the middle with their length given.
    """
    if isinstance(value, str):
        text = repr(value) if len(value) <= limit else f"{repr(value[: limit * 2 // 3])[:-1]}...{repr(value[-limit // 3:])[1:]} ({len(value)} characters)"
    else:
        text = _REPR.repr(value)
    return sanitize(clip(text, limit + 40))


def sanitize_line(line: str) -> str:
    """A message line made safe to print: control characters escaped and length capped at `LINE_CHARS`."""
    return clip(sanitize(line), LINE_CHARS)


def relative_path(path: str | Path) -> Path:
    """`path` relative to the current directory when it lies inside it, else as given.

    The rewrite is textual (no symlinks followed), so the result names the same file.
    """
    given = Path(path)
    if given.is_absolute() and ".." not in given.parts:
        try:
            cwd = Path(os.getcwd())
        except OSError:
            return given
        if given.is_relative_to(cwd):
            return given.relative_to(cwd)
    return given


def display_path(path: str | Path) -> str:
    """`path` for a message: relative to the current directory when inside it, control characters escaped.

    Messages and outputs then show `specs/x.yaml`, not the absolute location of a
    checkout (which leaks user names and CI layouts into logs).
    """
    return sanitize(str(relative_path(path)))


def relative_in_text(text: str) -> str:
    """`text` with absolute paths inside the current directory made relative (`/work/x/data/a.csv` -> `data/a.csv`).

    A last line of defence for messages from any stage that name a resolved path.
    """
    try:
        cwd = os.getcwd()
    except OSError:
        return text
    if cwd == os.sep or cwd not in text:
        return text
    pattern = re.escape(cwd) + r"(?:" + re.escape(os.sep) + r"|(?=[\s;:,)'\"]|$))"
    return re.sub(pattern, lambda m: "" if m.group().endswith(os.sep) else ".", text)

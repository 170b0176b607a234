"""Fuzz failures known and not yet fixed: empty on main, where the fuzz holds the whole contract.

Each entry: (regex on the judged problem + stderr + the case's actions, owner, what is wrong). An entry
is a stop-gap for a branch that lands a fuzz finding before its fix; a failure matching no entry fails the test.
"""

from __future__ import annotations

import re

KNOWN_FAILURES: list[tuple[str, str, str]] = [
]


def known_failure(problem: str, stderr: str, actions: str = "") -> str | None:
    """The owner and note of the known failure this outcome matches, or None."""
    text = f"{problem}\n{stderr}\n{actions}"
    for pattern, owner, note in KNOWN_FAILURES:
        if re.search(pattern, text, re.S):
            return f"{owner}: {note}"
    return None

"""Fuzz failures found in files other helpers own, tolerated on this branch only.

Each entry: (regex on the judged problem + stderr, owner, what is wrong).
LEAD: after merging the branches that fix these, delete the entries; the fuzz
test then holds the whole contract again. A failure matching no entry fails the test.
"""

from __future__ import annotations

import re

KNOWN_FAILURES: list[tuple[str, str, str]] = [
    ("^unlocated:.*[\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]", "H2 (spec/loader.py)",
     "a key or value holding a line-breaking control character (form feed, \\x1c, U+2028...) is echoed raw, so "
     "the message breaks across lines; escape or shorten echoed text (issue 7 'YAML')"),
    (r"OverflowError: math range error", "H5 (report/format.py ci)",
     "a fit whose SD confidence interval overflows math.exp crashes while rendering (issue 7 'Report crash')"),
]


def known_failure(problem: str, stderr: str) -> str | None:
    """The owner and note of the known failure this outcome matches, or None."""
    text = f"{problem}\n{stderr}"
    for pattern, owner, note in KNOWN_FAILURES:
        if re.search(pattern, text, re.S):
            return f"{owner}: {note}"
    return None

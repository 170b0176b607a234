"""Fuzz failures found in files other helpers own, tolerated on this branch only.

Each entry: (regex on the judged problem + stderr + the case's actions, owner, what is wrong).
LEAD: after merging the branches that fix these, delete the entries; the fuzz
test then holds the whole contract again. A failure matching no entry fails the test.
"""

from __future__ import annotations

import re

KNOWN_FAILURES: list[tuple[str, str, str]] = [
    (r"^unlocated:(.*[\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]|.*(rename|add) [^\n]*\\+(n|r)[^a-z])", "H2 (spec/loader.py)",
     "a key or value holding a newline or line-breaking control character (form feed, \\x1c, U+2028...) is echoed raw, so "
     "the message breaks across lines; escape or shorten echoed text (issue 7 'YAML')"),
    (r"^unlocated:.*cannot parse formula|^unlocated:.*\x1b\[", "H1 (compile/design.py parse_formula)",
     "formulaic's parser message is copied into the error: several lines with terminal colour codes, the later "
     "lines unlocated; keep one line (and the column of the bad token)"),
    (r"^exit 3.*could not convert string to float", "H3 (compile/__init__.py _equations: trials/offset/exposure)",
     "a text value in a trials, offset or exposure column is an internal error (exit 3) instead of a DataError naming "
     "the column (issue 7 'Data')"),
    (r"^exit -1\n<validate took more than.*data: (row \d+ )?column", "H1/H3 (compile/design.py fixed_design, data/load.py)",
     "one stray text cell in a numeric covariate turns it into a factor with a level per distinct value (mresp: "
     "4000 columns); validate accepts it after ~40 s of rank check instead of naming the column and the cell"),
    (r"^exit 3.*need at least one array to stack", "H4 (compile/latent.py _loadings)",
     "`loadings: {only: []}` is an internal error (numpy stack of nothing) instead of a located SpecError (issue 7 'Data')"),
    (r"^exit 3.*duplicate parameter name", "H4 (compile/latent.py, compile/partable.py)",
     "a loadings.only (or by/on) list naming an item twice is an internal error (duplicate parameter name) "
     "instead of a located SpecError (issue 7 'Data')"),
    (r"OverflowError: math range error", "H5 (report/format.py ci)",
     "a fit whose SD confidence interval overflows math.exp crashes while rendering (issue 7 'Report crash')"),
]


def known_failure(problem: str, stderr: str, actions: str = "") -> str | None:
    """The owner and note of the known failure this outcome matches, or None."""
    text = f"{problem}\n{stderr}\n{actions}"
    for pattern, owner, note in KNOWN_FAILURES:
        if re.search(pattern, text, re.S):
            return f"{owner}: {note}"
    return None

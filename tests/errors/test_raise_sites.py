"""Every user-facing raise site has a case in the error table (or a reasoned exemption), found by reading the source.

A case covers a site when it names the site's module and a fragment of the
site's constant message text that no other site of that module contains (or that
only sites with that same whole message contain: one message built at several
places, e.g. an undeclared level under random, latent or covariance); "@func"
covers the message-less re-raises in `func`. test_error_cases.py checks that
each case's stderr really contains its fragments, so a case cannot claim a site
its input never reaches.
"""

from __future__ import annotations

from tests.errors.cases import CASES, EXEMPT
from tests.errors.sites import RaiseSite, has_words, raise_sites

SITES = raise_sites()


def _matches(module: str, fragment: str) -> list[RaiseSite]:
    if fragment.startswith("@"):
        return [s for s in SITES if s.module == module and s.function.split(".")[-1] == fragment[1:] and not has_words(s.literal)]
    return [s for s in SITES if s.module == module and fragment in s.literal]


def test_the_lister_finds_the_known_kinds_of_site() -> None:
    errors = {s.error for s in SITES}
    assert {"SpecError", "DataError", "IdentificationError", "ValueError"} <= errors
    assert len(SITES) > 50
    assert any(s.module == "compile/data_checks.py" and "no rows left" in s.literal for s in SITES)


def test_every_fragment_names_exactly_one_site_or_one_function() -> None:
    problems = []
    for module, fragment in [pair for case in CASES for pair in case.covers] + list(EXEMPT):
        found = _matches(module, fragment)
        if not found:
            problems.append(f"{module}: no raise site's message contains {fragment!r}")
        elif len(found) > 1 and not fragment.startswith("@") and len({s.literal for s in found}) > 1:
            problems.append(f"{module}: {fragment!r} is in {len(found)} raise sites ({[s.line for s in found]}); "
                            "name a longer fragment")
    assert not problems, "\n".join(problems)


def test_every_raise_site_has_a_case_or_an_exemption() -> None:
    covered: set[RaiseSite] = set()
    for module, fragment in [pair for case in CASES for pair in case.covers]:
        covered.update(_matches(module, fragment))
    exempt = {site for module, fragment in EXEMPT for site in _matches(module, fragment)}
    assert not covered & exempt, f"exempt sites that a case reaches: {[str(s) for s in covered & exempt]}"
    missing = [str(s) for s in SITES if s not in covered and s not in exempt]
    assert not missing, ("raise sites without a case in tests/errors/cases.py (add one, three lines):\n"
                         + "\n".join(missing))


def test_exemptions_stay_few() -> None:
    assert len(EXEMPT) <= 10 and all(len(reason) > 30 for reason in EXEMPT.values())

"""The formulaic Formula of `y ~ a + b + c`, built without formulaic's parser.

Parsing a formula with formulaic costs about half a millisecond (a
tokenizer, an AST and operator resolution in Python), more than the rest of a
small model's compile together. Most specs' fixed parts are a response and a
sum of column names, for which formulaic's result is fixed: the response term,
then the intercept (unless the sum starts with `0 +`) and one lookup term per
column in the order written, each factor carrying the token formulaic's
tokenizer makes (its text and position in the formula). `simple_formula`
builds exactly that object, term for term and token for token
(tests/compile/test_simple_formula.py compares the whole object tree with
formulaic's on many formulas), and returns None for anything else:
functions, interactions, literals other than a leading 0 or 1, backticks,
repeated names, Python keywords, names of the allowed functions (which
formulaic's parser resolves itself) or characters outside ASCII.
"""

from __future__ import annotations

import keyword
import re

from formulaic import Formula
from formulaic.parser.types import Factor, Term, Token
from formulaic.parser.types.ordered_set import OrderedSet
from formulaic.utils.structured import Structured

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_TOKEN = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*|[~+]|[^\sA-Za-z_~+]+)")


def simple_formula(text: str, reserved: frozenset[str] = frozenset()) -> Formula | None:
    """formulaic's `Formula(text)` for `NAME ~ [0 + | 1 +] NAME + NAME ...` (or `NAME ~ 1`), else None.

    `reserved`: names that must go through formulaic's parser (e.g. the allowed functions).
    """
    if not text.isascii():
        return None
    tokens = [(m.group(1), m.start(1)) for m in _TOKEN.finditer(text)]
    if not tokens or "".join(word for word, _ in tokens) != "".join(text.split()):
        return None
    words = [word for word, _ in tokens]
    if len(words) < 3 or len(words) % 2 == 0 or words[1] != "~" or any(w != "+" for w in words[3::2]):
        return None
    response, columns = tokens[0], tokens[2::2]
    intercept = True
    if columns[0][0] in ("0", "1"):
        intercept = columns[0][0] == "1"
        columns = columns[1:]
        if not columns and not intercept:
            return None
    names = [response[0]] + [name for name, _ in columns]
    if len(set(names)) != len(names) or not all(_plain_name(name, reserved) for name in names):
        return None
    rhs = [Term([Factor("1", eval_method="literal", token=Token("1", kind="value"))])] if intercept else []
    rhs += [_lookup(text, name, at) for name, at in columns]
    return Formula.from_spec(Structured(lhs=OrderedSet([_lookup(text, *response)]), rhs=OrderedSet(rhs)))


def _plain_name(name: str, reserved: frozenset[str]) -> bool:
    return bool(_NAME.fullmatch(name)) and not keyword.iskeyword(name) and "__" not in name and name not in reserved


def _lookup(text: str, name: str, at: int) -> Term:
    """A one-factor term looking up column `name`, its token at offset `at` of `text` (end offset inclusive)."""
    token = Token(name, kind="name", source=text, source_start=at, source_end=at + len(name) - 1)
    return Term([Factor(name, eval_method="lookup", token=token)])

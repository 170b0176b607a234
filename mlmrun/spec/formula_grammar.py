"""The formula language of specs as a grammar, checked on the raw text before formulaic sees it.

Specs may come from untrusted pull requests, and formulaic evaluates every factor
of a formula as Python (backtick names and `{...}` blocks included). So a
formula is accepted only if this small tokenizer and recursive-descent parser
derive it from the grammar below; anything else (attribute access, subscripts,
dunder names, lambdas, comprehensions, `{}` blocks, strings outside a
comparison, unknown functions or keywords) is a SpecError naming the spec key.

    formula  := [column] '~' sum | sum           (per kind: see `check_formula`)
    sum      := ['+'|'-'] product (('+'|'-') product)*
    product  := inter (('*'|'/') inter)*
    inter    := power (':' power)*
    power    := atom [('**'|'^') INT]              (1 <= INT <= MAX_TERM_POWER)
    atom     := '(' sum ')' | '0' | '1' | column | call
    call     := FUNC '(' args ')'                  (FUNC in ALLOWED_FUNCTIONS; arity per function)
    args     := expr                               (poly: expr [',' ['degree' '='] INT])
    expr     := side [CMP side]                    (comparisons only inside I(); STRING only with == or !=)
    side     := arith | STRING                     (STRING: a 'label' of plain characters, one side at most)
    arith    := mul (('+'|'-') mul)*
    mul      := unary (('*'|'/') unary)*
    unary    := ('+'|'-') unary | pow
    pow      := prim [('**'|'^') ['-'|'+'] NUMBER] (|exponent| <= MAX_EXPONENT, no power in the base)
    prim     := NUMBER | column | call | '(' expr ')'
    column   := NAME | '`' quoted name '`'       (NAME: an identifier that Unicode NFKC leaves unchanged,
                                                  no '__', no keyword; backticks only for other names)

Budgets keep the cost of reading a formula bounded whatever its text: its
length, the digits of a number, exponents, nesting depth and the number of
terms its products expand to.

Powers follow R: inside a function `^` is arithmetic (`I(age^2)` is the square; formulaic, being
Python, would read it as bitwise xor, so `python_text` writes it as `**`); at the formula level `^`
and `**` expand interactions, `(a + b)^2` = a + b + a:b, so a power of a column or call (`week^2`,
which R and formulaic both read as `week`) is refused with the I(week^2) to write instead.
"""

from __future__ import annotations

import keyword
import re
import unicodedata
from dataclasses import dataclass
from typing import Literal

from mlmrun.errors import SpecError

ALLOWED_FUNCTIONS = ("C", "I", "center", "scale", "poly", "log", "log1p", "exp", "sqrt", "abs")
"""Functions a formula may call; C and poly only as terms of their own."""

MAX_LENGTH = 2000
"""Characters in one formula."""
MAX_DEPTH = 32
"""Nesting of parentheses, calls and unary signs."""
MAX_DIGITS = 15
"""Digits in one number (a float's precision)."""
MAX_EXPONENT = 10
"""Largest |p| in x ** p inside a function."""
MAX_TERM_POWER = 5
"""Largest k in (a + b) ** k at the formula level."""
MAX_POLY_DEGREE = 10
"""Largest degree of poly(x, degree)."""
MAX_TERMS = 500
"""Terms a formula may expand to (a*b*c... doubles them with each factor)."""
MAX_NAME = 200
"""Characters in one column name."""
MAX_LABEL = 100
"""Characters in one category label ('text' in a comparison)."""

Kind = Literal["formula", "one_sided", "term"]
_CMP = ("==", "!=", "<", "<=", ">", ">=")
_NUMBER = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(?:[eE]([+-]?\d+))?")
_NAME = re.compile(r"[^\W\d]\w*")
_OPS = ("**", "==", "!=", "<=", ">=", "~", "+", "-", "*", "/", ":", "^", "(", ")", ",", "=", "<", ">")
_FORBIDDEN_IN_QUOTES = set("`'\"\\{}") | {chr(c) for c in range(32)} | {"\x7f"}
_CHAR_HINTS = {
    ".": "attribute access and '.' are not allowed; name columns directly (quote odd names in backticks)",
    "[": "subscripts are not allowed; name a column, or use C(column) for categories",
    "]": "subscripts are not allowed; name a column, or use C(column) for categories",
    "{": "Python blocks {...} are not allowed; use the functions " + ", ".join(ALLOWED_FUNCTIONS),
    "}": "Python blocks {...} are not allowed; use the functions " + ", ".join(ALLOWED_FUNCTIONS),
    "|": "'|' is not part of the formula language; give random effects under `random:`",
    "%": "'%' is not allowed; use + - * / ** inside I(...)",
    "@": "'@' is not allowed; use + - * / ** inside I(...)",
    "\\": "backslashes are not allowed in formulas",
}


@dataclass(frozen=True)
class Token:
    """One token: its kind (name, qname, number, string, op, end), text and offset in the formula."""

    kind: str
    text: str
    pos: int


@dataclass(frozen=True)
class ParsedFormula:
    """What a checked formula uses: the response column (or None) and the right-hand side's columns."""

    text: str
    response: str | None
    columns: tuple[str, ...]
    n_terms: int
    python_text: str = ""
    """The formula as formulaic reads it: `^` inside functions written `**` (R's meaning)."""


def excerpt(text: str, pos: int = 0, width: int = 80) -> str:
    """The formula shortened to about `width` characters around `pos`, quoted, for messages."""
    if len(text) <= width:
        return repr(text)
    start = max(0, min(pos - width // 2, len(text) - width))
    part = text[start:start + width]
    return ("..." if start else "") + repr(part) + ("..." if start + width < len(text) else "")


class _Fail(Exception):
    """A grammar violation at an offset, turned into a SpecError by `check_formula`."""

    def __init__(self, pos: int, problem: str, hint: str) -> None:
        super().__init__(problem)
        self.pos, self.problem, self.hint = pos, problem, hint


def tokenize(text: str) -> list[Token]:
    """Split a formula into tokens; any character outside the language is refused where it stands."""
    tokens: list[Token] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch in " \t\r\n":
            i += 1
            continue
        if ch == "`":
            end = text.find("`", i + 1)
            if end < 0:
                raise _Fail(i, "a backtick name is not closed", "write `column name` with a closing backtick")
            name = text[i + 1:end]
            bad = sorted(set(name) & _FORBIDDEN_IN_QUOTES)
            if not name.strip() or bad or len(name) > MAX_NAME:
                what = f"contains {''.join(bad)!r}" if bad else ("is empty" if not name.strip() else "is too long")
                raise _Fail(i, f"the backtick name {excerpt(name, 0, 40)} {what}",
                            f"backticks may hold only a column name of at most {MAX_NAME} characters, "
                            "without quotes, backslashes, braces or backticks; rename the column")
            if name.isidentifier():
                raise _Fail(i, f"the backtick name `{name}` is a plain name",
                            f"write {name} without backticks" if not keyword.iskeyword(name)
                            and name not in ALLOWED_FUNCTIONS else
                            f"a column named like a Python keyword or a formula function cannot be used; rename '{name}'")
            tokens.append(Token("qname", name, i))
            i = end + 1
            continue
        if ch in "'\"":
            end = text.find(ch, i + 1)
            label = text[i + 1:end] if end >= 0 else ""
            if end < 0 or len(label) > MAX_LABEL or set(label) & _FORBIDDEN_IN_QUOTES:
                raise _Fail(i, "a text label is not closed, too long or holds quotes, backslashes or braces",
                            f"write a category label of at most {MAX_LABEL} plain characters, e.g. I(item == 'defect')")
            tokens.append(Token("string", label, i))
            i = end + 1
            continue
        m = _NUMBER.match(text, i)
        if m:
            digits = sum(c.isdigit() for c in m.group(1))
            if digits > MAX_DIGITS or (m.group(2) and abs(int(m.group(2))) > 308):
                raise _Fail(i, f"the number {excerpt(m.group(0), 0, 30)} is too large or too long",
                            f"write numbers with at most {MAX_DIGITS} digits and an exponent within e-308..e308")
            if re.fullmatch(r"0\d+", m.group(1)):
                raise _Fail(i, f"the number {m.group(0)!r} has a leading zero", "write it without leading zeros")
            end = m.end()
            if end < n and (text[end].isalnum() or text[end] in "_."):
                raise _Fail(end, f"a number runs into {text[end]!r}",
                            "write plain decimal numbers (e.g. 1.5 or 2e3) separated from names by an operator")
            tokens.append(Token("number", m.group(0), i))
            i = end
            continue
        m = _NAME.match(text, i)
        if m:
            name = m.group(0)
            end = m.end()
            if end < n and text[end] in "'\"":
                raise _Fail(i, f"string prefixes such as {name}'...' are not allowed",
                            "write a plain category label, e.g. I(item == 'defect')")
            if not name.isidentifier() or unicodedata.normalize("NFKC", name) != name:
                raise _Fail(i, f"the name {excerpt(name, 0, 40)} changes under Unicode normalisation "
                            "(Python would read it as another name)", "rename the column with plain letters")
            tokens.append(Token("name", name, i))
            i = end
            continue
        if ch == ":" and text.startswith(":=", i):
            raise _Fail(i, "assignment ':=' is not allowed", "formulas describe columns; they cannot assign")
        if text.startswith("//", i):
            raise _Fail(i, "'//' is not allowed", "write / for division inside I(...)")
        op = next((o for o in _OPS if text.startswith(o, i)), None)
        if op is not None:
            tokens.append(Token("op", op, i))
            i += len(op)
            continue
        raise _Fail(i, f"the character {ch!r} is not allowed",
                    _CHAR_HINTS.get(ch, "use column names, numbers, ~ + - * / : ** ( ) and the functions "
                                        + ", ".join(ALLOWED_FUNCTIONS)))
    tokens.append(Token("end", "", n))
    return tokens


Terms = frozenset[frozenset[str]]


class _Parser:
    """Recursive descent over the tokens; formula-level rules build term sets to bound their number."""

    def __init__(self, tokens: list[Token], text: str = "") -> None:
        self.tokens = tokens
        self.text = text
        self.i = 0
        self.depth = 0
        self.compare_ok = False
        self.columns: dict[str, None] = {}
        self.carets: list[int] = []
        """Offsets of the '^' used as powers inside functions (python_text writes them '**')."""

    def peek(self, offset: int = 0) -> Token:
        return self.tokens[min(self.i + offset, len(self.tokens) - 1)]

    def at(self, *ops: str) -> bool:
        tok = self.peek()
        return tok.kind == "op" and tok.text in ops

    def take(self) -> Token:
        tok = self.peek()
        self.i += 1
        return tok

    def expect(self, op: str, hint: str) -> Token:
        if not self.at(op):
            tok = self.peek()
            found = "the end of the formula" if tok.kind == "end" else repr(tok.text)
            raise _Fail(tok.pos, f"expected {op!r} but found {found}", hint)
        return self.take()

    def enter(self, pos: int) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise _Fail(pos, f"the formula nests more than {MAX_DEPTH} levels deep", "simplify the formula")

    def leave(self) -> None:
        self.depth -= 1

    @staticmethod
    def limit(terms: set[frozenset[str]], pos: int) -> None:
        if len(terms) > MAX_TERMS:
            raise _Fail(pos, f"the formula expands to more than {MAX_TERMS} terms",
                        "write the interactions you need explicitly (a:b) instead of long products a*b*c*...")

    # formula level

    def sum(self) -> Terms:
        if self.at("+", "-"):
            self.take()
        out = set(self.product())
        while self.at("+", "-"):
            self.take()
            out |= self.product()
            self.limit(out, self.peek().pos)
        return frozenset(out)

    def product(self) -> Terms:
        left = self.inter()
        while self.at("*", "/"):
            op = self.take()
            right = self.inter()
            out = set(left)
            if op.text == "*":
                out |= right
                for a in left:
                    for b in right:
                        out.add(a | b)
                        self.limit(out, op.pos)
            else:
                whole = frozenset().union(*left)
                out |= {whole | b for b in right}
            self.limit(out, op.pos)
            left = frozenset(out)
        return left

    def inter(self) -> Terms:
        left = self.power()
        while self.at(":"):
            op = self.take()
            right = self.power()
            out: set[frozenset[str]] = set()
            for a in left:
                for b in right:
                    out.add(a | b)
                    self.limit(out, op.pos)
            left = frozenset(out)
        return left

    def power(self) -> Terms:
        first = self.i
        base = self.atom()
        if not self.at("**", "^"):
            return base
        op = self.take()
        tok = self.take()
        if tok.kind != "number" or not tok.text.isdigit() or not 1 <= int(tok.text) <= MAX_TERM_POWER:
            raise _Fail(tok.pos, f"the power of a term must be a whole number from 1 to {MAX_TERM_POWER}",
                        "write e.g. (a + b)**2 for all two-way interactions, or I(x**2) for a squared column")
        if len(base) == 1 and int(tok.text) > 1 and self.tokens[first].text != "(":
            shown = self.text[self.tokens[first].pos:op.pos].strip()
            raise _Fail(op.pos, f"'{shown}{op.text}{tok.text}' outside a function is an interaction power of one "
                                f"term, which is the term itself (R and formulaic drop the power)",
                        f"for the power write I({shown}^{tok.text}); "
                        "for interactions write e.g. (a + b)^2")
        out = set(base)
        for _ in range(int(tok.text) - 1):
            for a in list(out):
                for b in base:
                    out.add(a | b)
                    self.limit(out, op.pos)
        return frozenset(out)

    def atom(self) -> Terms:
        tok = self.peek()
        if self.at("("):
            self.enter(tok.pos)
            self.take()
            inner = self.sum()
            self.expect(")", "close every '(' with ')'")
            self.leave()
            return inner
        if tok.kind == "number":
            self.take()
            if tok.text not in ("0", "1"):
                raise _Fail(tok.pos, f"the number {tok.text!r} cannot be a term",
                            "a formula's numbers are 1 (intercept) and 0 or -1 (no intercept); "
                            "for arithmetic write I(...), e.g. I(2 * x)")
            return frozenset({frozenset()})
        key, _ = self.python_factor(top=True)
        return frozenset({frozenset({key})})

    # Python level (factors and function arguments); each rule returns whether it contains a power

    def python_factor(self, top: bool = False) -> tuple[str, bool]:
        """A column or a call: a key naming the factor (its tokens) and whether it contains a power."""
        tok = self.peek()
        first = self.i
        if tok.kind == "qname":
            self.take()
            self.columns.setdefault(tok.text)
            return f"`{tok.text}`", False
        if tok.kind == "name":
            self.check_name(tok)
            if self.peek(1).kind == "op" and self.peek(1).text == "(":
                powered = self.call(top)
                return " ".join(t.text for t in self.tokens[first:self.i]), powered
            self.take()
            self.columns.setdefault(tok.text)
            return tok.text, False
        found = "the end of the formula" if tok.kind == "end" else repr(tok.text)
        hint = ("write a category label only inside I(), compared with a column: I(item == 'defect')"
                if tok.kind == "string" else "write a column name, 1, 0 or a call such as C(item)")
        raise _Fail(tok.pos, f"expected a term but found {found}", hint)

    def check_name(self, tok: Token) -> None:
        """Refuse dunders, keywords, calls of functions outside the list and functions used as columns."""
        name = tok.text
        if "__" in name:
            raise _Fail(tok.pos, f"the name {name!r} holds '__' (dunder names are not allowed)",
                        "rename the column, or quote an odd column name in backticks")
        if keyword.iskeyword(name):
            raise _Fail(tok.pos, f"{name!r} is a Python keyword (lambdas, conditions and comprehensions are not allowed)",
                        "quote a column of that name in backticks, e.g. `" + name + "`")
        is_call = self.peek(1).kind == "op" and self.peek(1).text == "("
        if is_call and name not in ALLOWED_FUNCTIONS:
            raise _Fail(tok.pos, f"function {name!r} is not allowed",
                        "the allowed functions are " + ", ".join(ALLOWED_FUNCTIONS))
        if not is_call and name in ALLOWED_FUNCTIONS:
            raise _Fail(tok.pos, f"{name!r} is a function",
                        f"call it, e.g. {name}(x), or quote a column of that name: `{name}`")

    def call(self, top: bool) -> bool:
        name_tok = self.take()
        name = name_tok.text
        if name in ("C", "poly") and not top:
            raise _Fail(name_tok.pos, f"{name}(...) can only be a term of its own",
                        f"write {name}(...) as a separate term, e.g. y ~ x + {name}(z{', 2' if name == 'poly' else ''})")
        self.enter(name_tok.pos)
        self.take()  # "("
        outer, self.compare_ok = self.compare_ok, name == "I"
        powered = self.expr(allow_compare=self.compare_ok)
        self.compare_ok = outer
        if name == "poly" and self.at(","):
            self.take()
            if self.peek().kind == "name" and self.peek().text == "degree" and self.peek(1).text == "=":
                self.take()
                self.take()
            deg = self.take()
            if deg.kind != "number" or not deg.text.isdigit() or not 1 <= int(deg.text) <= MAX_POLY_DEGREE:
                raise _Fail(deg.pos, f"poly()'s degree must be a whole number from 1 to {MAX_POLY_DEGREE}",
                            "write e.g. poly(x, 2)")
        if self.at(",", "="):
            tok = self.peek()
            raise _Fail(tok.pos, f"{name}() takes one argument" + (" and a degree" if name == "poly" else ""),
                        f"write {name}(x)" + (" or poly(x, 2)" if name == "poly" else "")
                        + "; keyword arguments and extra arguments are not allowed")
        self.expect(")", f"write {name}(x) and close it with ')'")
        self.leave()
        return powered

    def expr(self, allow_compare: bool) -> bool:
        left_is_string, powered = self.compare_side()
        if self.at(*_CMP):
            op = self.take()
            if not allow_compare:
                raise _Fail(op.pos, f"the comparison {op.text!r} is only allowed directly inside I()",
                            "write e.g. I(item == 'defect') or I(x > 2)")
            right_is_string, right_powered = self.compare_side()
            powered = powered or right_powered
            if (left_is_string or right_is_string) and op.text not in ("==", "!="):
                raise _Fail(op.pos, f"a category label can only be compared with == or !=, not {op.text!r}",
                            "write e.g. I(item == 'defect')")
            if left_is_string and right_is_string:
                raise _Fail(op.pos, "two labels are compared with each other", "compare a column with a label")
            if self.at(*_CMP):
                raise _Fail(self.peek().pos, "chained comparisons are not allowed", "write one comparison per I()")
        elif left_is_string:
            raise _Fail(self.tokens[self.i - 1].pos, "a text label must be compared with a column",
                        "write e.g. I(item == 'defect'); text cannot be computed with")
        return powered

    def compare_side(self) -> tuple[bool, bool]:
        if self.peek().kind == "string" and not (self.peek(1).kind == "op" and self.peek(1).text in ("*", "+", "**", "/", "-")):
            self.take()
            return True, False
        return False, self.arith()

    def arith(self) -> bool:
        powered = self.mul()
        while self.at("+", "-"):
            self.take()
            powered = self.mul() or powered
        return powered

    def mul(self) -> bool:
        powered = self.unary()
        while self.at("*", "/"):
            self.take()
            powered = self.unary() or powered
        return powered

    def unary(self) -> bool:
        if self.at("+", "-"):
            tok = self.take()
            self.enter(tok.pos)
            powered = self.unary()
            self.leave()
            return powered
        powered = self.prim()
        if not self.at("**", "^"):
            return powered
        op = self.take()
        if op.text == "^":
            self.carets.append(op.pos)
        if powered:
            raise _Fail(op.pos, "powers cannot be nested", "write one power, e.g. I(x**4)")
        sign = self.take() if self.at("+", "-") else None
        tok = self.take()
        if tok.kind != "number" or float(tok.text) > MAX_EXPONENT:
            raise _Fail(tok.pos if sign is None else sign.pos,
                        f"the exponent must be a number from -{MAX_EXPONENT} to {MAX_EXPONENT}",
                        "write e.g. I(x**2) or I(x**-1)")
        if self.at("**", "^"):
            raise _Fail(self.peek().pos, "powers cannot be nested", "write one power, e.g. I(x**4)")
        return True

    def prim(self) -> bool:
        tok = self.peek()
        if tok.kind == "number":
            self.take()
            return False
        if self.at("("):
            self.enter(tok.pos)
            self.take()
            powered = self.expr(allow_compare=self.compare_ok)
            self.expect(")", "close every '(' with ')'")
            self.leave()
            return powered
        if tok.kind == "string":
            raise _Fail(tok.pos, "text is only allowed as a category label compared with a column",
                        "write e.g. I(item == 'defect'); text cannot be computed with")
        return self.python_factor()[1]


def check_formula(text: str, where: str, kind: Kind = "formula") -> ParsedFormula:
    """Check a formula's text against the grammar; SpecError `where: problem ...; hint` if it is not in the language.

    kind: "formula" (`fixed:`; the response on the left of ~ is optional), "one_sided" (`variance:`;
    nothing left of ~), "term" (a `structural.Gamma` covariate; no ~ at all).
    """
    if not isinstance(text, str):
        raise SpecError(f"{where}: expected a formula as text, got {type(text).__name__}; write e.g. \"y ~ x\"")
    if len(text) > MAX_LENGTH:
        raise SpecError(f"{where}: the formula is {len(text)} characters long, more than {MAX_LENGTH} "
                        f"(starts {excerpt(text[:80])}); shorten it, e.g. by deriving columns in the data")
    try:
        tokens = tokenize(text)
        parser = _Parser(tokens, text)
        response = _lhs(parser, kind)
        terms = parser.sum()
        tok = parser.peek()
        if tok.kind != "end":
            if tok.kind == "op" and tok.text == "~":
                raise _Fail(tok.pos, "the formula has more than one '~'", "write one response on the left: y ~ x")
            hint = ("comparisons are only allowed inside I(), e.g. I(x > 2)" if tok.text in _CMP
                    else "join terms with + - * / : and close every '(' with ')'")
            raise _Fail(tok.pos, f"unexpected {tok.text!r}", hint)
    except _Fail as fail:
        hint = random_hint(text) if text[fail.pos:fail.pos + 1] == "|" else None
        raise SpecError(f"{where}: {fail.problem} at character {fail.pos + 1} of formula "
                        f"{excerpt(text, fail.pos)}; {hint or fail.hint}") from None
    except RecursionError:  # pragma: no cover - MAX_DEPTH keeps the recursion far below Python's limit
        raise SpecError(f"{where}: the formula nests too deeply; simplify it") from None
    python = text
    for pos in reversed(parser.carets):
        python = python[:pos] + "**" + python[pos + 1:]
    return ParsedFormula(text, response, tuple(parser.columns), len(terms), python)


_BAR = re.compile(r"\(([^()|]*)\|\|?([^()|]*)\)")


def random_hint(text: str) -> str | None:
    """For an lme4-style `(1 + x | g)` term: the `random:` YAML that says the same (None if there is none)."""
    match = _BAR.search(text)
    if match is None:
        return None
    parts = [p.strip() for p in match.group(1).split("+") if p.strip()]
    terms = [p for p in parts if p not in ("0", "-1", "1")]
    if "0" not in parts and not any(p.startswith("-") for p in parts):
        terms.insert(0, "1")
    group = match.group(2).strip()
    name = re.sub(r"\W", "_", group) or "group"
    double = "||" in match.group(0)
    covariance = f", covariance: {'independent' if double else 'unstructured'}" if len(terms) > 1 else ""
    return (f"random effects go under `random:`, not into the formula: drop {match.group(0)!r} from it and write "
            f"`random: [{{level: {name}, terms: [{', '.join(terms)}]{covariance}}}]` with the level declared as "
            f"`levels: [{{name: {name}, id: {group}}}]`")


def _lhs(parser: _Parser, kind: Kind) -> str | None:
    """Consume `column ~` (or a leading `~`) as the kind allows; return the response column."""
    tilde = next((j for j, t in enumerate(parser.tokens) if t.kind == "op" and t.text == "~"), None)
    if tilde is None:
        return None
    tok = parser.tokens[tilde]
    if kind == "term":
        raise _Fail(tok.pos, "a covariate term cannot contain '~'", "write a column or a term such as age:bus")
    if tilde == 0:
        parser.take()
        return None
    if kind == "one_sided":
        raise _Fail(parser.tokens[0].pos, "this formula must be one-sided (no response left of '~')",
                    "write e.g. '~ x + C(item)'")
    first = parser.tokens[0]
    if tilde != 1 or first.kind not in ("name", "qname"):
        raise _Fail(first.pos, "the left of '~' must be the response column alone",
                    "write e.g. 'weight ~ week'; transform the response in the data")
    if first.kind == "name":
        parser.check_name(first)
    parser.i = 2
    return first.text

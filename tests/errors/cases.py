"""The table of error cases: one bad spec or data file per user-facing raise site, and what the CLI must say.

Adding a case is three lines: a name, the raise site it covers as (module under
mlmrun/, a literal fragment of that site's message), the spec (usually a base
below with one edit), where the message must point (`at`: the YAML path of the
offending key; `column`: the data column it names) and the hint it must give.

`covers` names the site by a fragment of its message's constant text; "@func"
names the message-less re-raise sites in function `func` (they add a location
to another error). tests/errors/test_raise_sites.py fails when a raise site
has no case, when a fragment matches no site or several, and when an exemption
goes stale; test_error_cases.py runs each case and checks exit 2, location,
fragment and hint in stderr.

`files` are written next to the spec (bytes as they are, FIFO as a named pipe);
`out=False` runs `fit` without --out, so the spec's `report.dir` is used;
`no_modules` are made unimportable for the run (an optional dependency missing).

`todo` (with `now_at`, the location the message has today, and/or `hint=None`)
records a message that is not yet where or what it should be, for the lead:
the owner is named, and the case tightens when the entry is removed.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from tests.conftest import SPECS

Loc = tuple[Any, ...]

FIFO = object()
"""A `files` value that makes a named pipe instead of a file."""


@dataclass(frozen=True)
class Case:
    """A bad input and what the CLI must answer."""

    id: str
    covers: tuple[tuple[str, str], ...]
    spec: str | None
    at: Loc | None = None
    column: str | None = None
    hint: str | None = None
    files: dict[str, str | bytes | object] = field(default_factory=dict)
    command: str = "validate"
    out: bool = True
    no_modules: tuple[str, ...] = ()
    exit_code: int = 2
    lines: tuple[int, ...] = ()
    now_at: Loc | None = None
    todo: str = ""


def edit(base: str, *pairs: str) -> str:
    """base with each (old, new) pair replaced once; an `old` that is not there is a mistake in the table."""
    assert len(pairs) % 2 == 0
    for old, new in zip(pairs[::2], pairs[1::2], strict=True):
        assert base.count(old) == 1, f"{old!r} occurs {base.count(old)} times in the base spec"
        base = base.replace(old, new)
    return base


def _pig_csv() -> str:
    """pig.csv plus a text column, two category columns, a column with a zero and an all-missing column."""
    lines = (SPECS / "data" / "pig.csv").read_text().splitlines()
    out = [lines[0] + ",label,half,third,zero,empty"]
    for i, line in enumerate(lines[1:]):
        pig = int(line.split(",")[0])
        out.append(f"{line},p{pig},{'ab'[pig % 2]},{'abc'[pig % 3]},{0 if i == 0 else 1},")
    return "\n".join(out) + "\n"


DATA_FILES = {"data/pig.csv": _pig_csv()}
"""Data written instead of the shipped file of the same name; other data/*.csv a spec names are copied."""

RESID = "compile/residuals.py"

PIG = """\
name: errors
data: {path: data/pig.csv}
levels:
  - {name: pig, id: id}
responses:
  - {name: weight, family: gaussian}
fixed: "weight ~ week"
random:
  - {level: pig, terms: [1, week]}
"""

def _pig_weights_csv() -> str:
    """pig.csv plus weight columns: pos (varies within pigs), one, neg (one negative), miss (one missing), zero, pen."""
    lines = (SPECS / "data" / "pig.csv").read_text().splitlines()
    out = [lines[0] + ",pos,one,neg,miss,zero,pen"]
    for i, line in enumerate(lines[1:]):
        pig = int(line.split(",")[0])
        out.append(f"{line},{1 + i % 3 * 0.5},1,{-1 if i == 3 else 1},{'' if i == 5 else 2},{0 if i == 0 else 1},{pig // 4}")
    return "\n".join(out) + "\n"


PIG_W = edit(PIG, "data/pig.csv", "data/pigw.csv") + "weights: {pweight: pos}\n"
DATA_FILES["data/pigw.csv"] = _pig_weights_csv()
WEIGHTS = "compile/weights.py"

PIG_UN = edit(PIG, "terms: [1, week]}", "terms: [1, week], covariance: unstructured}")

TWO_EQ = edit(PIG, "  - {name: weight, family: gaussian}\n",
              "  - {name: weight, family: gaussian, select: {third: [a]}}\n"
              "  - {name: weight, family: gaussian, select: {third: [b]}}\n")

ABORTION = """\
name: errors
data: {path: data/abortion_sim.csv}
levels:
  - {name: person, id: person}
  - {name: district, id: district}
responses:
  - {name: resp, family: binomial}
fixed: "resp ~ 0 + C(item)"
latent:
  - {name: general, level: person, loadings: {by: item, fix: {woman: 1}}}
  - {name: extreme, level: person, loadings: {by: item, only: [defect, risk, rape], fix: {defect: 1}}}
  - {name: general_district, level: district}
structural:
  B: {general: {general_district: 1}}
covariance: {person: independent}
"""

WINE = """\
name: errors
data: {path: data/wine.csv}
levels:
  - {name: judge, id: judge}
responses:
  - {name: rating, family: ordinal}
fixed: "rating ~ temp + contact"
random:
  - {level: judge, terms: [1]}
"""

CBPP = """\
name: errors
data: {path: data/cbpp.csv}
levels:
  - {name: herd, id: herd}
responses:
  - {name: incidence, family: binomial, trials: size}
fixed: "incidence ~ C(period)"
random:
  - {level: herd, terms: [1]}
estimation: {integration: {points: 5}}
"""

MRESP = """\
name: errors
data: {path: data/mresp.csv}
levels:
  - {name: id, id: id}
responses:
  - {name: y, family: gaussian, select: {itemgroup: [a]}}
  - {name: y, family: binomial, select: {itemgroup: [b]}}
fixed: "y ~ x"
latent:
  - {name: level, level: id, loadings: {by: itemgroup, fix: {a: 1}}}
"""

RANKING = """\
name: errors
data: {path: data/rankings_sim.csv}
levels:
  - {name: resp, id: resp}
responses:
  - name: rank
    family: ranking
    choice: {layout: per_alternative, alternatives: alt, set: resp, base: 1}
fixed: "rank ~ price + quality"
random:
  - {level: resp, terms: [price]}
"""

MULTINOMIAL = """\
name: errors
data: {path: data/multinomial_sim.csv}
responses:
  - name: choice
    family: multinomial
    choice: {layout: per_choice, alternatives: alt, base: A, case: "~ x + female"}
fixed: "choice ~ 0"
"""

SMALL_CHOICE = """\
name: errors
data: {path: data/small.csv}
responses:
  - name: chosen
    family: multinomial
    choice: {layout: per_alternative, alternatives: alt, set: id}
fixed: "chosen ~ price"
"""

CHOICE = "compile/choice.py"

CBPP_NPMLE = edit(CBPP, "terms: [1]}", "terms: [1], distribution: {discrete: 2}}")

LCA = """\
name: errors
data: {path: data/abortion_sim.csv}
levels:
  - {name: person, id: person}
  - {name: district, id: district}
responses:
  - {name: resp, family: binomial}
fixed: "resp ~ 0"
latent:
  - {name: class, level: person, classes: 2, loadings: {by: item}}
"""

DISCRETE = "compile/discrete.py"
INIT, DESIGN, LATENT, START = "compile/__init__.py", "compile/design.py", "compile/latent.py", "compile/start_from.py"
LOAD, LEVELS, RESHAPE, PLAN = "data/load.py", "data/levels.py", "data/reshape.py", "likelihood/quadrature/plan.py"
LOADER, MODEL, FAMILIES = "spec/loader.py", "spec/model.py", "families/families.py"
YAML, GRAMMAR, CHECKS, FILES = "spec/yaml_read.py", "spec/formula_grammar.py", "compile/spec_checks.py", "data/files.py"
DATA_CHECKS, ORDER, PREFLIGHT = "compile/data_checks.py", "compile/level_order.py", "likelihood/preflight.py"
ITEMS, MOMENTS = "compile/items.py", "likelihood/moments/checks.py"

HS = """\
name: errors
data:
  path: data/holzinger_swineford.csv
  stack: {columns: [x1, x2, x3, x4, x5, x6], item: test, value: score}
levels:
  - {name: child, id: id}
responses:
  - {name: score, family: gaussian, variance_by: test}
fixed: "score ~ 0 + C(test)"
latent:
  - {name: visual, level: child, loadings: {by: test, only: [x1, x2, x3], fix: {x1: 1}}}
  - {name: textual, level: child, loadings: {by: test, only: [x4, x5, x6], fix: {x4: 1}}}
"""

HS_RC = HS + "residual_covariances:\n  pairs:\n    - [x1, x4]\n"

HS_MISSING = "\n".join(ln if i % 7 != 3 else ",".join(ln.split(",")[:6] + [""] + ln.split(",")[7:])
                       for i, ln in enumerate((SPECS / "data" / "holzinger_swineford.csv").read_text().splitlines())) + "\n"
"""Holzinger-Swineford with x1 blanked on every 7th row (missing responses)."""
PIG_CSV = DATA_FILES["data/pig.csv"]
PIG_TEXT_COLUMN = "\n".join(f"{ln},{'t' if i == 0 else 'inf' if i == 1 else i % 7}"
                             for i, ln in enumerate(PIG_CSV.splitlines())).encode()
"""pig.csv plus column t: a number in every row, written as text ("inf" in the first) once stored as Parquet."""


def _parquet(csv: bytes, text_column: str) -> bytes:
    """csv as Parquet bytes, with `text_column` stored as text (Parquet keeps the type; CSV would make it numeric)."""
    frame = pd.read_csv(io.BytesIO(csv))
    frame[text_column] = frame[text_column].astype(str)
    buffer = io.BytesIO()
    frame.to_parquet(buffer)
    return buffer.getvalue()


PIG_PARQUET = _parquet(PIG_TEXT_COLUMN, "t")
PIG_SAME_NAME = "\n".join(f"{ln},{'sd(Residual)' if i == 0 else i % 7}" for i, ln in enumerate(PIG_CSV.splitlines())) + "\n"
"""pig.csv plus a varying column named like the residual SD parameter."""
WIDE_CSV = "id,week,weight,code\n" + "".join(f"{i // 9 + 1},{i % 9 + 1},{20 + i % 9 * 6.5 + i % 5},c{i}\n"
                                                  for i in range(1001))
"""1001 rows (pigs of 9 weeks) with a text column `code` holding 1001 distinct values: 1001 categories."""
PIG_T = edit(PIG, "data/pig.csv", "data/t.csv")
"""PIG reading data/t.csv, which a case supplies."""
GAMMA = ("  B: {general: {general_district: 1}}\n", "  B: {general: {general_district: 1}}\n  Gamma: {general: {TERM: free}}\n")


def gamma(term: str) -> str:
    """ABORTION with one structural.Gamma covariate term of `general`."""
    return edit(ABORTION, GAMMA[0], GAMMA[1].replace("TERM", term))



OVARY = """\
name: errors
data: {path: data/ovary.csv}
levels:
  - {name: mare, id: mare}
responses:
  - name: follicles
    family: gaussian
    residuals: {structure: ar, order: 2, time: time}
fixed: "follicles ~ sin1 + cos1"
random:
  - {level: mare, terms: [1]}
"""


def _ovary_csv(edit_row) -> str:
    """ovary.csv with `edit_row(i, fields)` applied to every data row (fields: mare, time, stime, follicles, sin1, cos1)."""
    lines = (SPECS / "data" / "ovary.csv").read_text().splitlines()
    out = [lines[0]]
    for i, line in enumerate(lines[1:]):
        fields = line.split(",")
        edit_row(i, fields)
        out.append(",".join(fields))
    return "\n".join(out) + "\n"


def _text_time(i: int, f: list[str]) -> None:
    f[1] = f'"t{f[1]}"'


def _text_mare(i: int, f: list[str]) -> None:
    f[0] = f'"m{f[0]}"'


def _even_time(i: int, f: list[str]) -> None:
    f[1] = str(2 * int(f[1]))


def _duplicate_time(i: int, f: list[str]) -> None:
    if i == 1:
        f[1] = "1"


CASES: list[Case] = [
    # --- spec/yaml_read.py and spec/loader.py: reading and schema -----------------------------------------
    Case("yaml_syntax", ((YAML, "); check indentation and quoting"),), PIG.replace("  - {name: pig, id: id}", "  - {name: pig, id: id"),
         lines=(4, 5), hint="check indentation and quoting", todo="YAML errors point past the flow mapping (5:10), where PyYAML notices it, not where it opens (4)"),
    Case("not_a_mapping", ((LOADER, "a spec must be a YAML mapping"),), "- a\n- b\n", at=(), hint="(name:, data:, responses:, fixed:, ...)"),
    Case("unreadable_spec", ((YAML, "cannot read spec ("),), None, hint="check the path (relative to the working directory)"),
    Case("spec_is_folder", ((YAML, "is a folder, not a spec file"),), None, files={"spec.yaml/x.yaml": PIG}, hint="name a .yaml file"),
    Case("spec_is_pipe", ((YAML, "is not a regular file (a pipe or a device?)"),), None, files={"spec.yaml": FIFO}, hint="name a .yaml file"),
    Case("spec_too_big", ((YAML, "@read_spec_text"),), None, files={"spec.yaml": PIG + "#" + "x" * (1 << 20) + "\n"},
         hint="a spec describes a model"),
    Case("spec_nul_bytes", ((YAML, "contains NUL bytes"),), None, files={"spec.yaml": PIG + "# \0\n"}, lines=(10,),
         hint="save the spec as UTF-8 text"),
    Case("spec_not_utf8", ((YAML, "not UTF-8 text (byte 0x"),), None, files={"spec.yaml": PIG.encode() + b"# caf\xe9\n"}, lines=(10,),
         hint="save the spec as UTF-8"),
    Case("spec_control_character", ((YAML, "is not allowed in YAML"),), PIG + "# \x07\n", lines=(10,),
         hint="remove it (or write it as an escape"),
    Case("yaml_duplicate_key", ((YAML, "@run"),), PIG + "name: again\n", lines=(10,), hint="keep one"),
    Case("yaml_two_documents", ((YAML, "@fail"),), PIG + "---\nname: other\n", lines=(10,), hint="put the second model in its own file"),
    Case("yaml_too_deep", ((YAML, "@parse_yaml"),), PIG + "x: " + "[" * 200 + "]" * 200 + "\n", lines=(10,), hint="a spec needs only a few levels"),
    Case("unknown_key", ((LOADER, "@validate_spec_dict"),), PIG + "estimation: {metod: ML}\n", at=("estimation", "metod"),
         hint="did you mean 'method'?"),
    Case("value_not_finite", ((MODEL, "is not a finite number"),), PIG + "constraints: {fix: {week: .inf}}\n",
         at=("constraints", "fix", "week"), hint="write a number such as 1 or 0.5"),
    Case("loadings_by_and_on", ((MODEL, "give exactly one of `by: COLUMN`"),),
         edit(ABORTION, "{by: item, fix: {woman: 1}}", "{fix: {woman: 1}}"), at=("latent", 0, "loadings"),
         hint="give exactly one of `by: COLUMN`"),
    # --- spec/formula_grammar.py ------------------------------------------------------------------------------
    Case("formula_too_long", ((GRAMMAR, "characters long, more than"),), edit(PIG, '"weight ~ week"', '"weight ~ week' + " + week" * 300 + '"'),
         at=("fixed",), hint="shorten it"),
    Case("formula_syntax", ((GRAMMAR, "at character \x00 of formula"),), edit(PIG, '"weight ~ week"', '"weight ~ (week"'), at=("fixed",),
         hint="close every '(' with ')'"),
    # --- compile/spec_checks.py: cross-references, each at its key ------------------------------------------
    Case("duplicate_level_names", ((CHECKS, "is already used by levels."),),
         edit(ABORTION, "{name: district, id: district}", "{name: person, id: district}"), at=("levels", 1, "name"),
         hint="give every level its own name"),
    Case("random_undeclared_level", ((CHECKS, "is not declared under `levels:`"),), edit(PIG, "{level: pig,", "{level: pigs,"),
         at=("random", 0, "level"), hint="did you mean 'pig'?"),
    Case("latent_undeclared_level", ((CHECKS, "is not declared under `levels:`"),),
         edit(ABORTION, "level: district}", "level: county}"), at=("latent", 2, "level"), hint="declared levels are"),
    Case("covariance_undeclared_level", ((CHECKS, "is not declared under `levels:`"),),
         edit(ABORTION, "covariance: {person: independent}", "covariance: {persons: independent}"),
         at=("covariance", "persons"), hint="did you mean 'person'?"),
    Case("duplicate_latent_names", ((CHECKS, "give every latent variable its own name"),),
         edit(ABORTION, "{name: extreme,", "{name: general,", "only: [defect, risk, rape], fix: {defect: 1}", "only: [defect], fix: {defect: 1}"),
         at=("latent", 1, "name"), hint="give every latent variable its own name"),
    Case("latent_named_like_random_term", ((CHECKS, "is also the name of a term of"),),
         PIG + "latent:\n  - {name: week, level: pig, loadings: {on: [week]}}\n", at=("latent", 0, "name"),
         hint="rename the latent variable"),
    Case("structural_unknown_outcome", ((CHECKS, "is not a latent variable; "),),
         edit(ABORTION, "B: {general:", "B: {generic:"), at=("structural", "B", "generic"), hint="did you mean 'general'?"),
    Case("structural_unknown_predictor", ((CHECKS, "is not a latent variable; "),),
         edit(ABORTION, "{general_district: 1}}", "{district: 1}}"), at=("structural", "B", "general", "district"),
         hint="did you mean 'general_district'?"),
    Case("several_equations_without_select", ((CHECKS, "each needs `select: {column: [values]}`"),),
         edit(MRESP, "family: binomial, select: {itemgroup: [b]}", "family: binomial"), at=("responses", 1),
         hint="`select: {column: [values]}`"),
    Case("several_response_columns", ((CHECKS, "must name the same response column"),),
         edit(MRESP, "{name: y, family: binomial", "{name: x, family: binomial"), at=("responses", 1, "name"),
         hint="stack the data so one column holds every response"),
    Case("structural_cycle", ((CHECKS, "B has a cycle"),),
         edit(ABORTION, "B: {general: {general_district: 1}}", "B: {general: {extreme: 1}, extreme: {general: 1}}"),
         at=("structural", "B", "extreme", "general"), hint="B must be recursive"),
    Case("random_term_twice", ((CHECKS, "is listed twice (also item"),), edit(PIG, "terms: [1, week]", "terms: [1, week, week]"),
         at=("random", 0, "terms", 2), hint="remove the repeat"),
    Case("loadings_equal_single", ((CHECKS, "needs at least two loadings to set equal"),),
         edit(ABORTION, "fix: {woman: 1}}", "fix: {woman: 1}, equal: [[risk]]}"), at=("latent", 0, "loadings", "equal", 0),
         hint="name two or more, or drop the group"),
    Case("loadings_equal_twice", ((CHECKS, "is already in equal."),),
         edit(ABORTION, "fix: {woman: 1}}", "fix: {woman: 1}, equal: [[risk, rape], [rape, defect]]}"),
         at=("latent", 0, "loadings", "equal", 1, 0), hint="list each loading in one group only"),
    # --- data/files.py, data/load.py, data/reshape.py, data/levels.py, pipeline.py ------------------------------
    Case("data_file_missing", ((FILES, "not found: \x00 (no file there"), ("pipeline.py", "@prepare")),
         edit(PIG, "data/pig.csv", "data/pigs.csv"), at=("data", "path"), hint="paths are relative to the spec file's folder"),
    Case("data_file_empty", ((FILES, "is empty (0 bytes)"),), PIG_T, at=("data", "path"), files={"data/t.csv": ""},
         hint="name a file with a header row and data rows"),
    Case("data_file_is_folder", ((FILES, "is a folder, not a file"),), PIG_T, at=("data", "path"), files={"data/t.csv/x.csv": ""},
         hint="name a file inside it"),
    Case("data_file_is_pipe", ((FILES, "is not a regular file (a pipe, device or socket)"),), PIG_T, at=("data", "path"),
         files={"data/t.csv": FIFO}, hint="name a file"),
    Case("data_path_too_long", ((FILES, "cannot read \x00: \x00"),), edit(PIG, "data/pig.csv", "data/" + "p" * 300 + ".CSV"),
         at=("data", "path"), hint="check the name and that the file can be read"),
    Case("data_path_unusable", ((FILES, "cannot use the path"),), edit(PIG, "data/pig.csv", '"data/p\\0ig.csv"'),
         at=("data", "path"), hint="write a plain relative path such as data/NAME.csv"),
    Case("data_outside_folder", ((FILES, "is outside the spec's folder"),), edit(PIG, "data/pig.csv", "../pig.csv"),
         at=("data", "path"), hint="put the file inside it"),
    Case("data_hidden_file", ((FILES, "is or lies in a hidden file or folder"),), edit(PIG, "data/pig.csv", "data/.pig.csv"),
         at=("data", "path"), hint="move the file to a visible folder"),
    Case("data_extension", ((FILES, "files here (any case); rename or convert the file"),), edit(PIG, "data/pig.csv", "data/pig.txt"),
         at=("data", "path"), files={"data/pig.txt": PIG_CSV}, hint="rename or convert the file"),
    Case("data_parquet_without_pyarrow", ((LOAD, "needs the pyarrow package, which is not installed"),),
         edit(PIG, "data/pig.csv", "data/t.parquet"), at=("data", "path"), files={"data/t.parquet": PIG_PARQUET},
         no_modules=("pyarrow", "fastparquet"), hint="or save the data as CSV"),
    Case("data_no_header", ((LOAD, "has no header row (no columns)"),), PIG_T, at=("data", "path"), files={"data/t.csv": "\n\n"},
         hint="the first line must name the columns"),
    Case("data_not_utf8", ((LOAD, "is not UTF-8 text (undecodable byte"),), PIG_T, at=("data", "path"),
         files={"data/t.csv": b"id,week,weight\n1,1,\xff\n"}, hint="save it as UTF-8"),
    Case("data_malformed", ((LOAD, "cannot read \x00 as \x00: "),), PIG_T, at=("data", "path"),
         files={"data/t.csv": 'id,week,weight\n"1,1,2\n'}, hint="save it as valid csv"),
    Case("data_header_only", ((LOAD, "has a header (\x00) but no data rows"),), PIG_T, at=("data", "path"),
         files={"data/t.csv": "id,week,weight\n"}, hint="add data rows"),
    Case("filter_column_missing", ((LOAD, "is not in the data; \x00"),),
         edit(PIG, "data/pig.csv}", "data/pig.csv, filter: [{column: wek, op: '>', value: 1}]}"), at=("data", "filter", 0),
         column="wek", hint="columns are"),
    Case("filter_type_mismatch", ((LOAD, "cannot compare a column of type"),),
         edit(PIG, "data/pig.csv}", "data/pig.csv, filter: [{column: label, op: '>', value: 3}]}"), at=("data", "filter", 0),
         column="label", hint="compare a text column with == or !="),
    Case("filter_no_rows", ((LOAD, "no row satisfies every filter"),),
         edit(PIG, "data/pig.csv}", "data/pig.csv, filter: [{column: week, op: '>', value: 100}]}"), at=("data", "filter"),
         hint="relax the filters"),
    Case("stack_missing_column", ((RESHAPE, "not in the data; \x00"),),
         edit(PIG, "data/pig.csv}", "data/pig.csv, stack: {columns: [wek], item: item, value: y}}"), at=("data", "stack", "columns"),
         column="wek", hint="columns are"),
    Case("stack_existing_column", ((RESHAPE, "stacking would create column"),),
         edit(PIG, "data/pig.csv}", "data/pig.csv, stack: {columns: [week], item: weight, value: y}}"), at=("data", "stack"),
         column="weight", hint="choose another name"),
    Case("levels_not_nested", ((LEVELS, "is not nested in level"),),
         edit(PIG, "  - {name: pig, id: id}\n", "  - {name: occasion, id: week}\n  - {name: pig, id: id}\n"),
         at=("levels", 0, "id"), column="week", hint="within_parent: true"),
    # --- compile/level_order.py, compile/data_checks.py ----------------------------------------------------------
    Case("levels_highest_first", ((ORDER, "levels go lowest first"),),
         edit(ABORTION, "  - {name: person, id: person}\n  - {name: district, id: district}\n",
              "  - {name: district, id: district}\n  - {name: person, id: person}\n"), at=("levels", 0),
         hint="list them lowest first"),
    Case("level_one_unit_per_parent", ((ORDER, "holds exactly one"),),
         edit(PIG, "  - {name: pig, id: id}\n", "  - {name: pig, id: id}\n  - {name: owner, id: label}\n")
         + "  - {level: owner, terms: [1]}\n", at=("levels", 1, "id"), hint="check the id column or drop the level"),
    Case("no_rows_left", ((DATA_CHECKS, "no rows left after dropping rows with a missing value"), ("pipeline.py", "@_located")),
         edit(PIG, '"weight ~ week"', '"weight ~ empty"'), at=("data",), column="empty",
         hint="fill in the missing values or drop those columns"),
    Case("covariate_infinite", ((DATA_CHECKS, "@check_finite"),), PIG_T, at=("fixed",), column="week",
         files={"data/t.csv": PIG_CSV.replace("\n1,1,", "\n1,inf,", 1)}, hint="remove or recode them"),
    Case("covariate_stray_text", ((DATA_CHECKS, "@check_stray_text"),), PIG_T, at=("fixed",), column="week",
         files={"data/t.csv": PIG_CSV.replace("\n1,1,", "\n1,abc,", 1)}, hint="fix those cells"),
    Case("offset_not_numeric", ((DATA_CHECKS, "must be numeric; \x00 of its values"),),
         edit(PIG, "family: gaussian}", "family: gaussian, offset: label}"), at=("responses", 0, "offset"), column="label",
         hint="recode the column as numbers"),
    Case("offset_text_infinite", ((DATA_CHECKS, "infinite values; remove or recode them"),),
         edit(PIG, "data/pig.csv", "data/t.parquet", "family: gaussian}", "family: gaussian, offset: t}"),
         files={"data/t.parquet": PIG_PARQUET}, at=("responses", 0, "offset"), column="t", hint="remove or recode them"),
    Case("single_unit_level", ((DATA_CHECKS, "has a single unit in the rows used"),),
         edit(PIG, "data/pig.csv}", "data/pig.csv, filter: [{column: id, op: '==', value: 1}]}"), at=("levels", 0, "id"),
         hint="use data with several units or drop the level's random effects"),
    # --- compile/__init__.py --------------------------------------------------------------------------------
    Case("variance_formula_function", ((GRAMMAR, "at character \x00 of formula"),),
         edit(PIG, "family: gaussian}", "family: gaussian, variance: '~ open(week)'}"), at=("responses", 0, "variance"),
         hint="the allowed functions are"),
    Case("variance_formula_two_sided", ((GRAMMAR, "at character \x00 of formula"),),
         edit(PIG, "family: gaussian}", "family: gaussian, variance: 'weight ~ week'}"), at=("responses", 0, "variance"),
         hint="e.g. '~ x + C(item)'"),
    Case("variance_design_fails", ((DESIGN, "cannot build the design from"),),
         edit(PIG, "family: gaussian}", "family: gaussian, variance: '~ log(week - 3)'}"), at=("responses", 0, "variance"),
         hint="log() needs positive values"),
    Case("variance_only_intercept", ((INIT, "has no terms besides the intercept"),),
         edit(PIG, "family: gaussian}", "family: gaussian, variance: '~ 1'}"), at=("responses", 0, "variance"),
         hint="drop `variance:` or give it a covariate"),
    Case("variance_collinear", ((INIT, "are collinear with the constant"),),
         edit(PIG, "family: gaussian}", "family: gaussian, variance: '~ 0 + C(half)'}"), at=("responses", 0, "variance"),
         hint="write the formula with an intercept"),
    Case("formula_response_differs", ((INIT, "differs from responses[0].name"),), edit(PIG, '"weight ~ week"', '"week ~ weight"'),
         at=("fixed",), hint="make them the same column"),
    Case("column_not_in_data", ((INIT, "@_check_columns"),), edit(PIG, '"weight ~ week"', '"weight ~ wek"'), at=("fixed",),
         column="wek", hint="did you mean 'week'?"),
    Case("link_not_for_family", ((INIT, "@_equations"),), edit(PIG, "family: gaussian}", "family: gaussian, link: logit}"),
         at=("responses", 0), hint="allowed links: identity, log"),
    Case("variance_for_binomial", ((INIT, "is only for the gaussian family"),),
         edit(CBPP, "trials: size}", "trials: size, variance: '~ size'}"), at=("responses", 0, "variance"),
         hint="drop `variance:` or use family: gaussian"),
    Case("variance_and_variance_by", ((INIT, "give either variance_by"),),
         edit(PIG, "family: gaussian}", "family: gaussian, variance_by: half, variance: '~ C(half)'}"), at=("responses", 0),
         hint="'~ C(col)' is the formula form of variance_by: col"),
    Case("select_overlap", ((INIT, "overlaps an earlier equation"),), edit(TWO_EQ, "select: {third: [b]}", "select: {third: [b, a]}"),
         at=("responses", 1, "select"), hint="make the `select:` lists disjoint"),
    Case("select_no_rows", ((INIT, "equation selects no rows"),), edit(TWO_EQ, "select: {third: [b]}", "select: {third: [z]}"),
         at=("responses", 1, "select"), hint="list values its `select:` columns have"),
    Case("ordinal_value_not_in_categories", ((INIT, "ordinal response column"),),
         edit(WINE, "family: ordinal}", "family: ordinal, categories: [1, 2, 3, 4]}"), at=("responses", 0, "categories"),
         column="rating", hint="add them to `categories:`"),
    Case("response_not_numeric", ((INIT, "must be numeric for family"),),
         edit(PIG, '"weight ~ week"', '"label ~ week"', "{name: weight,", "{name: label,"), at=("responses", 0),
         column="label", hint="recode it as numbers, or use family: ordinal"),
    Case("trials_not_binomial", ((INIT, "trials is only for the binomial family"),),
         edit(CBPP, "family: binomial, trials: size}", "family: poisson, trials: size}"), at=("responses", 0, "trials"),
         hint="drop `trials:` or use family: binomial"),
    Case("exposure_not_positive", ((INIT, "must be positive"),),
         edit(CBPP, "family: binomial, trials: size}", "family: poisson, exposure: size}", "data/cbpp.csv", "data/cbpp0.csv"),
         files={"data/cbpp0.csv": (SPECS / "data" / "cbpp.csv").read_text().replace('"1",2,14,"1"', '"1",2,0,"1"')},
         at=("responses", 0, "exposure"), column="size", hint="drop those rows with data.filter"),
    Case("family_rejects_response", ((INIT, ", column '"), (FAMILIES, "rows do not; first rows (0-based)")),
         edit(PIG, "family: gaussian}", "family: binomial}"), at=("responses", 0), column="weight", hint="must be 0 or 1"),
    Case("ordinal_single_category", ((FAMILIES, "needs at least 2 categories"),),
         edit(WINE, "data/wine.csv}", "data/wine.csv, filter: [{column: rating, op: '==', value: 1}]}"), at=("responses", 0),
         column="rating", hint="check data.filter and the column"),
    Case("ordinal_code_unobserved", ((FAMILIES, "with every category observed"),),
         edit(WINE, "data/wine.csv}", "data/wine.csv, filter: [{column: rating, op: '!=', value: 3}]}",
              "family: ordinal}", "family: ordinal, categories: [1, 2, 3, 4, 5]}"), at=("responses", 0),
         column="rating", hint="drop empty categories from `categories:`", now_at=("responses", 0, "categories"),
         todo="families.py reports codes (0-based) at responses.0; compile's own 'never occur' check (labels, at "
              "responses.0.categories) should run first"),
    Case("ordinal_category_never_occurs", ((INIT, "never occur, so their thresholds are not identified"),),
         edit(WINE, "family: ordinal}", "family: ordinal, categories: [1, 2, 3, 4, 5, 6]}"), at=("responses", 0, "categories"),
         hint="drop them from `categories:`"),
    Case("rows_in_no_equation", ((INIT, "rows are selected by no response equation"),), TWO_EQ, at=("responses",),
         hint="extend the `select:` lists"),
    Case("ordinal_design_spans_constant", ((INIT, "add up to a constant, which the ordinal thresholds"),),
         edit(WINE, '"rating ~ temp + contact"', '"rating ~ 0 + contact"'), at=("fixed",),
         hint="write the formula with an intercept"),
    Case("constraint_unknown_parameter", ((INIT, "is not a parameter; "),), PIG + "constraints: {fix: {wek: 0}}\n",
         at=("constraints", "fix", "wek"), hint="did you mean 'week'?"),
    Case("start_negative_sd", ((INIT, "start it at a positive value"),), PIG + "estimation: {start: {sd(Residual): -1}}\n",
         at=("estimation", "start", "sd(Residual)"), hint="start it at a positive value (e.g. 1)"),
    Case("start_out_of_range", ((INIT, "must start strictly between"),),
         PIG_UN + 'estimation: {start: {"corr(week,_cons)@pig": 2}}\n', at=("estimation", "start", "corr(week,_cons)@pig"),
         hint="start it inside that range"),
    Case("start_thresholds_decrease", ((INIT, "thresholds must increase"),), WINE + "estimation: {start: {cut1: 2, cut2: 1}}\n",
         at=("estimation", "start", "cut2"), hint="start them in increasing order"),
    Case("constraint_negative_sd", ((INIT, "is a standard deviation or shape; fix it"),), PIG + "constraints: {fix: {sd(Residual): -1}}\n",
         at=("constraints", "fix", "sd(Residual)"), hint="fix it at a value >= 0"),
    Case("constraint_correlation_range", ((INIT, "is a correlation; fix it in [-1, 1]"),),
         PIG_UN + 'constraints: {fix: {"corr(week,_cons)@pig": 2}}\n', at=("constraints", "fix", "corr(week,_cons)@pig"),
         hint="fix it in [-1, 1]"),
    Case("constraint_equal_single", ((INIT, "needs at least two parameters"),), PIG + "constraints: {equal: [[week]]}\n",
         at=("constraints", "equal", 0), hint="name two or more, or drop the group"),
    Case("constraint_equal_mixed_kinds", ((INIT, "mixes parameters of different kinds"),),
         PIG + "constraints: {equal: [[week, sd(Residual)]]}\n", at=("constraints", "equal", 0),
         hint="group parameters of one kind"),
    Case("constraint_equal_fixed", ((INIT, "are fixed; free them"),),
         PIG + "constraints: {fix: {week: 1}, equal: [[week, Intercept]]}\n", at=("constraints", "equal", 0, 0),
         hint="fix the whole group with constraints.fix"),
    Case("parameter_name_twice", (("compile/partable.py", "two parameters would both be named"),),
         edit(PIG_T, '"weight ~ week"', '"weight ~ week + `sd(Residual)`"'), files={"data/t.csv": PIG_SAME_NAME},
         at=("fixed",), hint="rename one of them", now_at=(),
         todo="compile/partable.py: the parameter table does not know which key added the name, so this lands at 1:1"),
    Case("ordinal_with_intercept", ((INIT, "ordinal models have thresholds instead of an intercept"),),
         edit(TWO_EQ, "{name: weight, family: gaussian, select: {third: [a]}}", "{name: weight, family: ordinal, select: {third: [a, c]}}"),
         at=("fixed",), hint="write the formula with `0 +`"),
    # --- compile/design.py ----------------------------------------------------------------------------------
    Case("formula_node_not_allowed", ((GRAMMAR, "at character \x00 of formula"),),
         edit(PIG, '"weight ~ week"', '"weight ~ week.__class__"'), at=("fixed",), hint="name columns directly"),
    Case("formula_function_not_allowed", ((GRAMMAR, "at character \x00 of formula"),),
         edit(PIG, '"weight ~ week"', '"weight ~ open(week)"'), at=("fixed",), hint="the allowed functions are"),
    Case("fixed_term_infinite", ((DESIGN, "are infinite or undefined on some rows"),),
         edit(PIG, '"weight ~ week"', '"weight ~ log(zero)"'), at=("fixed",), hint="transform the column so it stays finite"),
    Case("fixed_design_too_many_categories", ((DESIGN, "more than the budget of \x00; column"),),
         edit(PIG_T, '"weight ~ week"', '"weight ~ week + code"'), at=("fixed",), column="code",
         files={"data/t.csv": WIDE_CSV}, hint="If it holds numbers, fix the cells that are not"),
    Case("fixed_design_too_wide", ((DESIGN, "the design has \x00 columns, more than the budget"),),
         edit(PIG_T, '"weight ~ week"', '"weight ~ 0 + C(code)"'), at=("fixed",), files={"data/t.csv": WIDE_CSV},
         hint="use fewer categories"),
    Case("fixed_design_rank_deficient", ((DESIGN, "are collinear (rank deficient)"),),
         edit(PIG, '"weight ~ week"', '"weight ~ week + I(2 * week)"'), at=("fixed",), hint="drop or recode a term"),
    # --- compile/latent.py ----------------------------------------------------------------------------------
    Case("random_term_not_numeric", ((LATENT, "must be numeric (found"),), edit(PIG, "terms: [1, week]", "terms: [1, label]"),
         at=("random", 0, "terms", 1), column="label", hint="use `by:` loadings for categories"),
    Case("random_term_twice_at_level", ((LATENT, "appears twice at level"),), PIG + "  - {level: pig, terms: [week]}\n",
         at=("random", 1, "terms", 0), hint="list each term once per level"),
    Case("covariance_fix_negative", ((LATENT, "variances must be >= 0"),),
         edit(ABORTION, "covariance: {person: independent}", "covariance: {person: {type: independent, fix: {var(extreme): -1}}}"),
         at=("covariance", "person", "fix", "var(extreme)"), hint="fix it at 0 or more"),
    Case("covariance_fix_not_understood", ((LATENT, "not understood; write 'var(NAME): value'"),),
         edit(ABORTION, "covariance: {person: independent}", 'covariance: {person: {fix: {"cov(general,extreme)": 0}}}'),
         at=("covariance", "person", "fix", "cov(general,extreme)"), hint="write 'var(NAME): value'"),
    Case("loadings_only_not_categories", ((LATENT, "not categories of"),),
         edit(ABORTION, "only: [defect, risk, rape]", "only: [defect, risk, rapes]"), at=("latent", 1, "loadings", "only", 2),
         column="item", hint="its categories are"),
    Case("loading_fix_unknown", ((LATENT, "is not among its loadings"),), edit(ABORTION, "fix: {woman: 1}", "fix: {women: 1}"),
         at=("latent", 0, "loadings", "fix", "women"), hint="did you mean 'woman'?"),
    Case("b_to_lower_level", ((LATENT, "can only be regressed on latent variables at the same or a higher level"),),
         edit(ABORTION, "B: {general: {general_district: 1}}", "B: {general: {general_district: 1}, general_district: {extreme: free}}"),
         at=("structural", "B", "general_district", "extreme"),
         hint="reverse the arrow"),
    Case("gamma_term_not_allowed", ((INIT, "@used_columns"),), gamma("open(wave)"), at=("structural", "Gamma", "general", "open(wave)"),
         hint="the allowed functions are"),
    Case("gamma_term_infinite", ((LATENT, "@_covariate"),), gamma("log(wave - 1)"), at=("structural", "Gamma", "general", "log(wave - 1)"),
         hint="transform the column so it stays finite"),
    Case("gamma_term_expands", ((LATENT, "expands to"),), gamma("C(wave)"),
         at=("structural", "Gamma", "general", "C(wave)"), hint="give numeric terms one at a time"),
    Case("loadings_all_fixed_zero", ((LATENT, "every loading is fixed at zero"),),
         edit(ABORTION, "only: [defect, risk, rape], fix: {defect: 1}", "only: [defect], fix: {defect: 0}"),
         at=("latent", 1), hint="free a loading or remove it"),
    Case("latent_without_role", ((LATENT, "has no loadings and no role in structural.B"),),
         edit(ABORTION, "  B: {general: {general_district: 1}}\n", "  B: {}\n"), at=("latent", 2),
         hint="give it loadings or use it as a predictor in B"),
    Case("latent_without_scale", ((LATENT, "has no fixed scale"),), edit(ABORTION, "{by: item, fix: {woman: 1}}", "{by: item}"),
         at=("latent", 0), hint="Fix one loading"),
    # --- compile/start_from.py ------------------------------------------------------------------------------
    Case("start_from_outside", ((START, "@apply_start_from"),), PIG + "estimation: {start_from: ../old.json}\n",
         at=("estimation", "start_from"), hint="put the file inside it"),
    Case("start_from_missing", ((START, "@apply_start_from"),), PIG + "estimation: {start_from: old.json}\n",
         at=("estimation", "start_from"), hint="paths are relative to the spec file's folder"),
    Case("start_from_not_utf8", ((START, "(it is not UTF-8 text)"),), PIG + "estimation: {start_from: old.json}\n",
         files={"old.json": b'{"parameters": "\xff"}'}, at=("estimation", "start_from"), hint="a 'parameters' list of {name, estimate}"),
    Case("start_from_invalid_json", ((START, "(invalid JSON at line"),), PIG + "estimation: {start_from: old.json}\n",
         files={"old.json": "{"}, at=("estimation", "start_from"), hint="a 'parameters' list of {name, estimate}"),
    Case("start_from_too_deep", ((START, "(nested too deeply)"),), PIG + "estimation: {start_from: old.json}\n",
         files={"old.json": "[" * 100000 + "]" * 100000}, at=("estimation", "start_from"), hint="a 'parameters' list of {name, estimate}"),
    Case("start_from_not_results", ((START, "(no 'parameters' list)"),), PIG + "estimation: {start_from: old.json}\n",
         files={"old.json": '{"loglik": -1}'}, at=("estimation", "start_from"), hint="a 'parameters' list of {name, estimate}"),
    Case("start_from_bad_entry", ((START, "needs a text 'name' and a numeric 'estimate'"),), PIG + "estimation: {start_from: old.json}\n",
         files={"old.json": '{"parameters": [{"name": 1, "estimate": 1}]}'}, at=("estimation", "start_from"),
         hint="needs a text 'name' and a numeric 'estimate'"),
    Case("start_from_names_nothing", ((START, "names none of this model's free parameters"),),
         PIG + "estimation: {start_from: old.json}\n", files={"old.json": '{"parameters": [{"name": "zzz", "estimate": 1}]}'},
         at=("estimation", "start_from"), hint="sd(Residual)"),
    # --- likelihood/quadrature/plan.py and likelihood/preflight.py (checked by validate) ------------------------------------
    Case("crossed_level_non_gaussian", ((PLAN, "which nested quadrature cannot integrate"),),
         edit(CBPP, "{name: herd, id: herd}", "{name: herd, id: herd, crossed: true}"), at=("levels", 0, "crossed"),
         hint="drop `crossed: true`"),
    Case("laplace_with_points", ((PLAN, "laplace uses one adaptive point per dimension"),),
         edit(CBPP, "{integration: {points: 5}}", "{integration: {method: laplace, points: 5}}"),
         at=("estimation", "integration", "points"), hint="drop `points`"),
    Case("laplace_with_check_points", ((PLAN, "the Laplace approximation has no points to vary"),),
         edit(CBPP, "{integration: {points: 5}}", "{integration: {method: laplace}, check_points: [5]}"),
         at=("estimation", "check_points"), hint="use `method: adaptive`"),
    Case("points_unknown_level", ((PLAN, "give points for the levels with latent variables"),),
         edit(CBPP, "{points: 5}", "{points: {herds: 5}}"), at=("estimation", "integration", "points", "herds"), hint="['herd']"),
    Case("adapt_mean_one_point", ((PLAN, "`mean` places nodes from posterior moments"),),
         edit(CBPP, "{points: 5}", "{points: 1, adapt: mean}"), at=("estimation", "integration", "adapt"), hint="use `adapt: mode`"),
    Case("points_zero", ((PLAN, "need at least 1 point per dimension"),), edit(CBPP, "{points: 5}", "{points: 0}"),
         at=("estimation", "integration", "points"), hint="write 1 or more"),
    Case("points_zero_at_level", ((PLAN, "need at least 1 point per dimension"),), edit(CBPP, "{points: 5}", "{points: {herd: 0}}"),
         at=("estimation", "integration", "points", "herd"), hint="write 1 or more"),
    Case("check_points_unknown_level", ((PLAN, "is not a level with latent variables"),),
         edit(CBPP, "{integration: {points: 5}}", "{integration: {points: 5}, check_points: [{herds: 7}]}"),
         at=("estimation", "check_points", 0, "herds"), hint="give points for ['herd']"),
    Case("check_points_zero", ((PLAN, "need at least 1 point per dimension"),),
         edit(CBPP, "{integration: {points: 5}}", "{integration: {points: 5}, check_points: [0]}"),
         at=("estimation", "check_points", 0), hint="write 1 or more"),
    Case("memory_over_budget", ((PLAN, "or raise the budget"),),
         edit(CBPP, "{integration: {points: 5}}", "{integration: {points: 5}, memory_budget_gib: 0.000001}"),
         at=("estimation", "integration", "points"), hint="or raise the budget"),
    Case("memory_beyond_any_machine", ((PLAN, "more memory than any machine has"),),
         edit(ABORTION, "covariance: {person: independent}", "covariance: {person: independent}\nestimation: {integration: {points: 20000}}"),
         at=("estimation", "integration", "points"), hint="lower the points"),
    Case("reml_non_gaussian", ((PREFLIGHT, "REML is only defined for linear Gaussian models fitted exactly"),),
         CBPP.replace("estimation: {integration: {points: 5}}", "estimation: {method: REML, integration: {points: 5}}"),
         at=("estimation", "method"), hint="write `method: ML`"),
    # --- cli.py: report.dir through `mlmrun fit` without --out ---------------------------------------------------
    Case("report_dir_outside", (("runner.py", "is outside the working directory and the spec's folder"),),
         PIG + "report: {dir: ../../elsewhere}\n", command="fit", out=False, at=("report", "dir"), hint="choose the folder with --out"),
    Case("report_dir_unusable", (("runner.py", "is not a usable folder name"),), PIG + 'report: {dir: "reports/a\\0b"}\n',
         command="fit", out=False, at=("report", "dir"), hint="write a plain relative folder such as reports/NAME"),
    # --- issue 10 (nominal branch): ordinal thresholds and scale ------------------------------------------------
    Case("ordinal_thresholds_no_terms", (("compile/ordinal_ext.py", "has no terms besides the intercept"),),
         edit(WINE, "family: ordinal}", "family: ordinal, thresholds: '~ 1'}"), at=("responses", 0, "thresholds"),
         hint="drop `thresholds:` or give it a covariate"),
    Case("ordinal_scale_collinear", (("compile/ordinal_ext.py", "are collinear with the constant or each other"),),
         edit(WINE, "family: ordinal}", "family: ordinal, scale: '~ 0 + temp'}"), at=("responses", 0, "scale"),
         hint="write the formula with an intercept"),
    Case("thresholds_for_gaussian", ((INIT, "is only for the ordinal family"),),
         edit(PIG, "family: gaussian}", "family: gaussian, thresholds: '~ week'}"), at=("responses", 0, "thresholds"),
         hint="use family: ordinal"),
    # --- issue 10 (nominal branch): multinomial and ranking responses ------------------------------------------
    Case("choice_block_missing", ((CHOICE, "needs a `choice:` block"),),
         edit(RANKING, "    choice: {layout: per_alternative, alternatives: alt, set: resp, base: 1}\n", ""),
         at=("responses", 0), hint="choice: {layout: per_alternative"),
    Case("choice_for_gaussian", ((CHOICE, "is only for the multinomial and ranking families"),),
         edit(PIG, "family: gaussian}", "family: gaussian, choice: {layout: per_choice}}"), at=("responses", 0, "choice"),
         hint="use family: multinomial"),
    Case("choice_set_missing", ((CHOICE, "per_alternative data need the column identifying each choice set"),),
         edit(RANKING, ", set: resp", ""), at=("responses", 0, "choice"), hint="write set: COLUMN"),
    Case("choice_per_choice_with_set", ((CHOICE, "every row is a choice set; drop"),),
         edit(MULTINOMIAL, "layout: per_choice,", "layout: per_choice, set: region,"), at=("responses", 0, "choice", "set"),
         hint="drop `set:`"),
    Case("ranking_per_choice", ((CHOICE, "rankings need one row per alternative"),),
         edit(RANKING, "layout: per_alternative, alternatives: alt, set: resp", "layout: per_choice, alternatives: alt2"),
         at=("responses", 0, "choice", "layout"), hint="write layout: per_alternative"),
    Case("per_choice_in_mixed_responses", ((CHOICE, "which mixed responses cannot share"),),
         edit(MULTINOMIAL, 'case: "~ x + female"}', 'case: "~ x"}\n    select: {female: [0]}\n  - {name: choice, family: binomial, select: {female: [1]}}'),
         at=("responses", 0, "choice", "layout"), hint="write the data per_alternative"),
    Case("per_choice_column_exists", ((CHOICE, "expanding would create column"),),
         edit(MULTINOMIAL, "alternatives: alt", "alternatives: x"), at=("responses", 0, "choice", "alternatives"),
         hint="choose another name"),
    Case("per_choice_alternative_unlisted", ((CHOICE, "which are not among the alternatives"),),
         edit(MULTINOMIAL, "base: A,", "base: A, alternatives_order: [A, B],"),
         at=("responses", 0, "choice", "alternatives_order"), hint="add them"),
    Case("per_choice_one_alternative", ((CHOICE, "alternative; a choice needs two or more"),),
         edit(MULTINOMIAL, "multinomial_sim.csv", "one.csv"), files={"data/one.csv": "region,x,female,choice\n1,0.1,0,A\n1,0.2,1,A\n"},
         at=("responses", 0), hint="a choice needs two or more"),
    Case("choice_base_unknown", ((CHOICE, "is not an alternative; alternatives are"),),
         edit(MULTINOMIAL, "base: A", "base: D"), at=("responses", 0, "choice", "base"), hint="write one of them"),
    Case("choice_alternative_twice", ((CHOICE, "lists an alternative twice"),), SMALL_CHOICE,
         files={"data/small.csv": "id,alt,chosen,price\n1,a,1,1.0\n1,a,0,2.0\n1,b,0,1.5\n2,a,1,1.0\n2,b,0,2.0\n"},
         at=("responses", 0, "choice", "set"), hint="give each alternative one row per set"),
    Case("choice_two_chosen", (("families/choice.py", "choice set(s) where the set"),), SMALL_CHOICE,
         files={"data/small.csv": "id,alt,chosen,price\n1,a,1,1.0\n1,b,1,2.0\n2,a,1,1.0\n2,b,0,2.0\n"},
         at=("responses", 0, "choice", "set"), hint="mark exactly one row of each set as chosen"),
    Case("choice_set_spans_units", ((CHOICE, "span several units of level"),),
         edit(RANKING, "{name: resp, id: resp}", "{name: resp, id: alt}"),
         at=("responses", 0, "choice", "set"), hint="a set must lie within one unit"),
    Case("choice_fixed_constant_within_sets", ((CHOICE, "do not vary within any choice set"),),
         edit(MULTINOMIAL, '"choice ~ 0"', '"choice ~ x"'), at=("fixed",), hint="move chooser covariates"),
    # --- compile/weights.py: weights and vce (issue 12) --------------------------------------------------------
    Case("weight_expression", ((WEIGHTS, "is not a weight: write a column name"),),
         edit(PIG_W, "pweight: pos}", "pweight: \"pos + 1\"}"), at=("weights", "pweight"), hint="joined by * or /"),
    Case("weight_column_missing", ((WEIGHTS, "is not in the data; "),), edit(PIG_W, "pweight: pos}", "pweight: poz}"),
         at=("weights", "pweight"), column="poz", hint="did you mean 'pos'?"),
    Case("weight_divides_by_zero", ((WEIGHTS, "divides by zero in"),), edit(PIG_W, "pweight: pos}", "pweight: pos / zero}"),
         at=("weights", "pweight"), hint="weights must be finite"),
    Case("weight_missing", ((WEIGHTS, "weights cannot be missing"),), edit(PIG_W, "pweight: pos}", "pweight: miss}"),
         at=("weights", "pweight"), column="miss", hint="fill them in"),
    Case("weight_negative", ((WEIGHTS, "weights must be zero or positive"),), edit(PIG_W, "pweight: pos}", "pweight: neg}"),
         at=("weights", "pweight"), column="neg", hint="zero or positive"),
    Case("fweight_not_integer", ((WEIGHTS, "must be whole numbers"),), edit(PIG_W, "pweight: pos}", "fweight: pos}"),
         at=("weights", "fweight"), column="pos", hint="use `pweight:`"),
    Case("level_pweight_varies", ((WEIGHTS, "varies within unit"),),
         edit(PIG_W, "{name: pig, id: id}", "{name: pig, id: id, pweight: pos}"), at=("levels", 0, "pweight"),
         column="pos", hint="constant within each of its units"),
    Case("level_pweight_crossed", ((WEIGHTS, "sampling weights need nested levels"),),
         edit(PIG_W, "{name: pig, id: id}", "{name: pig, id: id}\n  - {name: wk, id: week, crossed: true, pweight: one}"),
         at=("levels", 1, "pweight"), hint="drop `pweight` or `crossed: true`"),
    Case("weights_crossed_random", ((WEIGHTS, "is crossed and carries random effects; weighted fits"),),
         edit(PIG_W, "{name: pig, id: id}", "{name: pig, id: id}\n  - {name: wk, id: week, crossed: true}",
              "terms: [1, week]}", "terms: [1, week]}\n  - {level: wk, terms: [1]}"),
         at=("levels", 1, "crossed"), hint="make the design nested"),
    Case("weights_reml", ((WEIGHTS, "REML is not available with"),), PIG_W + "estimation: {method: REML}\n",
         at=("estimation", "method"), hint="write `method: ML`"),
    Case("pwscale_three_levels", ((WEIGHTS, "pwscale is defined for two-level models"),),
         edit(PIG_W, "{name: pig, id: id}", "{name: pig, id: id}\n  - {name: pen, id: pen}", "pweight: pos}",
              "pweight: pos, pwscale: size}"), at=("weights", "pwscale"), hint="drop `pwscale`"),
    Case("pwscale_without_pweight", ((WEIGHTS, "pwscale rescales the row sampling weights"),),
         edit(PIG_W, "pweight: pos}", "fweight: one, pwscale: size}"), at=("weights", "pwscale"),
         hint="give them as `weights.pweight`"),
    Case("vce_cluster_unknown", ((WEIGHTS, "is neither a level nor a data column"),),
         PIG_W + "estimation: {vce: {cluster: pens}}\n", at=("estimation", "vce", "cluster"), hint="did you mean"),
    Case("vce_cluster_crossed", ((WEIGHTS, "is crossed; cluster on the top nested level"),),
         edit(PIG_W, "{name: pig, id: id}", "{name: pig, id: id}\n  - {name: wk, id: week, crossed: true}")
         + "estimation: {vce: {cluster: wk}}\n", at=("estimation", "vce", "cluster"), hint="cluster on the top nested level"),
    Case("vce_cluster_missing", ((WEIGHTS, "every row needs a cluster"),), PIG_W + "estimation: {vce: {cluster: miss}}\n",
         at=("estimation", "vce", "cluster"), column="miss", hint="every row needs a cluster"),
    Case("vce_cluster_below_top", ((WEIGHTS, "splits unit"),), PIG_W + "estimation: {vce: {cluster: week}}\n",
         at=("estimation", "vce", "cluster"), hint="or on a level above it"),
    # --- compile/discrete.py and compile/latent.py: discrete latent distributions (issue 13) ------------------
    Case("class_covariate_varies_within_unit", ((DISCRETE, "of the class probabilities varies within units"),),
         LCA + "structural: {Gamma: {class: {wave: free}}}\n", at=("structural", "Gamma", "class", "wave"),
         hint="use a covariate constant within each unit"),
    Case("discrete_at_crossed_level", ((DISCRETE, "discrete latent variables (mass points or classes) need a nested level"),),
         edit(CBPP_NPMLE, "{name: herd, id: herd}", "{name: herd, id: herd, crossed: true}"),
         at=("random", 0, "distribution", "discrete"), hint="make the design nested"),
    Case("discrete_points_differ_at_level", ((DISCRETE, "discrete latent variables at one level share their points"),),
         CBPP_NPMLE + "latent:\n  - {name: h2, level: herd, loadings: {on: [1], fix: {1: 1}}, distribution: {discrete: 3}}\n",
         at=("latent", 0, "distribution", "discrete"), hint="give them the same `discrete:`"),
    Case("classes_without_loadings", ((DISCRETE, "has no `loadings`; give the class-specific terms"),),
         edit(LCA, ", loadings: {by: item}}", "}"), at=("latent", 0, "classes"), hint="loadings: {by: item}"),
    Case("classes_loadings_fixed", ((DISCRETE, "its loadings are class-specific coefficients, all free"),),
         edit(LCA, "loadings: {by: item}", "loadings: {by: item, fix: {woman: 1}}"), at=("latent", 0, "loadings"),
         hint="drop `fix`, `equal` and `start`"),
    Case("discrete_latent_without_loadings", ((DISCRETE, "has no loadings; give it loadings"),),
         edit(CBPP_NPMLE, "random:\n  - {level: herd, terms: [1], distribution: {discrete: 2}}",
              "latent:\n  - {name: h, level: herd, distribution: {discrete: 2}}"),
         at=("latent", 0), hint="loadings: {on: [1]}"),
    Case("discrete_latent_without_scale", ((DISCRETE, "its mass points are free, so fix one loading"),),
         edit(LCA, "classes: 2, loadings: {by: item}", "loadings: {by: item}, distribution: {discrete: 2}"),
         at=("latent", 0, "loadings"), hint="loadings: {fix: {ITEM: 1}}"),
    Case("discrete_auto_at_two_levels", ((DISCRETE, "is not supported with discrete latent variables at two"),),
         LCA + "  - {name: d, level: district, loadings: {on: [1], fix: {1: 1}}, distribution: {discrete: auto}}\n",
         at=("latent", 1, "distribution", "discrete"), hint="give the number of points at every discrete level"),
    Case("discrete_with_normal_latent_at_its_level", ((DISCRETE, "together with normal latent variables"),),
         LCA + "random:\n  - {level: person, terms: [1]}\n", at=("latent", 0, "classes"),
         hint="move the normal ones to another level"),
    Case("class_covariates_under_normal_level", ((DISCRETE, "are not supported with latent variables at another level"),),
         LCA + "random:\n  - {level: district, terms: [1]}\nstructural: {Gamma: {class: {district: free}}}\n",
         at=("structural", "Gamma", "class"), hint="drop the Gamma entry"),
    Case("discrete_under_normal_laplace", ((DISCRETE, "by quadrature only: write `method: adaptive`"),),
         LCA + "random:\n  - {level: district, terms: [1]}\n" + "estimation: {integration: {method: laplace}}\n",
         at=("estimation", "integration", "method"), hint="write `method: adaptive`"),
    Case("discrete_more_points_than_units", ((DISCRETE, "points but level"),),
         edit(CBPP_NPMLE, "discrete: 2", "discrete: 16"), at=("random", 0, "distribution", "discrete"),
         hint="use at most 15 points"),
    Case("classes_overlap_fixed_part", ((DISCRETE, "overlap the fixed part"),),
         edit(LCA, '"resp ~ 0"', '"resp ~ 0 + C(item)"'), at=("latent", 0, "classes"), hint="drop those terms from `fixed`"),
    Case("discrete_in_structural_b", ((LATENT, "cannot enter structural.B"),),
         edit(ABORTION, "{name: general_district, level: district}",
              "{name: general_district, level: district, distribution: {discrete: 2}}"),
         at=("structural", "B", "general", "general_district"), hint="give it a normal distribution"),
    Case("discrete_mass_points_with_gamma", ((LATENT, "covariates of a discrete distribution are only for latent classes"),),
         edit(ABORTION, "fix: {defect: 1}}}", "fix: {defect: 1}}, distribution: {discrete: 2}}",
              "  B: {general: {general_district: 1}}\n", "  B: {general: {general_district: 1}}\n  Gamma: {extreme: {wave: free}}\n"),
         at=("structural", "Gamma", "extreme"), hint="put them in `fixed`"),
    Case("discrete_reml", ((DISCRETE, "a discrete latent distribution is fitted by ML"),),
         edit(CBPP_NPMLE, "estimation: {integration: {points: 5}}", "estimation: {method: REML}"),
         at=("estimation", "method"), hint="write `method: ML`"),
    Case("discrete_with_robust_vce", (("compile/__init__.py", "are not available with discrete latent"),),
         edit(CBPP_NPMLE, "estimation: {integration: {points: 5}}", "estimation: {integration: {points: 5}, vce: robust}"),
         at=("estimation", "vce"), hint="give the latent variables a normal distribution"),
    # --- issue 9: residual covariances and the moments engine (compile/items.py, likelihood/moments/checks.py) ---
    Case("rescov_no_item_column", ((ITEMS, "no column names the item of each row"),),
         edit(PIG, "random:\n  - {level: pig, terms: [1, week]}\n",
              "latent:\n  - {name: f, level: pig, loadings: {on: [1], fix: {1: 1}}}\n"
              "residual_covariances: {pairs: [[a, b]]}\n"),
         at=("residual_covariances",), hint="write `by: COLUMN`"),
    Case("rescov_not_gaussian", ((ITEMS, "residual covariances are only defined between"),),
         ABORTION + "residual_covariances: {by: item, pairs: [[woman, defect]]}\n",
         at=("responses", 0, "family"), hint="use family: gaussian"),
    Case("rescov_latent_levels", ((ITEMS, "the latent variables must all vary over one level"),),
         edit(HS_RC, "  - {name: child, id: id}\n", "  - {name: child, id: id}\n  - {name: school, id: school}\n",
              "  - {name: textual, level: child", "  - {name: textual, level: school"),
         at=("residual_covariances",), hint="put the latent variables at one level"),
    Case("rescov_three_items", ((ITEMS, "a residual covariance joins two items"),), edit(HS_RC, "[x1, x4]", "[x1, x4, x5]"),
         at=("residual_covariances", "pairs", 0), hint="write [A, B]"),
    Case("rescov_unknown_item", ((ITEMS, "is not an item (a value of column"),), edit(HS_RC, "[x1, x4]", "[x1, x44]"),
         at=("residual_covariances", "pairs", 0, 1), hint="did you mean 'x4'?"),
    Case("rescov_same_item", ((ITEMS, "names one item twice"),), edit(HS_RC, "[x1, x4]", "[x4, x4]"),
         at=("residual_covariances", "pairs", 0), hint="a covariance needs two different items"),
    Case("rescov_repeated_pair", ((ITEMS, "list each pair once"),), edit(HS_RC, "[x1, x4]", "[x1, x4]\n    - [x4, x1]"),
         at=("residual_covariances", "pairs", 1), hint="list each pair once"),
    Case("rescov_engine_refused", ((MOMENTS, "residual covariances are fitted by the moments engine"),),
         HS_RC + "estimation: {exact: false}\n", at=("residual_covariances",), hint="drop `residual_covariances:`"),
    Case("meanstructure_needs_moments", ((MOMENTS, "`meanstructure: false` needs the moments engine"),),
         PIG + "estimation: {meanstructure: false}\n", at=("estimation", "meanstructure"), hint="drop it"),
    Case("rescov_item_two_designs", ((MOMENTS, "differ in design"),),
         edit(HS_RC, 'fixed: "score ~ 0 + C(test)"', 'fixed: "score ~ 0 + C(test) + C(test):sex"'),
         at=("residual_covariances", "pairs", 0), hint="give its rows one design"),
    Case("meanstructure_missing_data", ((MOMENTS, "`meanstructure: false` needs complete data"),),
         edit(HS, "data/holzinger_swineford.csv", "data/hs_missing.csv") + "estimation: {meanstructure: false}\n",
         files={"data/hs_missing.csv": HS_MISSING}, at=("estimation", "meanstructure"),
         hint="drop it (the means are then estimated by full-information ML)"),
    Case("meanstructure_unsaturated_means", ((MOMENTS, "which needs a fixed part with one free mean per item"),),
         edit(HS, 'fixed: "score ~ 0 + C(test)"', 'fixed: "score ~ 1"') + "estimation: {meanstructure: false}\n",
         at=("estimation", "meanstructure"), hint="write the fixed part as '~ 0 + C(ITEM)'"),
    Case("rescov_not_identified", ((MOMENTS, "the model is not identified"),),
         edit(HS_RC, "[x1, x2, x3, x4, x5, x6]", "[x1, x2, x3]",
              "  - {name: textual, level: child, loadings: {by: test, only: [x4, x5, x6], fix: {x4: 1}}}\n", "",
              "[x1, x4]", "[x1, x2]"),
         at=("residual_covariances",), hint="fix one of them (constraints.fix)"),
    Case("rescov_with_robust_vce", (("compile/__init__.py", "residual covariances are not available with weights"),),
         HS_RC + "estimation: {vce: robust}\n", at=("residual_covariances",), hint="drop one or the other"),
    # --- compile/residuals.py: residual covariance structures (issue 12) --------------------------------------
    Case("resid_not_gaussian", ((RESID, "residual structures are for gaussian responses"),),
         edit(OVARY, "family: gaussian", "family: poisson"), at=("responses", 0, "residuals"), hint="use family: gaussian"),
    Case("resid_two_equations", ((RESID, "residual structures need a model with one response equation"),),
         edit(OVARY, "    family: gaussian\n", "    family: gaussian\n    select: {mare: [1, 2, 3]}\n",
              "time: time}\n", "time: time}\n  - {name: follicles, family: gaussian, select: {mare: [4, 5, 6, 7, 8, 9, 10, 11]}}\n"),
         at=("responses", 0, "residuals"), hint="fit the equations separately"),
    Case("resid_not_exact", ((RESID, "residual structures are fitted by the exact gaussian likelihood only"),),
         OVARY + "estimation: {exact: false}\n", at=("responses", 0, "residuals"), hint="drop `estimation.exact: false`"),
    Case("resid_with_variance_by", ((RESID, "give either `residuals:` or variance_by/variance, not both"),),
         edit(OVARY, "    family: gaussian\n", "    family: gaussian\n    variance_by: mare\n"),
         at=("responses", 0, "residuals"), hint="is variance_by: COLUMN"),
    Case("resid_no_time", ((RESID, "needs a time column; add `time: COLUMN`"),),
         edit(OVARY, "{structure: ar, order: 2, time: time}", "{structure: ar}"),
         at=("responses", 0, "residuals", "structure"), hint="add `time: COLUMN`"),
    Case("resid_order_without_use", ((RESID, "has no order; drop `order:`"),),
         edit(OVARY, "{structure: ar, order: 2, time: time}", "{structure: exponential, order: 2, time: stime}"),
         at=("responses", 0, "residuals", "order"), hint="drop `order:`"),
    Case("resid_no_level", ((RESID, "no (nested) level is declared"),),
         edit(OVARY, "levels:\n  - {name: mare, id: mare}\n", "", "random:\n  - {level: mare, terms: [1]}\n", ""),
         at=("responses", 0, "residuals"), hint="add one under `levels:`"),
    Case("resid_intercept_not_identified", ((RESID, "residuals within '\x00' is not identified"),),
         edit(OVARY, "{structure: ar, order: 2, time: time}", "{structure: unstructured, time: time}"),
         at=("random", 0, "level"), hint="drop the random intercept"),
    Case("resid_time_not_numeric", ((RESID, "must be numeric; it holds values such as"),),
         edit(OVARY, "data/ovary.csv", "data/ovary_text.csv"), files={"data/ovary_text.csv": _ovary_csv(_text_time)},
         at=("responses", 0, "residuals", "time"), column="time", hint="recode it as numbers"),
    Case("resid_time_not_integer", ((RESID, "needs integer time values"),),
         edit(OVARY, "time: time}", "time: stime}"), at=("responses", 0, "residuals", "time"), column="stime",
         hint="use structure: exponential"),
    Case("resid_duplicate_time", ((RESID, "twice within"),),
         edit(OVARY, "data/ovary.csv", "data/ovary_dup.csv"), files={"data/ovary_dup.csv": _ovary_csv(_duplicate_time)},
         at=("responses", 0, "residuals", "time"), column="time", hint="needs its own time value"),
    Case("resid_order_too_large", ((RESID, "is not smaller than the largest"),),
         edit(OVARY, "order: 2", "order: 31"), at=("responses", 0, "residuals", "order"), hint="lower `order:` to at most 30"),
    Case("resid_by_varies_within_cluster", ((RESID, "varies within"),),
         edit(OVARY, "time: time}", "time: time, by: follicles}"), at=("responses", 0, "residuals", "by"),
         column="follicles", hint="only structure: independent allows it to vary"),
    Case("resid_by_group_lacks_times", ((RESID, "has no rows at time values"),),
         edit(OVARY, "{structure: ar, order: 2, time: time}", "{structure: unstructured, time: time, by: mare}",
              "random:\n  - {level: mare, terms: [1]}\n", ""),
         at=("responses", 0, "residuals", "by"), hint="drop those times"),
    Case("resid_by_not_numeric", ((RESID, "must be numeric (as Stata's by())"),),
         edit(OVARY, "data/ovary.csv", "data/ovary_mare.csv", "time: time}", "time: time, by: mare}"),
         files={"data/ovary_mare.csv": _ovary_csv(_text_mare)}, at=("responses", 0, "residuals", "by"), column="mare",
         hint="recode its categories as numbers"),
    Case("resid_crossed_level_splits_clusters", ((RESID, "contain whole \x00 units"),),
         edit(OVARY, "levels:\n  - {name: mare, id: mare}\n", "levels:\n  - {name: mare, id: mare}\n"
              "  - {name: day, id: time, crossed: true}\n", "terms: [1]}\n", "terms: [1]}\n  - {level: day, terms: [1]}\n"),
         at=("random", 1, "level"), hint="drop these random effects or the residual structure"),
    Case("stack_item_and_value_same_name", ((RESHAPE, "stacking would create column"),),
         edit(PIG, "data/pig.csv}", "data/pig.csv, stack: {columns: [week], item: y, value: y}}"), at=("data", "stack"),
         column="y", hint="choose another name"),
    Case("resid_toeplitz_lag_never_occurs", ((RESID, "apart in"),),
         edit(OVARY, "{structure: ar, order: 2, time: time}", "{structure: toeplitz, order: 2, time: time}",
              "data/ovary.csv", "data/ovary_even.csv"), files={"data/ovary_even.csv": _ovary_csv(_even_time)},
         at=("responses", 0, "residuals", "order"), hint="lower `order:`"),
    Case("resid_time_column_missing", ((INIT, "@_check_columns"),),
         edit(OVARY, "time: time}", "time: tme}"), at=("responses", 0, "residuals", "time"), column="tme",
         hint="did you mean 'time'?"),
    Case("residual_structure_with_weights", (("compile/__init__.py", "residual covariance structures are not available with"),),
         edit(PIG_W, "family: gaussian}", "family: gaussian, residuals: {structure: ar, time: week}}"),
         at=("responses", 0, "residuals"), hint="drop one or the other"),
    Case("class_scale_without_scale_parameter", ((DISCRETE, "and no response has one"),),
         edit(LCA, "loadings: {by: item}}", "loadings: {by: item}, class_scale: true}"),
         at=("latent", 0, "class_scale"), hint="drop `class_scale`"),
    Case("class_scale_on_normal_latent", ((DISCRETE, "is not a latent class variable"),),
         edit(LCA, "classes: 2, loadings: {by: item}}", "loadings: {by: item}, variance: 1, class_scale: true}"),
         at=("latent", 0, "class_scale"), hint="drop it or add `classes`"),
    Case("class_scale_with_other_latent_levels", ((DISCRETE, "is only supported without latent variables at other"),),
         edit(LCA, "family: binomial", "family: gaussian", "loadings: {by: item}}",
              "loadings: {by: item}, class_scale: true}") + "random:\n  - {level: district, terms: [1]}\n",
         at=("latent", 0, "classes"), hint="drop `class_scale` or the other latent variables"),
]

EXEMPT: dict[tuple[str, str], str] = {
    ("estimate/__init__.py", "REML is only defined for linear Gaussian models; write"): "backstop for direct callers of "
        "estimate(); through the CLI, preflight (run by validate and fit) refuses the same spec first (reml_non_gaussian)",
    (DESIGN, "cannot parse formula"): "formulaic backstop: the grammar (spec/formula_grammar.py) accepts only formulas "
                                      "formulaic parses; tests/security tries the injections",
    (DESIGN, "which is not allowed; use column names"): "second check of formulaic's factors after the grammar, which "
                                                        "already refuses every such factor (tests/security)",
    (DESIGN, "the formula names columns"): "_check_columns names every missing column (with did-you-mean) before any "
                                           "design is built (column_not_in_data)",
    (LATENT, "column '\x00' is not in the data"): "_check_columns reports missing random-term, loadings.by, loadings.on "
                                                   "and Gamma columns before compile_latent runs",
    (FAMILIES, "must \x00, got shape"): "compile passes 1-D response and trials slices of one length; kept for direct "
                                        "callers of Family.validate (tests/families/test_validate.py)",
    (FAMILIES, "must be numeric, got dtype"): "compile refuses non-numeric responses (response_not_numeric) and converts "
                                              "trials with numeric_column first; tests/families/test_validate.py",
    (GRAMMAR, "expected a formula as text"): "the schema refuses a non-text fixed, variance or Gamma term first "
                                             "('expected text, got ...'); kept for direct callers of check_formula",
    (GRAMMAR, "the formula nests too deeply"): "RecursionError backstop: the grammar's MAX_DEPTH refuses deep nesting "
                                               "first (formula budgets in tests/security)",
}
"""Raise sites no spec can reach through the CLI, with the reason."""


# --- issue 10: count and censored families (compile/family_params.py) --------------------------------------------
EPIL = """\
name: errors
data: {path: data/epil.csv}
levels:
  - {name: subject, id: subject}
responses:
  - {name: y, family: nbinom2}
fixed: "y ~ trt + lbase"
random:
  - {level: subject, terms: [1]}
"""

TOBIT = """\
name: errors
data: {path: data/tobit_sim.csv}
levels:
  - {name: cluster, id: cluster}
responses:
  - {name: y, family: gaussian, censoring: {left: censored}}
fixed: "y ~ x"
random:
  - {level: cluster, terms: [1]}
"""

FAMILY_PARAMS = "compile/family_params.py"


def _csv_with(name: str, change) -> str:
    """A shipped data file with `change(frame)` applied."""
    frame = pd.read_csv(SPECS / "data" / name)
    change(frame)
    return frame.to_csv(index=False)


def _set(column: str, row: int, value: float):
    def change(frame: pd.DataFrame) -> None:
        frame[column] = frame[column].astype(float)
        frame.loc[row, column] = value
    return change


def _add_upper(frame: pd.DataFrame) -> None:
    frame["hi"] = frame["y"] + 1.0


CASES += [
    Case("nbinom_negative_count", ((INIT, ", column '"), (FAMILIES, "rows do not; first rows (0-based)")),
         edit(EPIL, "data/epil.csv", "data/e.csv"), files={"data/e.csv": _csv_with("epil.csv", _set("y", 3, -2))},
         at=("responses", 0), column="y", hint="must be non-negative integers (counts)"),
    Case("nbinom_fractional_count", ((INIT, ", column '"), (FAMILIES, "rows do not; first rows (0-based)")),
         edit(EPIL, "data/epil.csv", "data/e.csv"), files={"data/e.csv": _csv_with("epil.csv", _set("y", 3, 2.5))},
         at=("responses", 0), column="y", hint="must be non-negative integers (counts)"),
    Case("zip_negative_count", ((INIT, ", column '"), (FAMILIES, "rows do not; first rows (0-based)")),
         edit(EPIL, "data/epil.csv", "data/e.csv", "family: nbinom2}", "family: poisson, zero_inflation: '~ 1'}"),
         files={"data/e.csv": _csv_with("epil.csv", _set("y", 0, -1))},
         at=("responses", 0), column="y", hint="must be non-negative integers (counts)"),
    Case("zero_inflation_not_count", ((FAMILY_PARAMS, "zero_inflation is for count families"),),
         edit(TOBIT, "censoring: {left: censored}}", "zero_inflation: '~ 1'}"), at=("responses", 0, "zero_inflation"),
         hint="use family: poisson or nbinom2"),
    Case("zero_inflation_no_terms", ((FAMILY_PARAMS, "for a constant zero-inflation probability"),),
         edit(EPIL, "family: nbinom2}", "family: nbinom2, zero_inflation: '~ 0'}"),
         at=("responses", 0, "zero_inflation"), hint="write '~ 1'"),
    Case("censoring_not_gaussian", ((FAMILY_PARAMS, "censoring is for the gaussian family"),),
         edit(EPIL, "family: nbinom2}", "family: nbinom2, censoring: {right: trt}}"), at=("responses", 0, "censoring"),
         hint="use family: gaussian"),
    Case("censoring_with_variance", ((FAMILY_PARAMS, "a censored gaussian response has one residual SD"),),
         edit(TOBIT, "censoring: {left: censored}}", "censoring: {left: censored}, variance: '~ x'}"),
         at=("responses", 0, "censoring"), hint="drop `variance:`"),
    Case("censoring_no_column", ((MODEL, "name at least one of `left`"),),
         edit(TOBIT, "censoring: {left: censored}}", "censoring: {}}"), at=("responses", 0, "censoring"),
         hint="(0/1 indicator columns)"),
    Case("censoring_indicator_not_0_1", ((FAMILY_PARAMS, "must hold 0 (observed) or 1 (censored)"),),
         edit(TOBIT, "censoring: {left: censored}}", "censoring: {left: x}}"), at=("responses", 0, "censoring", "left"),
         column="x", hint="recode it as 0/1"),
    Case("censoring_left_and_right", ((FAMILY_PARAMS, "flagged both left- and right-censored"),),
         edit(TOBIT, "censoring: {left: censored}}", "censoring: {left: censored, right: censored}}"),
         at=("responses", 0, "censoring", "right"), hint="give an interval with `upper:`"),
    Case("censoring_upper_below_response", ((FAMILY_PARAMS, "is below the response"),),
         edit(TOBIT, "censoring: {left: censored}}", "censoring: {upper: x}}"), at=("responses", 0, "censoring", "upper"),
         column="x", hint="swap the columns"),
    Case("censoring_upper_on_flagged_rows", ((FAMILY_PARAMS, "also have an upper bound other than the response"),),
         edit(TOBIT, "data/tobit_sim.csv", "data/t2.csv", "censoring: {left: censored}}",
              "censoring: {left: censored, upper: hi}}"), files={"data/t2.csv": _csv_with("tobit_sim.csv", _add_upper)},
         at=("responses", 0, "censoring", "upper"), hint="give each row one kind of censoring"),
]

COMPOSITE = """\
name: errors
data: {path: data/composite_sim.csv}
levels:
  - {name: cluster, id: cluster}
responses:
  - {name: y, family: poisson, composite: [{formula: "~ w"}]}
fixed: "y ~ x"
random:
  - {level: cluster, terms: [1]}
"""

CASES += [
    Case("composite_wrong_family", ((FAMILY_PARAMS, "composite links are for the poisson and gaussian"),),
         edit(COMPOSITE, "family: poisson,", "family: nbinom2,"), at=("responses", 0, "composite"),
         hint="drop `composite:` or change the family"),
    Case("composite_and_zero_inflation", ((FAMILY_PARAMS, "per response, not several"),),
         edit(COMPOSITE, "family: poisson,", "family: poisson, zero_inflation: '~ 1',"),
         at=("responses", 0, "composite"), hint="keep the one the model needs"),
    Case("composite_with_variance", ((FAMILY_PARAMS, "a composite gaussian response has one residual SD"),),
         edit(COMPOSITE, "family: poisson,", "family: gaussian, variance: '~ x',"), at=("responses", 0, "composite"),
         hint="drop `variance:`"),
    Case("composite_no_terms", ((FAMILY_PARAMS, "for a constant added term"),),
         edit(COMPOSITE, '"~ w"', '"~ 0"'), at=("responses", 0, "composite", 0, "formula"), hint="write '~ 1'"),
    Case("composite_bad_term_link", ((INIT, "@_equations"),),
         edit(COMPOSITE, '"~ w"}', '"~ w", link: identity}'), at=("responses", 0), hint="need links among log, logit"),
]

CASES += [
    Case("crossed_level_censored_gaussian", ((PLAN, "which nested quadrature cannot integrate"),),
         edit(TOBIT, "{name: cluster, id: cluster}", "{name: cluster, id: cluster, crossed: true}"),
         at=("levels", 0, "crossed"), hint="drop `crossed: true`"),
]

HSB_SUCCESS = """\
name: errors
data: {path: data/hsb82.csv}
levels:
  - {name: school, id: school}
responses:
  - {name: minrty, family: binomial, success: "Yes"}
fixed: "minrty ~ ses"
random:
  - {level: school, terms: [1]}
"""
SUCCESS = "compile/success.py"

CASES += [
    Case("success_unknown_label", ((SUCCESS, "write one of them (labels are case-sensitive)"),),
         edit(HSB_SUCCESS, 'success: "Yes"', 'success: "yes"'), at=("responses", 0, "success"),
         hint="write one of them"),
    Case("success_label_absent_from_one_valued_column", ((SUCCESS, "which holds only"),),
         edit(HSB_SUCCESS, 'name: minrty, family: binomial, success: "Yes"', 'name: sector, family: binomial, success: "Private"',
              '"minrty ~ ses"', '"sector ~ ses"',
              "data: {path: data/hsb82.csv}", "data: {path: data/hsb82.csv, filter: [{column: sector, op: '==', value: Public}]}"),
         at=("responses", 0, "success"), hint="write the value that counts as success"),
    Case("success_with_three_values", ((SUCCESS, "distinct values"),),
         edit(HSB_SUCCESS, "data/hsb82.csv", "data/hsb3.csv"), at=("responses", 0, "success"),
         hint="filter the rows",
         files={"data/hsb3.csv": "school,minrty,ses\n" + "".join(f"{i // 4},{['No', 'Yes', 'Maybe'][i % 3]},{i % 5}\n"
                                                                 for i in range(40))}),
    Case("success_not_binomial", ((SUCCESS, "is only for the binomial family"),),
         edit(HSB_SUCCESS, "family: binomial,", "family: poisson,"), at=("responses", 0, "success"),
         hint="use family: binomial"),
    Case("success_with_trials", ((SUCCESS, "counts successes, so it has no success"),),
         edit(HSB_SUCCESS, 'success: "Yes"', 'success: "Yes", trials: ses'), at=("responses", 0, "success"),
         hint="drop `success:` or `trials:`"),
]
CHOICE_WEIGHTS = "compile/choice_weights.py"
CASES += [
    Case("choice_set_weights_differ", ((CHOICE_WEIGHTS, "a choice set is one observation: give all rows"),),
         RANKING + "weights: {fweight: alt}\n", at=("weights", "fweight"), hint="give all rows of a set the same weight"),
]
CASES += [
    Case("censoring_column_text", ((DATA_CHECKS, "must be numeric; \x00 of its values"),),
         edit(PIG, "family: gaussian}", "family: gaussian, censoring: {left: label}}"),
         at=("responses", 0, "censoring", "left"), column="label", hint="recode the column as numbers"),
]
CASES += [
    Case("residual_structure_too_many_parameters", ((RESID, "parameters, more than the"),),
         edit(OVARY, "data/ovary.csv", "data/long.csv", "structure: ar, order: 2, time: time",
              "structure: unstructured, time: time", "random:\n  - {level: mare, terms: [1]}\n", ""),
         files={"data/long.csv": "mare,time,follicles,sin1,cos1\n" + "".join(
             f"{m},{t},{(m * 7 + t * 3) % 11},{(t % 5) / 5},{(t % 3) / 3}\n" for m in range(3) for t in range(50))},
         at=("responses", 0, "residuals"), hint="a structure with fewer parameters"),
]
CASES += [
    Case("choice_too_many_alternatives", (("compile/choice.py", "alternatives, more than the"),),
         edit(MULTINOMIAL, "multinomial_sim.csv", "many.csv", "base: A,", "base: a0,"),
         files={"data/many.csv": "region,x,female,choice\n" + "".join(f"{i % 7},{i / 10},{i % 2},a{i}\n"
                                                                       for i in range(101))},
         at=("responses", 0, "choice", "alternatives"), hint="merge rare alternatives"),
]
CASES += [
    Case("crossed_level_ghq_suggests_laplace", ((PLAN, "which nested quadrature cannot integrate"),),
         edit(CBPP, "{name: herd, id: herd}", "{name: herd, id: herd, crossed: true}",
              "{integration: {points: 5}}", "{integration: {method: ghq, points: 5}}"),
         at=("levels", 0, "crossed"), hint="write `estimation: {integration: {method: laplace}}`"),
]
CASES += [
    Case("crossed_level_laplace_unsupported", ((PREFLIGHT, "crossed levels are integrated by the joint Laplace"),),
         MULTINOMIAL.replace("responses:", "levels:\n  - {name: region, id: region, crossed: true}\nresponses:")
         + "latent:\n  - {name: B, level: region, loadings: {by: alt, only: [B], fix: {B: 1}}}\n"
           "estimation: {integration: {method: laplace}}\n",
         at=("estimation", "integration", "method"), hint="drop `crossed: true`"),
]


def _pig_parts(units: int = 48, flag_last: bool = False, overlap: bool = False) -> dict[str, bytes]:
    """pig.csv as two Parquet files of whole pigs (`units` pigs, repeating the shipped ones), for distributed fits.

    `flag_last`: column `late` is 1 only in the last pig (a category the first 100 pigs never hold);
    `overlap`: pig 1 has rows in both files."""
    pig = pd.read_csv(SPECS / "data" / "pig.csv")
    frame = pd.concat([pig.assign(id=pig["id"] + 48 * k) for k in range(-(-units // 48))], ignore_index=True)
    frame = frame[frame["id"] <= units]
    frame["late"] = (frame["id"] == units).astype(int) if flag_last else 0
    half = units // 2
    first, second = frame[frame["id"] <= half], frame[frame["id"] > half]
    if overlap:
        second = pd.concat([second, first[first["id"] == 1].head(1)])
    out = {}
    for j, part in enumerate((first, second)):
        buffer = io.BytesIO()
        part.to_parquet(buffer)
        out[f"data/parts/part-{j}.parquet"] = buffer.getvalue()
    return out


DATASET, DFIT, DPARTS = "data/dataset.py", "distributed/fit.py", "distributed/partitions.py"
PIG_DIST = edit(PIG, "data/pig.csv", "data/parts") + "estimation: {distributed: {workers: 1}}\n"
"""PIG fitted over one local Dask worker, from the folder data/parts (a case supplies its files)."""
CASES += [
    Case("dataset_hidden_folder", ((DATASET, "lies in a hidden folder"),), edit(PIG, "data/pig.csv", "data/.parts"),
         files={"data/.parts/part-0.parquet": _pig_parts()["data/parts/part-0.parquet"]}, at=("data", "path"),
         hint="move the dataset to a visible folder"),
    Case("dataset_without_parquet_files", ((DATASET, "holds no .parquet files"),), edit(PIG, "data/pig.csv", "data/parts"),
         files={"data/parts/notes.txt": "not data\n"}, at=("data", "path"), hint="write the partitions there"),
    Case("distributed_needs_a_folder", ((DFIT, "reads a partitioned Parquet dataset"),), PIG + "estimation: {distributed: {workers: 1}}\n",
         command="fit", at=("data", "path"), hint="name such a folder"),
    Case("distributed_unit_in_two_files", ((DPARTS, "has rows in two partition files"),), PIG_DIST,
         files=_pig_parts(overlap=True), command="fit", at=("data", "path"), hint="partition by id"),
    Case("distributed_partition_without_level_id", ((DPARTS, "every partition file needs the columns"),),
         edit(PIG_DIST, "{name: pig, id: id}", "{name: pig, id: pig_id}"), files=_pig_parts(), command="fit",
         at=("data", "path"), hint="every partition file needs the columns the spec uses"),
    Case("distributed_sample_lacks_a_category", ((DPARTS, "compiles to another parameter table"),),
         edit(PIG_DIST, "weight ~ week", "weight ~ week + C(I(late > 0))"), files=_pig_parts(120, flag_last=True),
         command="fit", at=("data", "path"), hint="fit it in one process"),
    Case("distributed_no_latent_level", ((DPARTS, "has no latent variables at a nested level"),),
         edit(PIG_DIST, "random:\n  - {level: pig, terms: [1, week]}\n", ""), files=_pig_parts(), command="fit",
         at=("estimation", "distributed"), hint="drop `distributed`"),
    Case("distributed_crossed_level", ((DFIT, "crossed levels make the likelihood a non-separable sum"),),
         edit(PIG_DIST, "{name: pig, id: id}", "{name: pig, id: id, crossed: true}"), files=_pig_parts(),
         command="fit", at=("levels", 0, "crossed"), hint="fit this model in one process"),
    Case("distributed_unsupported_key", ((DFIT, "a distributed fit does not support"),),
         edit(PIG_DIST, "weight ~ week", "weight ~ center(week)"), files=_pig_parts(), command="fit", at=("fixed",),
         hint="fit this model in one process"),
    Case("distributed_reml_without_exact", ((DFIT, "REML needs the exact likelihood"),),
         edit(PIG_DIST, "{distributed:", "{method: REML, exact: false, distributed:"), files=_pig_parts(),
         command="fit", at=("estimation", "method"), hint="write `method: ML`"),
    Case("distributed_moments_model", ((DFIT, "can be fitted by the moments engine"),),
         edit(PIG_DIST, "random:\n  - {level: pig, terms: [1, week]}\n", "latent:\n  - {name: f, level: pig}\n"),
         files=_pig_parts(), command="fit", at=("latent",), hint="write the effects under `random:`"),
    Case("distributed_scheduler_from_an_untrusted_spec", ((DFIT, "a spec cannot choose the Dask scheduler"),),
         edit(PIG_DIST, "{distributed: {workers: 1}}", "{distributed: {scheduler: 'tcp://127.0.0.1:9', workers: 1}}"),
         files=_pig_parts(), command="fit", at=("estimation", "distributed", "scheduler"),
         hint="pass --scheduler ADDRESS on the command line"),
]

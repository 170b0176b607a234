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

`todo` (with `now_at`, the location the message has today, and/or `hint=None`)
records a message that is not yet where or what it should be, for the lead:
the owner is named, and the case tightens when the entry is removed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tests.conftest import SPECS

Loc = tuple[Any, ...]


@dataclass(frozen=True)
class Case:
    """A bad input and what the CLI must answer."""

    id: str
    covers: tuple[tuple[str, str], ...]
    spec: str | None
    at: Loc | None = None
    column: str | None = None
    hint: str | None = None
    files: dict[str, str] = field(default_factory=dict)
    command: str = "validate"
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

INIT, DESIGN, LATENT, START = "compile/__init__.py", "compile/design.py", "compile/latent.py", "compile/start_from.py"
LOAD, LEVELS, RESHAPE, PLAN = "data/load.py", "data/levels.py", "data/reshape.py", "likelihood/plan.py"
LOADER, MODEL, FAMILIES = "spec/loader.py", "spec/model.py", "families/families.py"
VALIDATOR_AT_TOP = "H2 (spec/loader.py): model-validator errors are placed at 1:1; point at the offending key (issue 7 'Location')"

CASES: list[Case] = [
    # --- spec/loader.py: reading and schema ---------------------------------------------------------------
    Case("yaml_syntax", ((LOADER, "not valid YAML"),), PIG.replace("  - {name: pig, id: id}", "  - {name: pig, id: id"),
         lines=(4, 5), hint="check indentation and quoting", todo="H2: YAML errors point past the flow mapping (5:10), not where it opens (4)"),
    Case("not_a_mapping", ((LOADER, "a spec must be a YAML mapping"),), "- a\n- b\n", at=(), hint="(name:, data:, responses:, fixed:, ...)"),
    Case("unreadable_spec", ((LOADER, "cannot read spec"),), None, hint=None, todo="H2: add what to do (the path is relative to the working directory)"),
    Case("unknown_key", ((LOADER, "@validate_spec_dict"),), PIG + "estimation: {metod: ML}\n", at=("estimation", "metod"),
         hint="did you mean 'method'?"),
    # --- spec/model.py: cross-reference validators (pydantic ValueError -> located SpecError) -------------
    Case("loadings_by_and_on", ((MODEL, "give exactly one of `by: COLUMN`"),),
         edit(ABORTION, "{by: item, fix: {woman: 1}}", "{fix: {woman: 1}}"), at=("latent", 0, "loadings"),
         hint="give exactly one of `by: COLUMN`"),
    Case("duplicate_level_names", ((MODEL, "level names must be unique"),),
         edit(ABORTION, "{name: district, id: district}", "{name: person, id: district}"), at=("levels", 1, "name"),
         hint=None, now_at=(), todo=VALIDATOR_AT_TOP + "; no hint (rename one level)"),
    Case("random_undeclared_level", ((MODEL, "random effects name level"),), edit(PIG, "{level: pig,", "{level: pigs,"),
         at=("random", 0, "level"), hint="declared levels are", now_at=(), todo=VALIDATOR_AT_TOP),
    Case("latent_undeclared_level", ((MODEL, "latent variable '\x00' names level"),),
         edit(ABORTION, "level: district}", "level: county}"), at=("latent", 2, "level"), hint="declared levels are",
         now_at=(), todo=VALIDATOR_AT_TOP),
    Case("covariance_undeclared_level", ((MODEL, "covariance names level"),),
         edit(ABORTION, "covariance: {person: independent}", "covariance: {persons: independent}"),
         at=("covariance", "persons"), hint="declared levels are", now_at=(), todo=VALIDATOR_AT_TOP),
    Case("duplicate_latent_names", ((MODEL, "latent variable names must be unique"),),
         edit(ABORTION, "{name: extreme,", "{name: general,", "only: [defect, risk, rape], fix: {defect: 1}", "only: [defect], fix: {defect: 1}"),
         at=("latent", 1, "name"), hint=None, now_at=(), todo=VALIDATOR_AT_TOP + "; no hint (rename one)"),
    Case("structural_unknown_outcome", ((MODEL, "latent variables are"),),
         edit(ABORTION, "B: {general:", "B: {generic:"), at=("structural", "B", "generic"), hint="latent variables are",
         now_at=(), todo=VALIDATOR_AT_TOP),
    Case("structural_unknown_predictor", ((MODEL, "structural.B["),),
         edit(ABORTION, "{general_district: 1}}", "{district: 1}}"), at=("structural", "B", "general", "district"),
         hint=None, now_at=(), todo=VALIDATOR_AT_TOP + "; no hint (list the latent variables)"),
    Case("several_equations_without_select", ((MODEL, "each needs `select: {column: [values]}`"),),
         edit(MRESP, "family: binomial, select: {itemgroup: [b]}", "family: binomial"), at=("responses", 1),
         hint="`select: {column: [values]}`", now_at=(), todo=VALIDATOR_AT_TOP),
    Case("several_response_columns", ((MODEL, "must name the same response column"),),
         edit(MRESP, "{name: y, family: binomial", "{name: x, family: binomial"), at=("responses", 1, "name"),
         hint="stack the data so one column holds every response", now_at=(), todo=VALIDATOR_AT_TOP),
    Case("structural_cycle", ((MODEL, "B has a cycle"),),
         edit(ABORTION, "B: {general: {general_district: 1}}", "B: {general: {extreme: 1}, extreme: {general: 1}}"),
         at=("structural", "B"), hint="B must be recursive", now_at=(), todo=VALIDATOR_AT_TOP),
    # --- data/load.py, data/reshape.py, data/levels.py ----------------------------------------------------
    Case("data_file_missing", ((LOAD, "data file not found"), ("pipeline.py", "@prepare")),
         edit(PIG, "data/pig.csv", "data/pigs.csv"), at=("data",), hint=None, todo="H3: no hint (path is relative to the spec's folder)"),
    Case("data_file_unreadable", ((LOAD, "cannot read"),), edit(PIG, "data/pig.csv", "data/empty.csv"), at=("data",),
         files={"data/empty.csv": ""}, hint=None, todo="H3: no hint (say the file is empty / not CSV)"),
    Case("filter_column_missing", ((LOAD, "filter column"),),
         edit(PIG, "data/pig.csv}", "data/pig.csv, filter: [{column: wek, op: '>', value: 1}]}"), at=("data",),
         column="wek", hint="columns are", todo="H3: point at data.filter.0.column"),
    Case("filter_type_mismatch", ((LOAD, "cannot compare column of type"),),
         edit(PIG, "data/pig.csv}", "data/pig.csv, filter: [{column: label, op: '>', value: 3}]}"), at=("data",),
         hint=None, todo="H3: name the column in quotes; no hint (compare with a quoted category or a numeric column)"),
    Case("data_outside_folder", ((LOAD, "is outside the spec's folder"),), edit(PIG, "data/pig.csv", "../pig.csv"),
         at=("data",), hint="put the file inside it"),
    Case("stack_missing_column", ((RESHAPE, "stack.columns names"),),
         edit(PIG, "data/pig.csv}", "data/pig.csv, stack: {columns: [wek], item: item, value: y}}"), at=("data",),
         column="wek", hint="columns are"),
    Case("stack_existing_column", ((RESHAPE, "stacking would create column"),),
         edit(PIG, "data/pig.csv}", "data/pig.csv, stack: {columns: [week], item: weight, value: y}}"), at=("data",),
         column="weight", hint="choose another name"),
    Case("levels_not_nested", ((LEVELS, "is not nested in level"),),
         edit(PIG, "  - {name: pig, id: id}\n", "  - {name: occasion, id: week}\n  - {name: pig, id: id}\n"),
         at=("levels", 0, "id"), column="week", hint="within_parent: true"),
    # --- compile/__init__.py --------------------------------------------------------------------------------
    Case("variance_formula_function", ((INIT, "@_variance_formula"),),
         edit(PIG, "family: gaussian}", "family: gaussian, variance: '~ open(week)'}"), at=("responses", 0, "variance"),
         hint="allowed functions are"),
    Case("variance_formula_two_sided", ((INIT, "must be one-sided (no response)"),),
         edit(PIG, "family: gaussian}", "family: gaussian, variance: 'weight ~ week'}"), at=("responses", 0, "variance"),
         hint="e.g. '~ x + C(item)'"),
    Case("variance_design_fails", ((INIT, "@_variance_design"), (DESIGN, "cannot build the fixed-effects design from")),
         edit(PIG, "family: gaussian}", "family: gaussian, variance: '~ log(week - 3)'}"), at=("responses", 0, "variance"),
         hint=None, todo="H1 (design.py): formulaic's multi-line message, no hint (e.g. 'log() of a value <= 0')"),
    Case("variance_only_intercept", ((INIT, "has no terms besides the intercept"),),
         edit(PIG, "family: gaussian}", "family: gaussian, variance: '~ 1'}"), at=("responses", 0, "variance"),
         hint=None, todo="H4: no hint (drop `variance:` or add a covariate)"),
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
         hint=None, todo="H4: no hint (drop `variance:` or use family: gaussian)"),
    Case("variance_and_variance_by", ((INIT, "give either variance_by"),),
         edit(PIG, "family: gaussian}", "family: gaussian, variance_by: half, variance: '~ C(half)'}"), at=("responses", 0),
         hint="'~ C(col)' is the formula form of variance_by: col"),
    Case("select_overlap", ((INIT, "overlaps an earlier equation"),), edit(TWO_EQ, "select: {third: [b]}", "select: {third: [b, a]}"),
         at=("responses", 1, "select"), hint=None, now_at=("responses", 1),
         todo="H4: point at responses.1.select; no hint (each row in one equation's select)"),
    Case("select_no_rows", ((INIT, "selects no rows"),), edit(TWO_EQ, "select: {third: [b]}", "select: {third: [z]}"),
         at=("responses", 1, "select"), hint=None, now_at=("responses", 1),
         todo="H4: point at responses.1.select; no hint (list the values the column has)"),
    Case("ordinal_value_not_in_categories", ((INIT, "ordinal response has values"),),
         edit(WINE, "family: ordinal}", "family: ordinal, categories: [1, 2, 3, 4]}"), at=("responses", 0, "categories"),
         hint=None, now_at=("responses", 0), todo="H4: point at responses.0.categories, name the column; no hint (add them to categories:)"),
    Case("response_not_numeric", ((INIT, "must be numeric for family"),),
         edit(PIG, '"weight ~ week"', '"label ~ week"', "{name: weight,", "{name: label,"), at=("responses", 0),
         column="label", hint=None, todo="H4: no hint (recode the column, or family: ordinal)"),
    Case("trials_not_binomial", ((INIT, "trials is only for the binomial family"),),
         edit(CBPP, "family: binomial, trials: size}", "family: poisson, trials: size}"), at=("responses", 0, "trials"),
         hint=None, todo="H4: no hint (drop trials: or use family: binomial)"),
    Case("exposure_not_positive", ((INIT, "must be positive"),),
         edit(CBPP, "family: binomial, trials: size}", "family: poisson, exposure: size}", "data/cbpp.csv", "data/cbpp0.csv"),
         files={"data/cbpp0.csv": (SPECS / "data" / "cbpp.csv").read_text().replace('"1",2,14,"1"', '"1",2,0,"1"')},
         at=("responses", 0, "exposure"), column="size", hint=None, todo="H4: no hint (exposure must be > 0; drop rows or use offset)"),
    Case("family_rejects_response", ((INIT, ", column '"), (FAMILIES, "rows do not; first rows (0-based)")),
         edit(PIG, "family: gaussian}", "family: binomial}"), at=("responses", 0), column="weight", hint="must be 0 or 1"),
    Case("ordinal_single_category", ((FAMILIES, "needs at least 2 categories"),),
         edit(WINE, "data/wine.csv}", "data/wine.csv, filter: [{column: rating, op: '==', value: 1}]}"), at=("responses", 0),
         column="rating", hint=None, todo="H4: no hint (check the filter, or another family)"),
    Case("ordinal_code_unobserved", ((FAMILIES, "with every category observed"),),
         edit(WINE, "data/wine.csv}", "data/wine.csv, filter: [{column: rating, op: '!=', value: 3}]}",
              "family: ordinal}", "family: ordinal, categories: [1, 2, 3, 4, 5]}"), at=("responses", 0),
         column="rating", hint=None, todo="H4: no hint; compile's own 'never occur' message (with its hint) should come first"),
    Case("ordinal_category_never_occurs", ((INIT, "never occur, so their thresholds are not identified"),),
         edit(WINE, "family: ordinal}", "family: ordinal, categories: [1, 2, 3, 4, 5, 6]}"), at=("responses", 0, "categories"),
         hint="drop them from `categories:`", now_at=("responses", 0), todo="H4: point at responses.0.categories"),
    Case("rows_in_no_equation", ((INIT, "rows are selected by no response equation"),), TWO_EQ, at=("responses",),
         hint="extend the `select:` lists", now_at=(), todo="H4: point at responses"),
    Case("ordinal_design_spans_constant", ((INIT, "add up to a constant, which the ordinal thresholds"),),
         edit(WINE, '"rating ~ temp + contact"', '"rating ~ 0 + contact"'), at=("fixed",),
         hint="write the formula with an intercept"),
    Case("constraint_unknown_parameter", ((INIT, "which is not a parameter"),), PIG + "constraints: {fix: {wek: 0}}\n",
         at=("constraints", "fix"), hint="did you mean 'week'?"),
    Case("constraint_negative_sd", ((INIT, "is a standard deviation or shape"),), PIG + "constraints: {fix: {sd(Residual): -1}}\n",
         at=("constraints", "fix", "sd(Residual)"), hint="fix it at a value >= 0", now_at=("constraints", "fix"), todo="H4: point at the parameter's key"),
    Case("constraint_correlation_range", ((INIT, "is a correlation; fix it in [-1, 1]"),),
         PIG_UN + 'constraints: {fix: {"corr(week,_cons)@pig": 2}}\n', at=("constraints", "fix", "corr(week,_cons)@pig"),
         hint="fix it in [-1, 1]", now_at=("constraints", "fix"), todo="H4: point at the parameter's key"),
    Case("constraint_equal_single", ((INIT, "needs at least two parameters"),), PIG + "constraints: {equal: [[week]]}\n",
         at=("constraints", "equal", 0), hint=None, now_at=("constraints", "equal"),
         todo="H4: point at constraints.equal.0; no hint (name two or more)"),
    Case("constraint_equal_mixed_kinds", ((INIT, "mixes parameters of different kinds"),),
         PIG + "constraints: {equal: [[week, sd(Residual)]]}\n", at=("constraints", "equal", 0), hint=None,
         now_at=("constraints", "equal"), todo="H4: point at constraints.equal.0; no hint (group parameters of one kind)"),
    Case("constraint_equal_fixed", ((INIT, "are fixed; free them"),),
         PIG + "constraints: {fix: {week: 1}, equal: [[week, Intercept]]}\n", at=("constraints", "equal", 0),
         hint="fix the whole group with constraints.fix", now_at=("constraints", "equal"), todo="H4: point at constraints.equal.0"),
    Case("no_rows_left", ((INIT, "no rows left after dropping rows with missing values"),),
         edit(PIG, '"weight ~ week"', '"weight ~ empty"'), at=("fixed",), hint=None, now_at=(),
         todo="H3/H4: name the columns whose missing values emptied the data (issue 7 'Data'); no hint"),
    Case("ordinal_with_intercept", ((INIT, "ordinal models have thresholds instead of an intercept"),),
         edit(TWO_EQ, "{name: weight, family: gaussian, select: {third: [a]}}", "{name: weight, family: ordinal, select: {third: [a, c]}}"),
         at=("fixed",), hint="write the formula with `0 +`"),
    # --- compile/design.py ----------------------------------------------------------------------------------
    Case("formula_syntax", ((DESIGN, "cannot parse formula"),), edit(PIG, '"weight ~ week"', '"weight ~ (week"'), at=("fixed",),
         hint=None, todo="H1: formulaic's multi-line message with terminal colour codes; no hint"),
    Case("formula_node_not_allowed", ((DESIGN, "which is not allowed; use column names"),),
         edit(PIG, '"weight ~ week"', '"weight ~ week.__class__"'), at=("fixed",), hint="use column names, numbers"),
    Case("formula_function_not_allowed", ((DESIGN, "is not allowed; allowed functions are"),),
         edit(PIG, '"weight ~ week"', '"weight ~ open(week)"'), at=("fixed",), hint="allowed functions are"),
    Case("fixed_design_rank_deficient", ((DESIGN, "is rank deficient"),),
         edit(PIG, '"weight ~ week"', '"weight ~ week + I(2 * week)"'), at=("fixed",), hint="drop or recode a term",
         now_at=(), todo="H1/H4: point at fixed"),
    # --- compile/latent.py ----------------------------------------------------------------------------------
    Case("random_term_not_numeric", ((LATENT, "must be numeric (found"),), edit(PIG, "terms: [1, week]", "terms: [1, label]"),
         at=("random", 0, "terms"), column="label", hint="use `by:` loadings for categories", now_at=("random",), todo="H4: point at random.0.terms"),
    Case("random_term_twice", ((LATENT, "appears twice at level"),), edit(PIG, "terms: [1, week]", "terms: [1, week, week]"),
         at=("random", 0, "terms"), hint=None, now_at=("random",), todo="H4: point at random.0.terms; no hint (list each term once)"),
    Case("covariance_fix_negative", ((LATENT, "variances must be >= 0"),),
         edit(ABORTION, "covariance: {person: independent}", "covariance: {person: {type: independent, fix: {var(extreme): -1}}}"),
         at=("covariance", "person", "fix"), hint=None, now_at=(), todo="H4: point at covariance.person.fix; no hint"),
    Case("covariance_fix_not_understood", ((LATENT, "not understood; write 'var(NAME): value'"),),
         edit(ABORTION, "covariance: {person: independent}", 'covariance: {person: {fix: {"cov(general,extreme)": 0}}}'),
         at=("covariance", "person", "fix"), hint="write 'var(NAME): value'", now_at=("covariance", "person"),
         todo="H4: point at covariance.person.fix"),
    Case("loadings_only_not_categories", ((LATENT, "not categories of"),),
         edit(ABORTION, "only: [defect, risk, rape]", "only: [defect, risk, rapes]"), at=("latent", 1, "loadings", "only"),
         column="item", hint=None, now_at=("latent",), todo="H4: point at latent.1.loadings.only (issue 7 'Location'); no hint"),
    Case("loading_fix_unknown", ((LATENT, "is not among its loadings"),), edit(ABORTION, "fix: {woman: 1}", "fix: {women: 1}"),
         at=("latent", 0, "loadings", "fix"), hint=None, now_at=("latent",), todo="H4: point at latent.0.loadings.fix; no hint"),
    Case("b_to_lower_level", ((LATENT, "can only be regressed on latent variables at the same or a higher level"),),
         edit(ABORTION, "B: {general: {general_district: 1}}", "B: {general: {general_district: 1}, general_district: {extreme: free}}"),
         at=("structural", "B", "general_district", "extreme"), hint=None, now_at=("structural",),
         todo="H4: point at structural.B; no hint (reverse the arrow or move the variable up)"),
    Case("gamma_term_expands", ((LATENT, "expands to"),), edit(ABORTION, "  B: {general: {general_district: 1}}\n",
                                                              "  B: {general: {general_district: 1}}\n  Gamma: {general: {C(wave): free}}\n"),
         at=("structural", "Gamma", "general", "C(wave)"), hint="give numeric terms one at a time", now_at=("structural", "Gamma"),
         todo="H4: point at the Gamma term"),
    Case("loadings_all_fixed_zero", ((LATENT, "every loading is fixed at zero"),),
         edit(ABORTION, "only: [defect, risk, rape], fix: {defect: 1}", "only: [defect], fix: {defect: 0}"),
         at=("latent", 1), hint="free a loading or remove it", now_at=("latent",), todo="H4: point at latent.1"),
    Case("latent_without_role", ((LATENT, "has no loadings and no role in structural.B"),),
         edit(ABORTION, "  B: {general: {general_district: 1}}\n", "  B: {}\n"), at=("latent", 2),
         hint="give it loadings or use it as a predictor in B", now_at=("latent",), todo="H4: point at latent.2"),
    Case("latent_without_scale", ((LATENT, "has no fixed scale"),), edit(ABORTION, "{by: item, fix: {woman: 1}}", "{by: item}"),
         at=("latent", 0, "loadings"), hint="Fix one loading", now_at=("latent",), todo="H4: point at latent.0.loadings"),
    # --- compile/start_from.py ------------------------------------------------------------------------------
    Case("start_from_outside", ((START, "@apply_start_from"),), PIG + "estimation: {start_from: ../old.json}\n",
         at=("estimation", "start_from"), hint="put the file inside it", now_at=(),
         todo="H4 (pipeline.py): start_from's re-raised confinement error loses its key, so it lands at 1:1"),
    Case("start_from_missing", ((START, "estimation.start_from: no file"),), PIG + "estimation: {start_from: old.json}\n",
         at=("estimation", "start_from"), hint="the path is relative to the spec file"),
    Case("start_from_not_results", ((START, "is not an mlmrun results.json"),), PIG + "estimation: {start_from: old.json}\n",
         files={"old.json": '{"loglik": -1}'}, at=("estimation", "start_from"), hint="a 'parameters' list of {name, estimate}"),
    Case("start_from_names_nothing", ((START, "names none of this model's free parameters"),),
         PIG + "estimation: {start_from: old.json}\n", files={"old.json": '{"parameters": [{"name": "zzz", "estimate": 1}]}'},
         at=("estimation", "start_from"), hint="sd(Residual)"),
    # --- likelihood/plan.py (checked by validate) ------------------------------------------------------------
    Case("crossed_level_non_gaussian", ((PLAN, "cannot be integrated by nested quadrature"),),
         edit(CBPP, "{name: herd, id: herd}", "{name: herd, id: herd, crossed: true}"), at=("levels", 0, "crossed"),
         hint="need all-gaussian responses", now_at=("estimation", "integration"), todo="H4: point at the crossed level (issue 7 'Location')"),
    Case("laplace_with_points", ((PLAN, "laplace uses one adaptive point per dimension"),),
         edit(CBPP, "{integration: {points: 5}}", "{integration: {method: laplace, points: 5}}"),
         at=("estimation", "integration", "points"), hint="drop `points`"),
    Case("laplace_with_check_points", ((PLAN, "the Laplace approximation has no points to vary"),),
         edit(CBPP, "{integration: {points: 5}}", "{integration: {method: laplace}, check_points: [5]}"),
         at=("estimation", "check_points"), hint="use `method: adaptive`"),
    Case("points_unknown_level", ((PLAN, "give points for the levels with latent variables"),),
         edit(CBPP, "{points: 5}", "{points: {herds: 5}}"), at=("estimation", "integration", "points"), hint="['herd']"),
    Case("adapt_mean_one_point", ((PLAN, "`mean` places nodes from posterior moments"),),
         edit(CBPP, "{points: 5}", "{points: 1, adapt: mean}"), at=("estimation", "integration", "adapt"), hint="use `adapt: mode`"),
    Case("points_zero", ((PLAN, "estimation.integration.points: need at least 1 point"),), edit(CBPP, "{points: 5}", "{points: 0}"),
         at=("estimation", "integration", "points"), hint=None, todo="H4: no hint (points: 1 or more)"),
    Case("check_points_unknown_level", ((PLAN, "are not levels with latent variables"),),
         edit(CBPP, "{integration: {points: 5}}", "{integration: {points: 5}, check_points: [{herds: 7}]}"),
         at=("estimation", "check_points"), hint="give points for ['herd']"),
    Case("check_points_zero", ((PLAN, "estimation.check_points: need at least 1 point"),),
         edit(CBPP, "{integration: {points: 5}}", "{integration: {points: 5}, check_points: [0]}"),
         at=("estimation", "check_points"), hint=None, todo="H4: no hint"),
    # --- estimate/__init__.py through `mlmrun fit` (cli.py adds the location) --------------------------------
    Case("reml_non_gaussian", (("estimate/__init__.py", "REML is only defined for linear Gaussian models"), ("cli.py", "@cmd_fit")),
         CBPP.replace("estimation: {integration: {points: 5}}", "estimation: {method: REML, integration: {points: 5}}"),
         command="fit", at=("estimation", "method"), hint="write `method: ML`", now_at=("estimation",),
         todo="H4: check in validate too (issue 7 'validate = fit's checks'), at estimation.method"),
]

EXEMPT: dict[tuple[str, str], str] = {
    (DESIGN, "cannot read term"): "backstop after formulaic's parser, which never yields a factor that is neither a "
                                  "Python expression nor identifier-like (tried: every pair of ASCII punctuation in 4 "
                                  "positions); H1 replaces this check with a grammar",
    (LATENT, "\x00: column '\x00' is not in the data"): "_check_columns reports every missing column (with did-you-mean) before compile_latent runs",
    (LATENT, "loadings.by column"): "_check_columns reports a missing loadings.by column before compile_latent runs",
    (FAMILIES, "must be one-dimensional"): "compile passes 1-D slices; kept for direct callers of Family.validate "
                                           "(tests/families/test_validate.py)",
    (FAMILIES, "response must be numeric, got dtype"): "compile rejects non-numeric responses first (response_not_numeric); "
                                                       "tests/families/test_validate.py",
    (FAMILIES, "trials must have one value per row"): "compile slices trials with the response rows; tests/families/test_validate.py",
    (FAMILIES, "trials must be numeric, got dtype"): "compile converts trials with to_numpy(dtype=float) first (a text column is an "
                                                     "internal error today: H3/H4, issue 7 'Data'); tests/families/test_validate.py",
}
"""Raise sites no spec can reach through the CLI, with the reason."""

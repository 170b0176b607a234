"""The YAML spec language (spec_version 1) as pydantic models.

A spec names its data, the levels of the hierarchy, one or more response
equations (family and link), the fixed part as a formula, random effects
(shorthand for latent variables with loadings fixed at 1), latent variables
with loadings, the structural model (B, Gamma), and estimation settings.
Cross-reference checks (declared levels, unique names, B acyclic, repeated
items) live in mlmrun/compile/spec_checks.py, where each problem is located
at its YAML key; no I/O happens here.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal, Union

from pydantic import AfterValidator, Field, model_validator

from mlmrun.spec.base import SpecNode

Scalar = Union[float, int, str]


def _finite(value: float) -> float:
    if not math.isfinite(value):
        raise ValueError(f"{value} is not a finite number; write a number such as 1 or 0.5")
    return value


Finite = Annotated[float, AfterValidator(_finite)]
"""A number that is not inf or nan (a parameter value: fixed, started or constrained)."""


class RowFilter(SpecNode):
    """Keep only rows where `column op value` holds (e.g. nstu > 4)."""

    column: str
    """Column to test."""
    op: Literal["==", "!=", ">", ">=", "<", "<="]
    """Comparison operator."""
    value: Scalar
    """Value to compare with."""


class Stack(SpecNode):
    """Wide-to-long stacking: one output row per (input row, stacked column)."""

    columns: list[str] = Field(min_length=1)
    """Wide columns holding the responses (one per item)."""
    item: str = "item"
    """Name of the new column holding which wide column a row came from."""
    value: str = "y"
    """Name of the new column holding the stacked value."""
    id: str | None = None
    """Name of a new column numbering the original rows (1, 2, ...), for use as a level id."""
    labels: dict[str, str] | None = None
    """Optional item labels: wide column -> category label written into `item`."""


class DataSpec(SpecNode):
    """Where the data come from and how they are prepared."""

    path: str
    """CSV (or .parquet/.dta) file, relative to the spec file."""
    filter: list[RowFilter] = Field(default_factory=list)
    """Row filters, all of which must hold."""
    stack: Stack | None = None
    """Wide-to-long stacking, applied after filtering."""
    provenance: str | None = None
    """Where the data come from (free text, shown in the report)."""


class Level(SpecNode):
    """A level of the hierarchy above the rows (level 1 is the row)."""

    name: str
    """Level name used elsewhere in the spec (e.g. pig, school)."""
    id: str
    """Column identifying the units of this level."""
    crossed: bool = False
    """True for a factor crossed with the hierarchy (lme4's (1|week), Stata's _all: R.week)."""
    within_parent: bool = False
    """True when ids restart within each unit of the level above (ids are then combined with the parent's)."""
    pweight: str | None = None
    """Sampling weight of this level's units (inverse selection probability given the unit above): a column constant within each unit (gllamm's pweight(), Stata's `|| id:, pweight()`)."""


class ChoiceSpec(SpecNode):
    """Multinomial and ranking responses: how the data hold choice sets (no reshaping by hand)."""

    layout: Literal["per_choice", "per_alternative"]
    """per_choice: one row per choice, the response column holds the chosen alternative (rows are expanded to one per alternative); per_alternative: one row per alternative (gllamm's expanded form), the response is 1 for the chosen row and 0 for the others (ranking: the rank, 1 = first, 0 = unranked)."""
    alternatives: str = "alternative"
    """per_alternative: the column naming each row's alternative; per_choice: the name of the column created for it (usable in `latent:` loadings and formulas)."""
    set: str | None = None
    """per_alternative: the column identifying the choice set (chooser or choice occasion) of each row."""
    base: Scalar | None = None
    """Base alternative, whose constant and case coefficients are 0 (default: the first alternative, in sorted order or as `alternatives_order` lists them)."""
    case: str = "~ 1"
    """One-sided formula of chooser (case) covariates with one coefficient per non-base alternative, named ALTERNATIVE:TERM; its intercept gives the alternative constants ('~ 0' for none)."""
    alternatives_order: list[Scalar] | None = None
    """per_choice: the alternatives (default: the distinct values of the response, sorted)."""


class Censoring(SpecNode):
    """Censored gaussian responses (tobit, interval regression): which rows are known only as bounds."""

    left: str | None = None
    """Column of 0/1: 1 = left-censored, the true value is at most the response (tobit at a floor)."""
    right: str | None = None
    """Column of 0/1: 1 = right-censored, the true value is at least the response."""
    upper: str | None = None
    """Column of upper bounds: the true value lies between the response and this column (equal: observed exactly)."""

    @model_validator(mode="after")
    def _some_column(self) -> Censoring:
        if not (self.left or self.right or self.upper):
            raise ValueError("name at least one of `left`, `right` (0/1 indicator columns) or `upper` (a bound column)")
        return self


class CompositeTerm(SpecNode):
    """One added linear predictor of a composite link: mean = g^-1(nu) + sum of h^-1(formula's predictor)."""

    formula: str
    """One-sided formula of the added predictor ('~ 1', '~ x'): fixed effects only."""
    link: Literal["log", "logit", "identity"] = "log"
    """Its inverse link h^-1 (poisson: log or logit, so the mean stays positive)."""


class Residuals(SpecNode):
    """Covariance of a gaussian equation's residuals within the units of the lowest level (Stata mixed: residuals())."""

    structure: Literal["independent", "exchangeable", "ar", "ma", "unstructured", "banded", "toeplitz",
                       "exponential"] = "independent"
    """independent (default), exchangeable, ar (order p), ma (order q), unstructured, banded (order q), toeplitz (order q) or exponential."""
    time: str | None = None
    """Time column: integer for ar, ma, banded, toeplitz and unstructured (lags are differences of its values, so gaps count); real for exponential."""
    by: str | None = None
    """Estimate a separate set of residual parameters per category of this column (Stata's by())."""
    order: int | None = Field(default=None, ge=1, le=100)
    """Order of ar, ma, banded and toeplitz (default 1); smaller than the largest cluster size."""


class Equation(SpecNode):
    """A response equation: the family and link of the rows it selects."""

    name: str
    """Response column."""
    family: Literal["gaussian", "binomial", "poisson", "gamma", "ordinal", "nbinom2", "nbinom1", "multinomial",
                    "ranking"] = "gaussian"
    """Response distribution (nbinom2: Var = mu + mu^2/theta; nbinom1: Var = mu (1 + phi))."""
    link: Literal["identity", "log", "logit", "probit", "cloglog"] | None = None
    """Link function (default: canonical for the family; ordinal: logit)."""
    trials: str | None = None
    """Binomial: column with the number of trials (denominator)."""
    success: Scalar | None = None
    """Binomial: the value of a two-valued text or category response column that counts as 1 (e.g. `Yes`); the other value is 0."""
    offset: str | None = None
    """Column added to the linear predictor with coefficient 1."""
    exposure: str | None = None
    """Poisson: column whose log is added to the linear predictor."""
    select: dict[str, list[Scalar]] | None = None
    """Mixed responses: this equation covers rows whose column has one of these values (gllamm's fv()/lv())."""
    variance_by: str | None = None
    """Gaussian: one residual SD per category of this column (level-1 heteroscedasticity)."""
    variance: str | None = None
    """Gaussian: one-sided formula ('~ x + C(item)') for the log residual SD: log sd_i = log sd(Residual) + s_i' alpha (gllamm's s(); the formula's intercept is dropped)."""
    categories: list[Scalar] | None = None
    """Ordinal: the ordered categories (default: sorted distinct values)."""
    thresholds: str | None = None
    """Ordinal: one-sided formula ('~ x') whose covariates shift every threshold separately (non-proportional odds; clm's nominal=, gllamm's thresh()); its intercept is dropped."""
    scale: str | None = None
    """Ordinal: one-sided formula ('~ z') for the log SD of the latent response (clm's scale=); its intercept is dropped."""
    choice: ChoiceSpec | None = None
    """Multinomial and ranking: the layout of the choice sets, the base alternative and the case covariates."""
    zero_inflation: str | None = None
    """Poisson, nbinom2, nbinom1: one-sided formula for the logit of the structural-zero probability ('~ 1', '~ x')."""
    censoring: Censoring | None = None
    """Gaussian: left, right or interval censoring given by columns (tobit models)."""
    composite: list[CompositeTerm] | None = Field(default=None, min_length=1, max_length=8)
    """Poisson, gaussian: composite link (gllamm's composite()): linear predictors added to the mean, each through its own inverse link."""
    residuals: Residuals | None = None
    """Gaussian: residual covariance structure within the units of the lowest level (default independent)."""


class Distribution(SpecNode):
    """The distribution of a latent variable: normal (default) or discrete mass points (NPMLE, gllamm's ip(f))."""

    discrete: Union[Annotated[int, Field(ge=1, le=50)], Literal["auto"], None] = None
    """Number of mass points with free locations and probabilities, or 'auto' to add points while the Gateaux derivative is positive."""
    starts: int = Field(default=5, ge=1, le=200)
    """Seeded random starting values tried (the best log likelihood is kept; the spread is reported)."""
    seed: int = Field(default=1, ge=0)
    """Seed of the random starting values (start 1 is deterministic, starts 2.. are drawn from this seed)."""


class RandomBlock(SpecNode):
    """Random intercepts/coefficients varying over a level: latent variables with loadings fixed at 1."""

    level: str
    """Level the effects vary over."""
    terms: list[Union[int, str]] = Field(min_length=1)
    """1 for the intercept, otherwise numeric column names (random slopes)."""
    covariance: Literal["independent", "identity", "exchangeable", "unstructured"] = "independent"
    """Covariance structure of the block (Stata mixed: cov())."""
    distribution: Distribution | None = None
    """`{discrete: K}`: the block's terms take K mass-point vectors with free locations and probabilities (normal if omitted)."""


class Loadings(SpecNode):
    """Factor loadings: on categories of a variable (`by`) or on covariates (`on`)."""

    by: str | None = None
    """Loadings per category of this column (items)."""
    on: list[Union[int, str]] | None = Field(default=None, min_length=1)
    """Loadings on these numeric columns (a latent variable times a covariate); 1 is the constant."""
    only: list[Scalar] | None = Field(default=None, min_length=1)
    """With `by`: categories the factor loads on (default: all)."""
    fix: dict[Union[int, str], Finite] = Field(default_factory=dict)
    """Loadings fixed at a value (category or column -> value)."""
    equal: list[list[Scalar]] = Field(default_factory=list)
    """Groups of categories/columns whose loadings are constrained equal."""
    start: dict[Union[int, str], Finite] = Field(default_factory=dict)
    """Starting values for free loadings."""

    @model_validator(mode="after")
    def _by_or_on(self) -> Loadings:
        if (self.by is None) == (self.on is None):
            raise ValueError("give exactly one of `by: COLUMN` (item loadings) or `on: [COLUMNS]` (covariate loadings)")
        return self


class LatentVariable(SpecNode):
    """A latent variable (factor or random effect) at a level."""

    name: str
    """Name used in the structural model and reports."""
    level: str
    """Level whose units the latent variable varies over."""
    loadings: Loadings | None = None
    """How it enters the linear predictor; omit for a latent variable that acts only through B."""
    variance: Finite | None = None
    """Fix the (disturbance) variance at this value (identification by variance); omit to estimate it."""
    distribution: Distribution | None = None
    """`{discrete: K}` or `{discrete: auto}`: K mass points with free locations and probabilities (NPMLE; normal if omitted)."""
    classes: Annotated[int, Field(ge=2, le=50)] | None = None
    """A latent class variable with this many classes: `loadings` name the class-specific intercepts (`by: item`) or coefficients (`on: [1, x]`); Gamma gives a multinomial logit for the class probabilities."""
    class_scale: bool = False
    """Latent classes only: every gaussian residual SD (gamma shape) is class-specific, its value times exp(lnscale{k}), class 1's shift fixed at 0."""


class Structural(SpecNode):
    """Structural model eta = B eta + Gamma w + zeta."""

    B: dict[str, dict[str, Union[Finite, Literal["free"]]]] = Field(default_factory=dict)
    """B[outcome][predictor]: a number (fixed) or 'free'; predictor at the same or a higher level."""
    Gamma: dict[str, dict[str, Union[Finite, Literal["free"]]]] = Field(default_factory=dict)
    """Gamma[latent][covariate]: a number (fixed) or 'free' (MIMIC / gllamm geqs); covariates are columns or formula terms such as age:bus."""


class CovarianceSpec(SpecNode):
    """Covariance of the latent variables (from `latent:`) at one level."""

    type: Literal["independent", "unstructured"] = "unstructured"
    """independent: zero covariances; unstructured: all covariances free."""
    fix: dict[str, Finite] = Field(default_factory=dict)
    """Fixed elements: 'cov(a,b)' or 'var(a)' -> value."""


class Weights(SpecNode):
    """Row weights: frequency weights and level-1 sampling weights (level weights go on `levels[k].pweight`)."""

    fweight: str | None = None
    """Frequency weights: a column of non-negative integers, each row counting as that many identical rows."""
    pweight: str | None = None
    """Sampling weights of the rows (inverse selection probability given the unit above; Stata's [pw=])."""
    pwscale: Literal["size", "effective", "gk"] | None = None
    """Two-level models: rescale the row pweights within each unit to sum to its size (`size`), to its effective size (`effective`), or move them to the level above (`gk`, Graubard & Korn); Stata's pwscale()."""


class VceCluster(SpecNode):
    """Robust standard errors clustered on a level (or a column) at or above the top level."""

    cluster: str
    """A level name or a data column whose units contain whole top-level units."""


class Integration(SpecNode):
    """Numerical integration over the latent variables (non-Gaussian models)."""

    method: Literal["adaptive", "laplace", "ghq"] = "adaptive"
    """adaptive Gauss-Hermite (default; nested levels only), laplace (the joint Laplace approximation over all
    random effects: crossed or nested levels), ghq (non-adaptive)."""
    points: Union[int, dict[str, int]] = 8
    """Points per dimension, or per level name."""
    adapt: Literal["mode", "mean"] = "mode"
    """Centre/scale nodes at the posterior mode and curvature, or posterior mean and SD (gllamm)."""


class Distributed(SpecNode):
    """One fit over several Dask workers: the data a partitioned Parquet folder, the likelihood a sum over them."""

    scheduler: str | None = None
    """Address of a running Dask scheduler (e.g. tcp://10.0.0.5:8786); null: start a local cluster. Honoured
    only with --allow-outside-data (a spec you trust); otherwise pass --scheduler on the command line."""
    workers: int = Field(default=2, ge=1, le=1024)
    """Workers of the local cluster started when `scheduler` is null (at most this machine's cores)."""


class Estimation(SpecNode):
    """Estimation settings."""

    method: Literal["ML", "REML"] = "ML"
    """Maximum likelihood or restricted ML (REML: linear Gaussian models only)."""
    integration: Integration = Field(default_factory=Integration)
    """Integration settings for models that need quadrature."""
    check_points: list[Union[int, dict[str, int]]] | None = Field(default=None, max_length=8)
    """At most 8 entries (each costs an evaluation at the optimum). Re-evaluate at these points and report the change in log likelihood and estimates: a number (points per dimension at every level) or points per level name (levels not named keep their fitted points)."""
    start: dict[str, Finite] = Field(default_factory=dict)
    """Starting values by parameter name."""
    start_from: str | None = None
    """A previous results.json (relative to the spec) to start from (gllamm's from())."""
    max_iter: int = Field(default=500, ge=1, le=10_000)
    """Maximum optimiser iterations (at most 10,000: a spec's cost is bounded)."""
    tol: float = Field(default=1e-8, gt=0, allow_inf_nan=False)
    """Convergence tolerance on the relative change in log likelihood."""
    exact: bool = True
    """Use the exact Gaussian likelihood when every response is gaussian/identity (false: force quadrature)."""
    memory_budget_gib: float = Field(default=4.0, gt=0, allow_inf_nan=False)
    """Largest memory (GiB) the quadrature may need; `mlmrun validate` refuses integration settings whose estimated peak exceeds it."""
    vce: Union[Literal["oim", "robust"], VceCluster, None] = None
    """Standard errors: `oim` (observed information), `robust` (sandwich, clustered at the top level) or `{cluster: VAR}`; default robust with sampling weights, else oim."""
    distributed: Distributed | None = None
    """Fit over Dask workers (docs/distributed.md): each holds some partitions of a partitioned Parquet `data.path` folder; the log likelihood is their sum."""
    meanstructure: bool = True
    """false: no item intercepts are estimated (lavaan's default for complete data): the means are the sample means and are not counted as parameters, so n_params, AIC and BIC match lavaan's. Needs complete data and a fixed part that gives every item its own mean (e.g. '~ 0 + C(item)')."""


class Constraints(SpecNode):
    """Constraints on any parameter, by its name in the parameter table (`mlmrun validate --show-partable` lists them)."""

    fix: dict[str, Finite] = Field(default_factory=dict)
    """Parameters fixed at a value, e.g. {"corr(week,_cons)@pig": 0, "x": 1}."""
    equal: list[list[str]] = Field(default_factory=list)
    """Groups of parameters constrained equal, e.g. [["sd(a)@school", "sd(b)@school"]]."""


class ResidualPair(SpecNode):
    """One residual covariance between two items of a unit (lavaan's `y1 ~~ y5`)."""

    between: list[Scalar] = Field(min_length=2, max_length=2)
    """The two items (categories of `residual_covariances.by`)."""
    fix: Finite | None = None
    """Fix the covariance at this value (any sign); omit to estimate it."""
    start: Finite | None = None
    """Starting value of a free covariance (default 0)."""


class ResidualCovariances(SpecNode):
    """Covariances between the residuals of a unit's gaussian responses (items), lavaan's `y1 ~~ y5`.

    Each pair adds one parameter `cov(Residual:A,B)`, free unless fixed here; set pairs equal
    with `constraints.equal` and fix them with `constraints.fix` by that name, as any parameter.
    """

    by: str | None = None
    """Column naming the item of each row (default: the response's `variance_by`, else data.stack.item)."""
    pairs: list[Union[list[Scalar], ResidualPair]] = Field(min_length=1)
    """Pairs of items, [A, B] (free) or {between: [A, B], fix: value}."""


class Report(SpecNode):
    """Where results go."""

    dir: str | None = None
    """Output directory (relative to the current directory; default reports/<name>)."""
    title: str | None = None
    """Report title."""
    digits: int = Field(default=4, ge=0, le=12)
    """Decimals of estimates, standard errors and intervals in the report (every such column aligned on the decimal point; z: 2, p-values: 3, as Stata prints them)."""
    top_units: int = Field(default=50, ge=2, le=2000)
    """Units per caterpillar plot of the empirical Bayes predictions: all when there are at most this many, else the lowest and highest half of it."""


class Spec(SpecNode):
    """An mlmrun model specification."""

    spec_version: Literal[1] = 1
    """Version of the spec language."""
    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]+$")]
    """Model name (letters, digits, _ . -); used for the default report directory."""
    description: str | None = None
    """Free text shown in the report."""
    data: DataSpec
    """Data source."""
    levels: list[Level] = Field(default_factory=list)
    """Levels above the rows, lowest first (nested in that order unless crossed)."""
    responses: list[Equation] = Field(min_length=1)
    """Response equations (several for mixed responses, each with `select`)."""
    fixed: str
    """Fixed part as a formula, e.g. 'weight ~ week' or 'resp ~ 0 + C(item)'."""
    random: list[RandomBlock] = Field(default_factory=list)
    """Random intercepts and coefficients (shorthand for latent variables)."""
    latent: list[LatentVariable] = Field(default_factory=list)
    """Latent variables with loadings."""
    structural: Structural = Field(default_factory=Structural)
    """Structural model among latent variables."""
    weights: Weights | None = None
    """Frequency and sampling weights (the fit maximises the log pseudolikelihood with sampling weights)."""
    covariance: dict[str, Union[Literal["independent", "unstructured"], CovarianceSpec]] = Field(
        default_factory=dict
    )
    """Covariance structure of the `latent:` variables per level (default unstructured)."""
    constraints: Constraints = Field(default_factory=Constraints)
    """Fix any parameter or set parameters equal, by parameter-table name."""
    residual_covariances: ResidualCovariances | None = None
    """Residual covariances between items within a unit (gaussian responses; the moments engine fits them)."""
    estimation: Estimation = Field(default_factory=Estimation)
    """Estimation settings."""
    report: Report = Field(default_factory=Report)
    """Report settings."""

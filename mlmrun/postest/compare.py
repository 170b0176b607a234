"""Compare fitted models: log likelihood, parameters, AIC, BIC and LR tests of nested pairs (Stata's lrtest).

Every model enters as its results.json document (a spec is fitted in-process
and rendered into the same document), so a fit from yesterday and one made now
compare alike. Models must come from the same data rows (data SHA-256 and rows
used) and comparable methods: ML with ML; REML only with REML and identical
fixed parts (restricted likelihoods of different fixed parts are not comparable).

Nesting is read off the parameter tables: B nests A when A has fewer free
parameters and every free parameter of A is free in B. The parameters B frees
in addition are the tested ones. Their null values put variances on the
boundary of the parameter space, so the LR statistic is not chi2(df):

- one variance alone: 50:50 mixture of chi2(0) and chi2(1) (chibar2(01));
- one variance and its covariances with the k-1 variances kept in A:
  50:50 mixture of chi2(k-1) and chi2(k) (Self & Liang 1987, Stram & Lee 1994);
- other tests involving variances: chi2(df), with Stata's note that it is conservative;
- a count dispersion (Poisson within NB) as a variance; zero-inflation terms: chi2(df), conservative;
- no variance tested (fixed effects): chi2(df).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scipy.special import chdtrc

from mlmrun.errors import MlmrunError
from mlmrun.estimate.inference import LR_ZERO
from mlmrun.results import FitResult

if TYPE_CHECKING:
    from mlmrun.pipeline import Prepared

CONSERVATIVE_NOTE = ("Note: The reported degrees of freedom assumes the null hypothesis is not on the boundary of the "
                     "parameter space. If this is not true, then the reported test is conservative.")
REQUIRED_KEYS = ("loglik", "n_params", "parameters", "data", "method")
_SD = re.compile(r"^sd\((.*)\)@(.*)$")
_CORR = re.compile(r"^corr\((.*),(.*)\)@(.*)$")


class ComparisonError(MlmrunError):
    """Models that cannot be compared (different data or methods), or an unreadable results file."""


@dataclass(frozen=True)
class Candidate:
    """One model to compare: its label (the path given), its results document and, when fitted here, the fit."""

    label: str
    doc: dict[str, Any]
    fit: FitResult | None = None

    @property
    def free(self) -> dict[str, str]:
        """Free, non-derived parameters: name -> block."""
        derived = set(self.doc.get("derived", []))
        return {p["name"]: p["block"] for p in self.doc["parameters"] if p.get("free") and p["name"] not in derived}

    @property
    def fixed_part(self) -> list[str]:
        return sorted(p["name"] for p in self.doc["parameters"] if p["block"] == "fixed")


def read_results(path: Path) -> dict[str, Any]:
    """A results.json document, checked for the keys a comparison reads."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ComparisonError(f"{path}: cannot read it as results.json ({type(exc).__name__}: {exc}); "
                              "give a results.json written by `mlmrun fit`, or the spec itself") from None
    missing = [k for k in REQUIRED_KEYS if not isinstance(doc, dict) or k not in doc]
    if missing:
        raise ComparisonError(f"{path}: not a results.json of `mlmrun fit` (missing {', '.join(missing)}); "
                              "give the results.json of a fit, or the spec itself")
    return doc


def check_comparable(models: list[Candidate]) -> None:
    """Refuse fits of different data rows or of methods whose likelihoods do not compare."""
    first = models[0]
    for other in models[1:]:
        a, b = first.doc["data"], other.doc["data"]
        if a.get("sha256") != b.get("sha256") or a.get("n_used") != b.get("n_used"):
            raise ComparisonError(
                f"{first.label} and {other.label} were fitted to different data (data sha256 "
                f"{str(a.get('sha256'))[:12]}, {a.get('n_used')} rows used vs {str(b.get('sha256'))[:12]}, "
                f"{b.get('n_used')} rows used); likelihoods compare only on the same rows: fit both to the same "
                "data file with the same filters and the same columns (missing values drop rows)")
        ma, mb = first.doc["method"], other.doc["method"]
        if ma != mb:
            raise ComparisonError(f"{first.label} ({ma}) and {other.label} ({mb}): ML and REML likelihoods are not "
                                  "comparable; fit both with `estimation: {method: ML}`")
        if ma == "REML" and first.fixed_part != other.fixed_part:
            raise ComparisonError(f"{first.label} and {other.label}: REML fits with different fixed parts are not "
                                  "comparable (their restricted likelihoods use different data contrasts); fit both "
                                  "with `estimation: {method: ML}`")


def pseudolikelihood_reason(doc: dict[str, Any]) -> str | None:
    """Why a fit's log likelihood supports no LR test (sampling weights, robust SEs), or None when it does."""
    if (doc.get("weights") or {}).get("pseudolikelihood"):
        return "maximises a log pseudolikelihood (sampling weights)"
    vce = (doc.get("vce") or {}).get("type", "oim")
    if vce != "oim":
        return f"has {vce} standard errors"
    return None


def check_same_weights(models: list[Candidate]) -> None:
    """Refuse fits weighted differently: their (pseudo)likelihoods weigh the rows differently."""
    first = models[0]
    for other in models[1:]:
        a, b = first.doc.get("weights"), other.doc.get("weights")
        if json.dumps(a, sort_keys=True) != json.dumps(b, sort_keys=True):
            raise ComparisonError(f"{first.label} and {other.label} were fitted with different weights ({a} vs {b}); "
                                  "their log likelihoods weigh the rows differently and do not compare: give both "
                                  "the same `weights:` and `levels[].pweight`")


def _mixture_p(stat: float, low: int, high: int) -> float:
    """P(X > stat) for the 50:50 mixture of chi2(low) and chi2(high); chi2(0) is the point mass at 0."""
    tail_low = float(chdtrc(low, stat)) if low > 0 else 0.0
    return 0.5 * tail_low + 0.5 * float(chdtrc(high, stat))


def boundary_kind(tested: dict[str, str]) -> str:
    """'none' (no variance tested), 'mixture' (one variance and its covariances) or 'conservative'.

    A count dispersion (NB2's 1/theta, NB1's phi: block `dispersion`) is 0 under the Poisson null, on its
    boundary like a variance: tested alone, chibar2(01) (Stata's nbreg LR test of alpha = 0). Zero-inflation
    coefficients put P(structural zero) = 0 at the edge of their space (logit -inf): the plain chi2 is
    reported with the conservative note.
    """
    if any(b == "zeroinfl" for b in tested.values()):
        return "conservative"
    sds = [n for n, b in tested.items() if b in ("sd", "dispersion")]
    corrs = [n for n, b in tested.items() if b == "corr"]
    if not sds:
        return "none"  # a correlation's null value 0 is inside its space: the regular chi2
    if len(sds) != 1 or len(sds) + len(corrs) != len(tested):
        return "conservative"
    sd = _SD.match(sds[0])
    for name in corrs:
        corr = _CORR.match(name)
        if sd is None or corr is None or corr.group(3) != sd.group(2) or sd.group(1) not in corr.group(1, 2):
            return "conservative"
    return "mixture"


def lr_test(restricted: Candidate, full: Candidate) -> dict[str, Any] | None:
    """The LR test of `restricted` within `full`, or None when they are not nested."""
    free_r, free_f = restricted.free, full.free
    df = int(full.doc["n_params"]) - int(restricted.doc["n_params"])
    if df <= 0 or not set(free_r) <= set(free_f):
        return None
    tested = {n: b for n, b in free_f.items() if n not in free_r}
    raw = 2.0 * (float(full.doc["loglik"]) - float(restricted.doc["loglik"]))
    stat = max(raw, 0.0)
    kind = boundary_kind(tested)
    out: dict[str, Any] = {"restricted": restricted.label, "full": full.label, "chi2": stat, "df": df,
                           "tested": sorted(tested)}
    if stat <= LR_ZERO:
        p = 1.0
    elif kind == "mixture":
        p = _mixture_p(stat, df - 1, df)
    else:
        p = float(chdtrc(df, stat))
    if kind == "mixture":
        out.update(kind="chibar2", distribution=f"50:50 mixture of chi2({df - 1}) and chi2({df})", note="")
    else:
        out.update(kind="chi2", distribution=f"chi2({df})", note=CONSERVATIVE_NOTE if kind == "conservative" else "")
    out["p"] = p
    if raw < -1e-6:
        out["warning"] = (f"{full.label} has a lower log likelihood than the model nested in it ({raw / 2:.4g}): "
                          "it has not reached its maximum; refit it (more iterations or other starts)")
    return out


def compare(models: list[Candidate]) -> dict[str, Any]:
    """The comparison document: one row per model, LR tests of nested pairs and the parameters side by side."""
    if len(models) < 2:
        raise ComparisonError("compare needs at least two models (specs or results.json files)")
    check_comparable(models)
    check_same_weights(models)
    rows = []
    for m in models:
        d = m.doc
        rows.append({"model": m.label, "name": d.get("spec", {}).get("name"), "method": d["method"],
                     "integration": (d.get("integration") or {}).get("method"), "n_obs": d["data"].get("n_used"),
                     "loglik": d["loglik"], "n_params": d["n_params"], "aic": d.get("aic"), "bic": d.get("bic"),
                     "converged": d.get("converged")})
    order = sorted(range(len(models)), key=lambda i: int(models[i].doc["n_params"]))
    tests = []
    pseudo = [(m.label, r) for m in models if (r := pseudolikelihood_reason(m.doc)) is not None]
    for a, i in enumerate(order if not pseudo else []):
        for j in order[a + 1:]:
            test = lr_test(models[i], models[j])
            if test is not None:
                tests.append(test)
    names: list[str] = []
    for m in models:
        names += [p["name"] for p in m.doc["parameters"] if p["name"] not in names]
    estimates = {n: [next((p["estimate"] for p in m.doc["parameters"] if p["name"] == n), None) for m in models]
                 for n in names}
    first = models[0].doc["data"]
    notes = [f"{label} {reason}: likelihood-ratio tests are not valid and are not reported (Stata's lrtest "
             "refuses them too); AIC and BIC are those of the pseudolikelihood. Test parameters by their Wald "
             "statistics (robust standard errors, results.json `wald`)." for label, reason in pseudo]
    integrated = [i for m in models if (i := m.doc.get("integration") or {}).get("points") or i.get("method") == "exact"]
    if len({json.dumps(i, sort_keys=True) for i in integrated}) > 1:  # quadrature without points: no latent variables
        notes.append("The models were integrated differently (method or points): their log likelihoods carry "
                     "different approximation errors (see each fit's point check).")
    return {"data": {"sha256": first.get("sha256"), "n_used": first.get("n_used")}, "models": rows,
            "lr_tests": tests, "parameters": estimates, "notes": notes}


def _num(x: Any, fmt: str) -> str:
    width = int(fmt.split(".")[0] or 0)
    return f"{'.':>{width}}" if x is None else format(float(x), fmt)


def render_text(doc: dict[str, Any]) -> str:
    """The comparison as plain text: models table, LR tests, parameters side by side."""
    rows = doc["models"]
    width = max(12, *(len(r["model"]) for r in rows), *(len(n) for n in doc["parameters"]))
    lines = [f"Model comparison: {doc['data']['n_used']} rows of data sha256 {str(doc['data']['sha256'])[:12]}", "",
             f"{'model':<{width}}  method integration     n_obs        loglik    df           AIC           BIC"]
    for r in rows:
        flag = "" if r["converged"] in (True, None) else "  (NOT converged)"
        lines.append(f"{r['model']:<{width}}  {r['method']:<6} {str(r['integration']):<12} {r['n_obs']:>8} "
                     f"{_num(r['loglik'], '13.4f')} {r['n_params']:>5} {_num(r['aic'], '13.3f')} "
                     f"{_num(r['bic'], '13.3f')}{flag}")
    lines.append("")
    if not doc["lr_tests"] and not any("likelihood-ratio tests are not valid" in n for n in doc.get("notes", [])):
        lines.append("No nested pairs: no likelihood-ratio test (AIC and BIC compare non-nested models).")
    for t in doc["lr_tests"]:
        label = f"LR chi2({t['df']})" if t["kind"] == "chi2" else f"LR chibar2({t['df'] - 1}{t['df']})"
        prob = "Prob > chi2" if t["kind"] == "chi2" else "Prob >= chibar2"
        lines.append(f"{t['restricted']} nested in {t['full']} (tests {', '.join(t['tested']) or 'constraints'}):")
        lines.append(f"  {label} = {t['chi2']:.2f}   {prob} = {t['p']:.4f}   ({t['distribution']})")
        if "bootstrap" in t:
            b = t["bootstrap"]
            lines.append(f"  parametric bootstrap: p = {b['p']:.4f} from {b['replicates_used']} of {b['replicates']} "
                         f"replicates (seed {b['seed']})")
        for key in ("note", "warning"):
            if t.get(key):
                lines.append(f"  {t[key]}")
    heads = [str(r["name"] or Path(r["model"]).stem) for r in rows]
    cols = [max(14, len(h)) for h in heads]
    lines += [f"Note: {n}" for n in doc.get("notes", [])]
    lines += ["", f"{'parameter':<{width}}  " + "  ".join(f"{h:>{c}}" for h, c in zip(heads, cols, strict=True))]
    for name, values in doc["parameters"].items():
        lines.append(f"{name:<{width}}  " + "  ".join(f"{_num(v, f'{c}.6g')}" for v, c in zip(values, cols, strict=True)))
    return "\n".join(lines) + "\n"


def from_fit(label: str, fit: FitResult, prepared: Prepared, seconds: float = 0.0) -> Candidate:
    """A fit made in this process as a Candidate (what a Python API's `Fit.compare(other)` needs)."""
    from mlmrun.results import results_dict

    return Candidate(label, results_dict(fit, prepared.path, prepared, seconds), fit)


def load_candidate(path: str | Path, allow_outside_data: bool = False) -> Candidate:
    """A results.json file as it is, or a spec fitted here and rendered into the same document."""
    path = Path(path)
    if path.suffix.lower() == ".json":
        return Candidate(str(path), read_results(path))
    import time

    from mlmrun.estimate import estimate
    from mlmrun.pipeline import prepare

    start = time.perf_counter()
    prepared = prepare(path, allow_outside_data)
    fit = estimate(prepared.model)
    return from_fit(str(path), fit, prepared, time.perf_counter() - start)

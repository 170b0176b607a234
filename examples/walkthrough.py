"""A tour of mlmrun's pipeline on pig.csv, one public step at a time.

    .venv/bin/python examples/walkthrough.py

Each stage hands a plain, frozen value to the next (STYLE.md 9.1):
spec -> data -> compiled model (with its parameter table) -> fit -> results and report.
`mlmrun fit SPEC` is exactly these steps plus writing the files.
"""

from __future__ import annotations

from pathlib import Path

from mlmrun import compile_model, estimate, load_data, load_spec
from mlmrun.pipeline import Prepared
from mlmrun.report import render_markdown, summarize
from mlmrun.results import parameter_rows, results_dict

SPEC = Path(__file__).resolve().parents[1] / "specs" / "pig_slope.yaml"


def main() -> None:
    # 1. The spec: YAML validated by pydantic; `marks` maps YAML paths to line/column for error messages.
    spec, marks = load_spec(SPEC)
    print(f"1. spec '{spec.name}': fixed part {spec.fixed!r}, random {spec.random[0].terms} by {spec.random[0].level}")

    # 2. The data: read, filtered and stacked as the spec says; the SHA-256 goes into results.json.
    data = load_data(spec.data, SPEC.parent)
    print(f"2. data: {data.n_rows} rows, columns {list(data.frame.columns)}, sha256 {data.sha256[:12]}...")

    # 3. The compiled model: design matrices, level indices and the parameter table (one row per parameter).
    model = compile_model(spec, data)
    print(f"3. compiled: n = {model.n}, {model.partable.n_free} free parameters")
    print(model.partable.frame[["name", "block", "free", "value", "transform", "origin"]].to_string(index=False))

    # 4. The fit: the exact Gaussian likelihood here (all responses gaussian/identity); the callback is the
    #    iteration log that `mlmrun fit` prints on stderr.
    fit = estimate(model, progress=lambda it, ll: print(f"   iter {it}  loglik {ll:.6f}"))
    print(f"4. fit: converged={fit.converged}, log likelihood {fit.loglik:.4f}, AIC {fit.aic:.2f}")

    # 5. Results: partable rows plus derived var()/cov() rows with delta-method SEs, shared by JSON and reports.
    for row in parameter_rows(fit):
        if row.block in ("sd", "variance", "residual"):
            print(f"   {row.name:<16} {row.estimate:10.4f}  se {row.se:.4f}")
    prepared = Prepared(SPEC, spec, marks, data, model)  # what pipeline.prepare(SPEC) returns
    doc = results_dict(fit, SPEC, prepared, total_seconds=fit.fit_seconds)
    print(f"5. results.json keys: {sorted(doc)}")

    # 6. The report model (plain formatted strings) and its Markdown rendering.
    markdown = render_markdown(summarize(fit, prepared))
    print("6. report.md starts:\n" + "\n".join(markdown.splitlines()[:3]))


if __name__ == "__main__":
    main()

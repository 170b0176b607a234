"""mlmrun from a notebook: fit, look, predict (each block is a notebook cell).

    .venv/bin/python examples/notebook_api.py

`mlmrun.fit` takes a spec file or the same keys as a dict, and optionally a pandas DataFrame
in place of the spec's data file. In Jupyter, a `Fit` as the last expression of a cell shows the
HTML report.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

import mlmrun

SPECS = Path(__file__).resolve().parents[1] / "specs"


def main() -> None:
    # %% A spec file: the cbpp binomial GLMM (random herd intercept, 25-point adaptive quadrature).
    fit = mlmrun.fit(SPECS / "cbpp.yaml")
    print(fit)
    print(fit.params[["name", "estimate", "se", "ci_lower", "ci_upper"]].to_string(index=False))

    # %% Empirical Bayes predictions per herd (posterior means; eb="mode" gives lme4's conditional modes),
    # in the order herds first occur in the data: the table of a caterpillar plot.
    herds = fit.ranef()
    print(herds.sort_values("eb_mean(_cons)@herd").head().to_string(index=False))

    # %% Per-row predictions: fixed part, conditional and population-averaged means, residuals.
    rows = fit.predict()
    print(rows[["row", "herd", "xb", "mu", "mu_marginal", "resid_pearson"]].head().to_string(index=False))

    # %% New rows: herd 1 keeps its prediction; herd 99 was not fitted (EB 0, flagged in unseen@herd).
    new = pd.DataFrame({"herd": [1, 99], "period": [4, 4], "size": [20, 20]})
    print(fit.predict(new)[["herd", "eta", "mu", "mu_marginal", "unseen@herd"]].to_string(index=False))

    # %% The same model as a dict, on a DataFrame (filtered here to periods 1-3): files a dict names
    # are read relative to the working directory, and formulas pass the same allow-list as in a file.
    spec = {"name": "cbpp_dict", "data": {"path": "in-memory.csv"}, "levels": [{"name": "herd", "id": "herd"}],
            "responses": [{"name": "incidence", "family": "binomial", "trials": "size"}],
            "fixed": "incidence ~ C(period)", "random": [{"level": "herd", "terms": [1]}],
            "estimation": {"integration": {"method": "laplace"}}}
    data = pd.read_csv(SPECS / "data" / "cbpp.csv")
    small = mlmrun.fit(spec, data=data[data["period"] <= 3])
    print(small)
    print(small.summary().splitlines()[0], "...", len(small.to_json()), "characters of results.json")


if __name__ == "__main__":
    main()

"""The files `mlmrun fit` writes, rendered in memory: results.json, report.html, report.md, run.json, figures.

results.json and the two reports depend only on the spec, the data, the software versions and the
command line, so a rerun writes the same bytes; everything that changes from run to run (wall-clock
times) goes to run.json. The figures (`fig-*.svg`) are those the HTML report embeds inline; report.md
links to them beside it.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from mlmrun.pipeline import Prepared
from mlmrun.report.provenance import library_versions
from mlmrun.report.render import render_html, render_markdown
from mlmrun.report.summarize import summarize
from mlmrun.results import FitResult, jsonable, results_dict, results_json

Residuals = list[tuple[str, np.ndarray, np.ndarray]]
"""(equation, fitted values, standardized residuals) per gaussian response (postest.diagnostics)."""


def run_dict(fit: FitResult, total_seconds: float, argv: list[str] | None = None) -> dict[str, Any]:
    """run.json: what differs between two runs of the same fit (wall-clock times, the command line, versions).

    Kept out of results.json and the reports so that those are byte-identical across reruns.
    """
    return jsonable({"timing": {"fit_seconds": fit.fit_seconds, "total_seconds": total_seconds},
                     "command": list(argv) if argv is not None else None,
                     "versions": library_versions()})


def render_outputs(fit: FitResult, prepared: Prepared, total_seconds: float,
                   argv: list[str] | None = None, residuals: Residuals | None = None) -> dict[str, str]:
    """File name -> text of every output file, all rendered before anything is written."""
    doc = results_dict(fit, prepared.path, prepared)
    report = summarize(fit, prepared, argv=argv, residuals=residuals)
    files = {"results.json": results_json(doc), "report.html": render_html(report),
             "report.md": render_markdown(report),
             "run.json": json.dumps(run_dict(fit, total_seconds, argv), indent=2, allow_nan=False) + "\n"}
    files.update({figure.name: figure.svg for figure in report.figures})
    return files

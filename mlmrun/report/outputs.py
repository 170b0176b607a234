"""The files `mlmrun fit` writes, rendered in memory: results.json, report.html, report.md, run.json, figures.

results.json and the two reports depend only on the spec, the data, the software versions and the
command line, so a rerun writes the same bytes; everything that changes from run to run (wall-clock
times) goes to run.json. The figures (`fig-*.svg`) are those the HTML report embeds inline; report.md
links to them beside it.
"""

from __future__ import annotations

import json

from mlmrun.pipeline import Prepared
from mlmrun.report.render import render_html, render_markdown
from mlmrun.report.summarize import summarize
from mlmrun.results import FitResult, results_dict, results_json, run_dict


def render_outputs(fit: FitResult, prepared: Prepared, total_seconds: float,
                   argv: list[str] | None = None) -> dict[str, str]:
    """File name -> text of every output file, all rendered before anything is written."""
    doc = results_dict(fit, prepared.path, prepared)
    report = summarize(fit, prepared, argv=argv)
    files = {"results.json": results_json(doc), "report.html": render_html(report),
             "report.md": render_markdown(report),
             "run.json": json.dumps(run_dict(fit, total_seconds, argv), indent=2, allow_nan=False) + "\n"}
    files.update({figure.name: figure.svg for figure in report.figures})
    return files

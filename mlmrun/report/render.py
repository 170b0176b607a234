"""Render a ReportModel as HTML or Markdown with jinja2.

HTML is rendered with autoescaping on, so every string that came from a spec or
a data file (names, descriptions, column labels) is escaped. Markdown has no
autoescaping of its own; `markdown_escape` runs on every `{{ ... }}` output
(jinja2's `finalize`), so table cells cannot break the table or inject HTML
into a Markdown viewer. Rendering returns strings; writing them is io.py's job.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

import jinja2

from mlmrun.report.summarize import ReportModel

TEMPLATES = Path(__file__).parent / "templates"
_MD_SPECIAL = re.compile(r"([\\`*_\[\]|#<>])")


def markdown_escape(value: object) -> str:
    """Text safe inside a Markdown paragraph or table cell: specials backslash-escaped, one line."""
    text = " ".join(str(value).split()) if value is not None else ""
    return _MD_SPECIAL.sub(r"\\\1", text.replace("&", "&amp;"))


@cache
def _environment(kind: str) -> jinja2.Environment:
    common = dict(loader=jinja2.FileSystemLoader(str(TEMPLATES)), undefined=jinja2.StrictUndefined,
                  trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    if kind == "html":
        return jinja2.Environment(autoescape=True, **common)
    return jinja2.Environment(autoescape=False, finalize=markdown_escape, **common)


def render_html(report: ReportModel) -> str:
    """Self-contained HTML (inline CSS, no external assets)."""
    return _environment("html").get_template("report.html.j2").render(report=report)


def render_markdown(report: ReportModel) -> str:
    """Markdown with pipe tables."""
    return _environment("md").get_template("report.md.j2").render(report=report)

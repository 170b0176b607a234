"""Reports: summarize a fit into a plain report model, render it as HTML and Markdown."""

from mlmrun.report.render import render_html, render_markdown
from mlmrun.report.summarize import ReportModel, Section, summarize

__all__ = ["ReportModel", "Section", "render_html", "render_markdown", "summarize"]

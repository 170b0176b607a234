"""HTML and Markdown rendering: self-contained output and escaping of everything from specs and data."""

from __future__ import annotations

import re

from mlmrun.pipeline import prepare
from mlmrun.report import render_html, render_markdown, summarize
from mlmrun.report.render import markdown_escape
from tests.report.fakes import XSS


def test_html_escapes_spec_and_data_strings(xss_spec, make_fit):
    prepared = prepare(xss_spec)
    html = render_html(summarize(make_fit(prepared), prepared))
    assert XSS not in html
    assert "<script" not in html.lower()
    escaped = "&lt;script&gt;alert(1)&lt;/script&gt;"
    assert f"{escaped} &amp; friends" in html  # description
    assert f"<td class=\"l\">{escaped}</td>" in html  # level name and id column in the group summary
    assert f"sd(_cons)@{escaped}" not in html  # the level suffix is dropped inside a level's table...
    assert f"{escaped}: Unstructured" in html  # ...whose title names the level


def test_markdown_escapes_spec_and_data_strings(xss_spec, make_fit):
    prepared = prepare(xss_spec)
    md = render_markdown(summarize(make_fit(prepared), prepared))
    assert XSS not in md
    assert "\\<script\\>alert(1)\\</script\\> &amp; friends" in md
    # Every unescaped pipe is a cell border, so all lines of a table have the same number of cells.
    block: list[int] = []
    for line in md.splitlines() + [""]:
        if line.startswith("|"):
            block.append(len(re.split(r"(?<!\\)\|", line)))
        elif block:
            assert len(set(block)) == 1, block
            block = []


def test_markdown_escape():
    assert markdown_escape("a|b") == "a\\|b"
    assert markdown_escape("x_1 *y*") == "x\\_1 \\*y\\*"
    assert markdown_escape("<b>&") == "\\<b\\>&amp;"
    assert markdown_escape("two\nlines") == "two lines"
    assert markdown_escape(None) == ""


def test_html_is_self_contained(pig_unstructured, make_fit):
    html = render_html(summarize(make_fit(pig_unstructured), pig_unstructured))
    assert html.startswith("<!DOCTYPE html>")
    assert "<style>" in html
    assert not re.search(r"""(src|href)\s*=|@import|url\(|<link|<script""", html, re.IGNORECASE)
    assert "http://" not in html and "https://" not in html


def test_both_formats_show_the_same_tables(pig_unstructured, make_fit):
    report = summarize(make_fit(pig_unstructured), pig_unstructured)
    html, md = render_html(report), render_markdown(report)
    for section in report.sections:
        assert f"<h2>{section.heading}</h2>" in html
        assert f"## {markdown_escape(section.heading)}" in md
        for table in section.tables:
            assert md.count("| " + " | ".join(markdown_escape(c) for c in table.columns) + " |") >= 1


def test_warnings_are_rendered_prominently(pig_unstructured, make_fit):
    fit = make_fit(pig_unstructured, converged=False, warnings=("boundary: sd(week)@pig = 0",))
    report = summarize(fit, pig_unstructured)
    html, md = render_html(report), render_markdown(report)
    assert 'class="warnings" role="alert"' in html and "NOT converged" in html
    assert html.index("boundary: sd(week)@pig = 0") < html.index("<h2>Group summary</h2>")
    assert "> **Warnings**" in md and "**NOT converged**" in md

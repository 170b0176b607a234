"""Report figures as SVG text: caterpillar plots, residual diagnostics, loadings, iteration history, point check.

Every figure is drawn by matplotlib on a bare `Figure` (no pyplot, no global state) and
saved as SVG with settings that make the bytes depend only on the data drawn: a fixed
`svg.hashsalt` per figure (matplotlib otherwise salts its element ids with a random
UUID), no creation date in the metadata and text kept as text (`svg.fonttype: none`,
escaped by matplotlib's XML writer). So a rerun of a fit writes the same files, and the
report embeds them inline (HTML) or links to them (Markdown) without any script.
matplotlib is imported inside `render`, only when a report is written.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

FIGURE_PREFIX = "fig-"
"""Every figure file written beside the report starts with this (io.remove_stale removes old ones)."""
WIDTH_IN = 7.2
"""Figure width in inches (690 px at 96 dpi): fits the report's 62rem column."""
_COLOR, _ACCENT, _GREY = "#1f5b99", "#b33c1e", "#888888"
_RC = {
    "svg.fonttype": "none", "font.family": "sans-serif", "font.size": 9.0, "axes.titlesize": 10.0,
    "axes.spines.top": False, "axes.spines.right": False, "axes.grid": True, "grid.color": "#e6e6e6",
    "grid.linewidth": 0.6, "axes.axisbelow": True, "svg.image_inline": True, "path.simplify": False,
}


@dataclass(frozen=True)
class Figure:
    """One figure of the report: its file name beside the report, a title, and the SVG document."""

    name: str
    title: str
    svg: str

    @property
    def inline(self) -> str:
        """The <svg> element alone (no XML declaration, no DOCTYPE), for embedding in HTML."""
        return self.svg[self.svg.index("<svg"):].rstrip() + "\n"


def slug(text: str) -> str:
    """A file-name-safe fragment of a level or variable name ('_cons' -> 'cons', 'a b' -> 'a-b')."""
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower() or "x"


def render(name: str, title: str, draw: Callable[[Any], None], height_in: float) -> Figure:
    """Draw with `draw(figure)` on a fresh matplotlib Figure and return it as deterministic SVG text."""
    import matplotlib
    from matplotlib.backends.backend_svg import FigureCanvasSVG
    from matplotlib.figure import Figure as MplFigure

    with matplotlib.rc_context({**_RC, "svg.hashsalt": f"mlmrun-{name}"}):
        fig = MplFigure(figsize=(WIDTH_IN, height_in), layout="constrained")
        FigureCanvasSVG(fig)
        draw(fig)
        buf = io.StringIO()
        fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": "mlmrun"})
    return Figure(f"{FIGURE_PREFIX}{name}.svg", title, buf.getvalue())


def caterpillar(name: str, title: str, units: list[str], mean: np.ndarray, sd: np.ndarray, top: int) -> Figure:
    """EB means with 95% intervals (mean +- 1.96 SD), units ranked by their mean.

    With more than `top` units, the `top // 2` lowest and highest are drawn (the ends of the ranking,
    where units are told apart), with a gap marking the units left out.
    """
    order = np.argsort(mean, kind="stable")
    shown = order if len(order) <= top else np.concatenate([order[: top // 2], order[-(top - top // 2):]])
    y = np.arange(len(shown), dtype=float)
    if len(shown) < len(order):
        y[top // 2:] += 1.0
    half = 1.959963984540054 * sd[shown]

    def draw(fig: Any) -> None:
        ax = fig.add_subplot()
        ax.errorbar(mean[shown], y, xerr=half, fmt="o", color=_COLOR, ecolor="#9db7d5", markersize=3,
                    elinewidth=1.2, capsize=0)
        ax.axvline(0.0, color=_GREY, linewidth=0.8)
        ax.set_yticks(y, [str(units[i]) for i in shown], fontsize=7 if len(shown) > 30 else 8)
        ax.set_ylim(-1, y[-1] + 1 if len(y) else 1)
        ax.set_xlabel("Empirical Bayes prediction (posterior mean) with 95% interval")
        if len(shown) < len(order):
            ax.axhline(top // 2, color=_GREY, linewidth=0.6, linestyle=":")
            ax.set_title(f"{title} ({top // 2} lowest and {top - top // 2} highest of {len(order)} units)")
        else:
            ax.set_title(f"{title} ({len(order)} units)")
        ax.grid(axis="y", visible=False)

    return render(name, title, draw, max(2.4, 0.16 * (len(y) + 1) + 1.0))


def residuals(name: str, title: str, fitted: np.ndarray, standardized: np.ndarray, max_points: int) -> Figure:
    """Standardized residuals against fitted values, and their normal QQ plot, side by side.

    Beyond `max_points` rows an evenly spaced subset (in data order) is drawn, so the file stays small.
    """
    from scipy.special import ndtri  # the normal quantile; scipy.stats would add ~1 s of import

    keep = np.isfinite(fitted) & np.isfinite(standardized)
    x, r = fitted[keep], standardized[keep]
    n = len(r)
    idx = np.unique(np.linspace(0, n - 1, max_points).round().astype(int)) if n > max_points else np.arange(n)
    q = np.sort(r)
    theo = ndtri((np.arange(1, n + 1) - 0.5) / n) if n else np.zeros(0)

    def draw(fig: Any) -> None:
        left, right = fig.subplots(1, 2)
        left.scatter(x[idx], r[idx], s=5, color=_COLOR, alpha=0.5, linewidths=0)
        left.axhline(0.0, color=_ACCENT, linewidth=0.9)
        left.set_xlabel("Fitted value (with empirical Bayes predictions)")
        left.set_ylabel("Standardized residual")
        left.set_title("Residuals vs fitted")
        right.scatter(theo[idx], q[idx], s=5, color=_COLOR, alpha=0.5, linewidths=0)
        if n:
            lim = [float(min(theo[0], q[0])), float(max(theo[-1], q[-1]))]
            right.plot(lim, lim, color=_ACCENT, linewidth=0.9)
        right.set_xlabel("Standard normal quantile")
        right.set_ylabel("Standardized residual (sorted)")
        right.set_title("Normal QQ plot")
        if len(idx) < n:
            fig.suptitle(f"{title}: {len(idx)} of {n} rows drawn, evenly spaced", fontsize=9)

    return render(name, title, draw, 3.2)


def loadings(name: str, title: str, items: list[str], factors: list[tuple[str, list[float | None],
                                                                          list[float | None]]]) -> Figure:
    """One panel per factor: each item's loading with its 95% interval (no bar where the factor does not load)."""

    def draw(fig: Any) -> None:
        axes = np.atleast_1d(fig.subplots(1, len(factors), sharey=True))
        y = np.arange(len(items), dtype=float)[::-1]
        for ax, (factor, est, half) in zip(axes, factors, strict=True):
            have = np.array([e is not None for e in est])
            e = np.array([v if v is not None else np.nan for v in est], dtype=float)
            h = np.array([v if v is not None else 0.0 for v in half], dtype=float)
            ax.barh(y[have], e[have], color="#c7d7ea", edgecolor=_COLOR, height=0.6)
            ax.errorbar(e[have], y[have], xerr=h[have], fmt="none", ecolor=_COLOR, elinewidth=1.0, capsize=2)
            ax.axvline(0.0, color=_GREY, linewidth=0.8)
            ax.set_title(factor)
            ax.grid(axis="y", visible=False)
        axes[0].set_yticks(y, items)
        fig.supxlabel("Loading with 95% interval (fixed loadings without interval)", fontsize=9)

    return render(name, title, draw, max(2.4, 0.3 * len(items) + 1.2))


def history(name: str, title: str, iterations: list[int], logliks: list[float]) -> Figure:
    """Log likelihood at each iteration of the optimiser (as the iteration log printed it)."""

    def draw(fig: Any) -> None:
        ax = fig.add_subplot()
        ax.plot(iterations, logliks, marker="o", markersize=3, color=_COLOR, linewidth=1.2)
        ax.set_xlabel("Iteration")
        ax.set_ylabel("Log likelihood")
        ax.set_title(title)

    return render(name, title, draw, 2.8)


def point_check(name: str, title: str, labels: list[str], logliks: list[float]) -> Figure:
    """Log likelihood at the fitted quadrature rule (first) and at the rules of the point check."""

    def draw(fig: Any) -> None:
        ax = fig.add_subplot()
        x = np.arange(len(labels), dtype=float)
        ax.plot(x, logliks, marker="o", color=_COLOR, linewidth=1.0)
        ax.plot(x[:1], logliks[:1], marker="o", markersize=9, color=_ACCENT, linestyle="none", label="fitted")
        ax.set_xticks(x, labels)
        ax.set_xlabel("Quadrature points")
        ax.set_ylabel("Log likelihood")
        ax.set_title(title)
        ax.ticklabel_format(axis="y", useOffset=False, style="plain")
        ax.legend(frameon=False)

    return render(name, title, draw, 2.8)

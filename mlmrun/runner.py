"""One spec fitted and its outputs written: the steps `mlmrun fit` and `mlmrun batch` share.

`output_dir` chooses the output folder (confined like the data a spec reads,
so an untrusted spec cannot write over files elsewhere); `fit_and_write`
checks that folder before the fit, estimates, renders every output in memory
and writes them together atomically, removing folders it created when the
fit fails. A batch worker runs exactly these steps, so a spec fitted in a
batch gets the same outputs, the same limits and the same errors as
`mlmrun fit` gives it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from mlmrun.display import excerpt
from mlmrun.errors import SpecError
from mlmrun.io import OUTPUT_FILES, OutputError, prepare_output_dir, remove_created, remove_stale, write_atomic

if TYPE_CHECKING:
    from mlmrun.compile import CompiledModel
    from mlmrun.pipeline import Prepared
    from mlmrun.results import FitResult

Estimator = Callable[["CompiledModel"], "FitResult"]
"""estimate() with whatever iteration log the caller wants (none on a batch worker)."""


def output_dir(prepared: Prepared, out: str | None, allow_outside: bool, cwd: Path | None = None) -> Path:
    """--out (trusted: the user typed it), else the spec's report.dir, else reports/<spec name>.

    report.dir, like reports/<name>, is relative to the working directory `cwd` (default: this
    process's), and must stay inside it or inside the spec's folder unless `allow_outside`
    (--allow-outside-data): a spec from an untrusted pull request must not write over files
    elsewhere. With `cwd` given the folder returned is absolute (a batch worker runs elsewhere).
    """
    from mlmrun.spec.loader import locate

    if out is not None:
        return Path(out)
    spec = prepared.spec
    chosen = spec.report.dir or str(Path("reports") / spec.name)
    path = Path(chosen)
    if allow_outside:
        return path if cwd is None else Path(cwd) / path
    where = locate(prepared.marks, str(prepared.path), "report", "dir")
    try:
        base = (cwd or Path.cwd()).resolve()
        resolved = (base / path).resolve()
        inside = resolved.is_relative_to(base) or resolved.is_relative_to(prepared.path.parent.resolve())
    except (OSError, ValueError, RuntimeError) as exc:
        raise SpecError(f"{where}: report.dir: {excerpt(chosen)} is not a usable folder name ({exc}); "
                        "write a plain relative folder such as reports/NAME") from None
    if path.is_absolute() or not inside:
        raise SpecError(f"{where}: report.dir: {excerpt(chosen)} is outside the working directory and the spec's folder; "
                        f"write a folder inside them (e.g. reports/{spec.name}), choose the folder with --out, "
                        "or, for a spec you trust, pass --allow-outside-data")
    return path if cwd is None else Path(cwd) / path


def render_outputs(fit: FitResult, prepared: Prepared, total_seconds: float,
                   argv: list[str] | None = None) -> dict[str, str]:
    """Every output file as text (mlmrun/report/outputs.py), all rendered before anything is written."""
    from mlmrun.postest.diagnostics import gaussian_residuals
    from mlmrun.report.outputs import render_outputs as render

    return render(fit, prepared, total_seconds, argv, gaussian_residuals(fit))


def fit_and_write(prepared: Prepared, out: Path, out_given: bool, estimator: Estimator, start: float,
                  argv: list[str] | None = None) -> tuple[FitResult, float]:
    """Check `out`, estimate, render in memory, then write every output atomically; (fit, total seconds).

    The folder is created and a file written into it before the (possibly long) fit, so an
    unwritable folder is an OutputError at once (located at report.dir when the spec chose it,
    i.e. not `out_given`); folders created for a fit that then fails are removed again.
    `start` is the time.perf_counter() the whole run began at.
    """
    import time

    from mlmrun.report.plots import FIGURE_PREFIX
    from mlmrun.spec.loader import locate

    try:
        created = prepare_output_dir(out, OUTPUT_FILES)
    except OutputError as exc:
        if not out_given and prepared.spec.report.dir is not None:
            raise OutputError(f"{locate(prepared.marks, str(prepared.path), 'report', 'dir')}: report.dir: {exc}") from None
        raise
    try:
        fit = estimator(prepared.model)
        total = time.perf_counter() - start
        files = render_outputs(fit, prepared, total, argv)
        write_atomic(out, files)
        remove_stale(out, f"{FIGURE_PREFIX}*.svg", files)
    except BaseException:
        remove_created(created)
        raise
    return fit, total

"""`mlmrun batch`: many specs fitted on a Dask cluster, each exactly as `mlmrun fit` fits and writes it.

Every spec is one Dask task running `fit_one`, a pure function of (spec, options)
that returns a small summary row and never raises: an invalid spec or data file
(SpecError, DataError, an unwritable folder) is status `invalid` (exit code 2), a
fit that did not converge `not-converged` (1, results written and flagged), an
unexpected exception `error` (3, nothing written). The worker runs runner.py's
steps, so outputs, path confinement and resource limits are those of `fit`.
Paths are made absolute against the submitting process's working directory, so
workers elsewhere (a shared file system) read and write the same files.
"""

from __future__ import annotations

import json
import math
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlmrun.display import display_path, relative_in_text
from mlmrun.errors import MlmrunError, SpecError
from mlmrun.io import OutputError

if TYPE_CHECKING:
    from distributed import Client

EXIT_CODES = {"ok": 0, "not-converged": 1, "invalid": 2, "error": 3}
"""Status of one spec -> the exit code `mlmrun fit` gives it; the batch exits with the largest."""


@dataclass(frozen=True)
class BatchOptions:
    """What every fit of a batch shares: where relative paths start, --out, trust, the command line."""

    cwd: str
    out: str | None = None
    allow_outside_data: bool = False
    argv: tuple[str, ...] | None = None


def spec_out(spec: str, options: BatchOptions) -> Path | None:
    """--out DIR puts a spec's outputs in DIR/<spec file stem>; without --out fit's own choice applies (None)."""
    if options.out is None:
        return None
    return Path(options.cwd) / options.out / Path(spec).stem


def check_distinct_outputs(specs: list[str], options: BatchOptions) -> None:
    """With --out, refuse two specs whose files share a stem: their outputs would overwrite each other."""
    if options.out is None:
        return
    seen: dict[str, str] = {}
    for spec in specs:
        stem = Path(spec).stem
        if stem in seen:
            raise OutputError(f"--out: {spec} and {seen[stem]} would both write to {options.out}/{stem}; give each "
                              "spec file its own name (or fit them in separate batches)")
        seen[stem] = spec


def _row(spec: str) -> dict[str, Any]:
    return {"spec": spec, "name": None, "status": "error", "exit_code": EXIT_CODES["error"], "loglik": None,
            "converged": None, "iterations": None, "seconds": None, "cpu_seconds": None, "out": None, "message": "",
            "warnings": [], "worker": f"{socket.gethostname()}:{os.getpid()}"}


def fit_one(spec: str, options: BatchOptions) -> dict[str, Any]:
    """Fit `spec` and write its outputs as `mlmrun fit` does; its summary row (never an exception).

    Runs on a worker: the row is small (no model, no data) so that results travel cheaply.
    """
    start, cpu = time.perf_counter(), time.process_time()
    row = _row(spec)
    try:
        from mlmrun.estimate import estimate
        from mlmrun.pipeline import prepare
        from mlmrun.runner import fit_and_write, output_dir

        cwd = Path(options.cwd)
        prepared = prepare(cwd / spec, options.allow_outside_data)
        row["name"] = prepared.spec.name
        given = spec_out(spec, options)
        out = output_dir(prepared, None if given is None else str(given), options.allow_outside_data, cwd)
        row["out"] = str(out)
        fit, _ = fit_and_write(prepared, out, given is not None, estimate, start,
                               None if options.argv is None else list(options.argv))
    except MlmrunError as exc:
        lines = exc.problems if isinstance(exc, SpecError) else [str(exc)]
        row.update(status="invalid", exit_code=EXIT_CODES["invalid"], message="\n".join(lines), out=None)
    except Exception as exc:  # one spec's bug must not stop the others
        text = " ".join(str(exc).split()) or "(no message)"
        row.update(message=f"internal error: {type(exc).__name__}: {text}; nothing written for this spec", out=None)
    else:
        status = "ok" if fit.converged else "not-converged"
        loglik = float(fit.loglik)
        row.update(status=status, exit_code=EXIT_CODES[status], converged=bool(fit.converged),
                   loglik=loglik if math.isfinite(loglik) else None, iterations=int(fit.iterations),
                   warnings=[str(w) for w in fit.warnings])
    row["seconds"] = time.perf_counter() - start
    row["cpu_seconds"] = time.process_time() - cpu
    return row


def _lost(spec: str, exc: BaseException) -> dict[str, Any]:
    """The row of a task Dask could not run (its worker died, or the task could not be sent)."""
    row = _row(spec)
    text = " ".join(str(exc).split()) or "(no message)"
    row.update(message=f"the cluster lost this fit ({type(exc).__name__}: {text}); its outputs may be missing",
               worker=None)
    return row


Progress = Callable[[dict[str, Any], int, int], None]
"""Called with each row as its fit completes, the number done so far and the total."""


def run_batch(client: Client, specs: list[str], options: BatchOptions,
              progress: Progress | None = None) -> list[dict[str, Any]]:
    """Fit every spec on the cluster of `client`; the rows in the order of `specs` (progress in completion order)."""
    from distributed import as_completed

    check_distinct_outputs(specs, options)
    futures = {client.submit(fit_one, spec, options, pure=False): i for i, spec in enumerate(specs)}
    rows: list[dict[str, Any] | None] = [None] * len(specs)
    try:
        for done, future in enumerate(as_completed(futures, loop=client.loop), start=1):
            i = futures[future]
            try:
                row = future.result()
            except Exception as exc:
                row = _lost(specs[i], exc)
            rows[i] = row
            if progress is not None:
                progress(row, done, len(specs))
    finally:
        client.cancel(list(futures))
    return [row for row in rows if row is not None]


def exit_code(rows: list[dict[str, Any]]) -> int:
    """The worst exit code of the batch: 3 an internal error, 2 an invalid spec, 1 a fit not converged, else 0."""
    return max((int(r["exit_code"]) for r in rows), default=0)


def _loglik(row: dict[str, Any]) -> str:
    return "." if row["loglik"] is None else f"{row['loglik']:.4f}"


def progress_line(row: dict[str, Any], done: int, total: int) -> str:
    """One line per completed fit: spec, status, log likelihood, time; the reason under a failed one."""
    seconds = "" if row["seconds"] is None else f", {row['seconds']:.2f} s"
    head = f"mlmrun batch: [{done}/{total}] {row['spec']}: {row['status']}"
    if row["status"] in ("ok", "not-converged"):
        head += f", log likelihood {_loglik(row)}"
    lines = [head + seconds]
    lines += [f"  {relative_in_text(line)}" for line in row["message"].splitlines()]
    lines += [f"  warning: {w}" for w in row["warnings"]]
    return "\n".join(lines)


def summary_table(rows: list[dict[str, Any]], workers: int, seconds: float) -> str:
    """The table printed at the end: spec, status, log likelihood, seconds, output folder; then the counts."""
    width = max(4, *(len(r["spec"]) for r in rows))
    lines = [f"{'spec':<{width}}  {'status':<13} {'loglik':>14} {'seconds':>9}  output"]
    for r in rows:
        took = "." if r["seconds"] is None else f"{r['seconds']:.2f}"
        out = "-" if r["out"] is None else display_path(r["out"])
        lines.append(f"{r['spec']:<{width}}  {r['status']:<13} {_loglik(r):>14} {took:>9}  {out}")
    counts = {s: sum(r["status"] == s for r in rows) for s in EXIT_CODES}
    lines.append("")
    lines.append(f"{len(rows)} specs: {counts['ok']} ok, {counts['not-converged']} not converged, "
                 f"{counts['invalid']} invalid, {counts['error']} internal errors; {seconds:.2f} s on {workers} "
                 f"worker{'s' if workers != 1 else ''} (exit {exit_code(rows)})")
    clashes = _shared_outputs(rows)
    if clashes:
        lines.append(f"warning: several specs wrote to the same folder ({', '.join(clashes)}): the last one written "
                     "is there; give them different `name:`/report.dir, or use --out")
    return "\n".join(lines) + "\n"


def _shared_outputs(rows: list[dict[str, Any]]) -> list[str]:
    seen: dict[str, int] = {}
    for r in rows:
        if r["out"] is not None:
            key = str(Path(r["out"]).resolve())
            seen[key] = seen.get(key, 0) + 1
    return sorted(display_path(k) for k, n in seen.items() if n > 1)


def summary_json(rows: list[dict[str, Any]], workers: int, seconds: float) -> str:
    """The batch for machines: every row, the counts, workers, wall time and the exit code."""
    counts = {s: sum(r["status"] == s for r in rows) for s in EXIT_CODES}
    doc = {"specs": rows, "counts": counts, "workers": workers, "seconds": seconds, "exit_code": exit_code(rows)}
    return json.dumps(doc, indent=2, allow_nan=False) + "\n"

"""Command line: `mlmrun fit | validate | schema`; the only place errors become exit codes.

Exit codes: 0 fitted and converged (or valid); 1 fitted but not converged
(results still written, flagged); 2 invalid spec or data (nothing written),
every problem printed as `FILE:LINE:COL: what is wrong; what to write instead`;
3 an unexpected internal error (one line; MLMRUN_DEBUG=1 shows the traceback).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

from mlmrun.errors import MlmrunError, SpecError
from mlmrun.estimate import estimate
from mlmrun.io import write_atomic
from mlmrun.pipeline import Prepared, prepare
from mlmrun.report import render_html, render_markdown, summarize
from mlmrun.results import FitResult, results_dict, results_json
from mlmrun.spec.loader import locate
from mlmrun.spec.schema import schema_text

EXIT_OK, EXIT_NOT_CONVERGED, EXIT_INVALID, EXIT_INTERNAL = 0, 1, 2, 3
OUTPUT_FILES = ("results.json", "report.html", "report.md")
PARTABLE_COLUMNS = ["name", "block", "free", "value", "lower", "upper", "transform", "level", "origin"]


def _err(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _progress(iteration: int, loglik: float) -> None:
    """The iteration log on stderr."""
    _err(f"iter {iteration}  loglik {loglik:.6f}")


def output_dir(out: str | None, spec_report_dir: str | None, name: str) -> Path:
    """--out, else the spec's report.dir, else reports/<spec name> (relative to the current directory)."""
    return Path(out or spec_report_dir or Path("reports") / name)


def render_outputs(fit: FitResult, prepared: Prepared, total_seconds: float) -> dict[str, str]:
    """results.json, report.html and report.md as strings, all rendered before anything is written."""
    doc = results_dict(fit, prepared.path, prepared, total_seconds)
    report = summarize(fit, prepared, total_seconds)
    return {"results.json": results_json(doc), "report.html": render_html(report), "report.md": render_markdown(report)}


def cmd_fit(args: argparse.Namespace) -> int:
    """Prepare, estimate, render in memory, then write the three outputs atomically."""
    start = time.perf_counter()
    prepared = prepare(args.spec, args.allow_outside_data)
    out = output_dir(args.out, prepared.spec.report.dir, prepared.spec.name)
    try:
        fit = estimate(prepared.model, None if args.quiet else _progress)
    except SpecError as exc:
        where = locate(prepared.marks, str(prepared.path), "estimation")
        raise SpecError(str(exc), [f"{where}: {p}" for p in exc.problems]) from None
    total = time.perf_counter() - start
    files = render_outputs(fit, prepared, total)
    write_atomic(out, files)
    if not args.quiet:
        print(f"{prepared.spec.name}: {'converged' if fit.converged else 'NOT converged'}, "
              f"log likelihood {fit.loglik:.4f}, {fit.iterations} iterations, {total:.2f} s; "
              f"wrote {', '.join(str(out / f) for f in OUTPUT_FILES)}")
    for warning in fit.warnings:
        _err(f"warning: {warning}")
    if not fit.converged:
        _err(f"mlmrun: {prepared.spec.name} did not converge; results written to {out} and flagged (exit 1)")
        return EXIT_NOT_CONVERGED
    return EXIT_OK


def cmd_validate(args: argparse.Namespace) -> int:
    """Load the spec and its data and compile the model, without fitting."""
    prepared = prepare(args.spec, args.allow_outside_data)
    model = prepared.model
    levels = ", ".join(f"{lv.name} ({lv.n_units} units{', crossed' if lv.crossed else ''})" for lv in model.levels)
    print(f"{prepared.path}: OK: spec '{prepared.spec.name}', {model.n} rows used "
          f"({model.n_dropped_missing} dropped for missing values) of {model.n_rows_read} read; "
          f"levels: {levels or 'none'}; {len(model.latent)} latent variables; "
          f"{model.partable.n_free} free parameters in {len(model.partable)} parameter-table rows")
    if args.show_partable:
        frame = model.partable.frame[PARTABLE_COLUMNS]
        print(frame.to_string(index=False))
    return EXIT_OK


def cmd_schema(args: argparse.Namespace) -> int:
    """Print the JSON Schema of the spec language."""
    sys.stdout.write(schema_text())
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with its three subcommands."""
    parser = argparse.ArgumentParser(prog="mlmrun", description="Fit GLLAMMs from declarative YAML specs.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    spec_args = argparse.ArgumentParser(add_help=False)
    spec_args.add_argument("spec", help="spec file (YAML)")
    spec_args.add_argument("--allow-outside-data", action="store_true",
                           help="let the spec read files outside its folder (only for specs you trust)")
    fit = sub.add_parser("fit", parents=[spec_args], help="fit a spec; write results.json, report.html and report.md")
    fit.add_argument("--out", help="output folder (default: the spec's report.dir, else reports/<name>)")
    fit.add_argument("--quiet", action="store_true", help="no iteration log and no summary line")
    fit.set_defaults(func=cmd_fit)
    val = sub.add_parser("validate", parents=[spec_args],
                         help="check a spec, its data and the compiled model without fitting")
    val.add_argument("--show-partable", action="store_true", help="print the parameter table")
    val.set_defaults(func=cmd_validate)
    sch = sub.add_parser("schema", help="print the JSON Schema of the spec language")
    sch.set_defaults(func=cmd_schema)
    return parser


def _report_error(exc: MlmrunError) -> None:
    if isinstance(exc, SpecError) and len(exc.problems) > 1:
        _err(f"mlmrun: {len(exc.problems)} problems:")
    for line in (exc.problems if isinstance(exc, SpecError) else [str(exc)]):
        _err(line)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `mlmrun` command; returns the exit code."""
    args = build_parser().parse_args(argv)
    command: Callable[[argparse.Namespace], int] = args.func
    try:
        return command(args)
    except MlmrunError as exc:
        _report_error(exc)
        return EXIT_INVALID
    except KeyboardInterrupt:
        _err("mlmrun: interrupted; nothing written")
        return 130
    except Exception as exc:
        if os.environ.get("MLMRUN_DEBUG"):
            raise
        message = " ".join(str(exc).split()) or "(no message)"
        _err(f"mlmrun: internal error: {type(exc).__name__}: {message}; nothing written "
             f"(set MLMRUN_DEBUG=1 for the traceback)")
        return EXIT_INTERNAL


if __name__ == "__main__":
    raise SystemExit(main())

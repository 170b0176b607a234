"""Command line: `mlmrun fit | validate | schema | compare | simulate`; the only place errors become exit codes.

Exit codes: 0 fitted and converged (or valid); 1 fitted but not converged
(results still written, flagged); 2 invalid spec or data, or an output folder that
cannot be written (nothing written), every problem printed as
`FILE:LINE:COL: what is wrong; what to write instead`; 3 an unexpected internal
error (one line; MLMRUN_DEBUG=1 shows the traceback); 4 `fit --check` found the refit
differs from the committed results.json; 130 interrupted (Ctrl-C,
also during start-up); 141 stdout closed by its reader (`| head`), silently.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from mlmrun import __version__
from mlmrun.display import display_path, relative_in_text, relative_path, sanitize_line
from mlmrun.errors import MlmrunError, SpecError
from mlmrun.io import OUTPUT_FILES, OutputError, write_atomic

EXIT_INTERRUPTED = 130
"""128 + SIGINT, as a shell reports a command stopped by Ctrl-C."""
EXIT_BROKEN_PIPE = 141
"""128 + SIGPIPE, as a shell reports a command whose reader went away (`mlmrun validate ... | head`)."""


class _StartUp:
    """Notes a Ctrl-C during the heavy imports below, which some packages turn into other errors.

    numpy, for one, re-raises an interrupt during its import as an ImportError with a
    long explanation; with the note, any failure after Ctrl-C is reported as the
    interrupt it was. Python's own handler is put back once the imports are done.
    """

    interrupted = False

    @classmethod
    def on_sigint(cls, signum: int, frame: object) -> None:
        cls.interrupted = True
        raise KeyboardInterrupt


_HEAVY = {
    "estimate": "mlmrun.estimate", "Prepared": "mlmrun.pipeline", "prepare": "mlmrun.pipeline",
    "render_html": "mlmrun.report", "render_markdown": "mlmrun.report", "summarize": "mlmrun.report",
    "FitResult": "mlmrun.results", "results_dict": "mlmrun.results", "results_json": "mlmrun.results",
    "locate": "mlmrun.spec.loader",
}
"""Names the commands use from modules that import numpy, scipy, pandas, formulaic or pydantic (seconds of
start-up): imported by `_load_heavy` only for the commands that need them, so `--help`, `--version` and
`schema` start fast."""


_NEEDS: dict[str, tuple[str, ...]] = {"schema": (), "validate": ("Prepared", "prepare", "locate")}
"""The _HEAVY names a command needs when not all of them (validate fits nothing and renders nothing)."""


def _load_heavy(names: tuple[str, ...] = tuple(_HEAVY)) -> None:
    """Import the _HEAVY `names` into this module (names already set, e.g. by a test, are kept).

    A Ctrl-C during these imports exits 130 with one line, even when a package turns it into another error.
    """
    import importlib

    previous = signal.getsignal(signal.SIGINT)
    with contextlib.suppress(ValueError):  # not the main thread: nothing to guard
        if previous is signal.default_int_handler:
            signal.signal(signal.SIGINT, _StartUp.on_sigint)
    try:
        for name in names:
            if name not in globals():
                globals()[name] = getattr(importlib.import_module(_HEAVY[name]), name)
    except BaseException as exc:
        if not (_StartUp.interrupted or isinstance(exc, KeyboardInterrupt)):
            raise
        print("mlmrun: interrupted; nothing written", file=sys.stderr)
        raise SystemExit(EXIT_INTERRUPTED) from None
    finally:
        with contextlib.suppress(ValueError):
            if signal.getsignal(signal.SIGINT) is _StartUp.on_sigint:
                signal.signal(signal.SIGINT, previous)


def __getattr__(name: str) -> object:
    """`cli.estimate` and the other _HEAVY names, imported on first access (tests patch them)."""
    if name not in _HEAVY:
        raise AttributeError(f"module 'mlmrun.cli' has no attribute {name!r}")
    _load_heavy((name,))
    return globals()[name]


if TYPE_CHECKING:
    from mlmrun.estimate import estimate
    from mlmrun.pipeline import Prepared, prepare
    from mlmrun.results import FitResult, results_dict, results_json

EXIT_OK, EXIT_NOT_CONVERGED, EXIT_INVALID, EXIT_INTERNAL = 0, 1, 2, 3
PARTABLE_COLUMNS = ["name", "block", "free", "value", "lower", "upper", "transform", "level", "origin"]


def _err(message: str) -> None:
    print(sanitize_line(relative_in_text(message)), file=sys.stderr, flush=True)


def _estimate_logged(model: object, quiet: bool) -> FitResult:
    """estimate() with the iteration log on stderr (progress.py: named phases, elapsed time) unless `quiet`."""
    if quiet:
        return estimate(model)
    from mlmrun.progress import ProgressLog

    log = ProgressLog(sys.stderr)
    fit = estimate(model, log)
    log.close()
    return fit


def _fit_distributed(args: argparse.Namespace) -> tuple[FitResult, Prepared] | None:
    """The fit over Dask workers when --scheduler, --local-workers or the spec's estimation.distributed asks for it."""
    from mlmrun.distributed.fit import fit_prepared, wants_distributed

    path = relative_path(args.spec)
    if args.check or not wants_distributed(path, args.scheduler, args.local_workers):
        return None  # --check refits in one process (a distributed fit equals it)
    if args.quiet:
        return fit_prepared(path, args.scheduler, args.local_workers, args.allow_outside_data)
    from mlmrun.progress import ProgressLog

    log = ProgressLog(sys.stderr)
    try:
        return fit_prepared(path, args.scheduler, args.local_workers, args.allow_outside_data, log)
    finally:
        log.close()


def _workers(text: str) -> int:
    """--local-workers: a whole number from 1 to 1024."""
    if not text.isdigit() or not 1 <= int(text) <= 1024:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of workers; write a whole number from 1 to 1024")
    return int(text)


def cmd_fit(args: argparse.Namespace) -> int:
    """Prepare, check the output folder, estimate, render in memory, then write the three outputs atomically.

    The output folder is created and a file written into it before the (possibly long)
    fit, so an unwritable folder is exit 2 at once; folders created for a fit that then
    fails are removed again.
    """
    from mlmrun.runner import fit_and_write, output_dir

    start = time.perf_counter()
    distributed = _fit_distributed(args)  # (fit, prepared) when fitted over Dask workers (mlmrun/distributed)
    prepared = distributed[1] if distributed else prepare(relative_path(args.spec), args.allow_outside_data)
    out = output_dir(prepared, args.out, args.allow_outside_data)
    if args.check:
        from mlmrun.check import run_check

        return run_check(prepared.spec.name, out, lambda: results_dict(
            _estimate_logged(prepared.model, args.quiet), prepared.path, prepared, 0.0))
    if distributed:
        estimator = lambda model: distributed[0]  # noqa: E731  (already fitted over the workers)
    else:
        estimator = lambda model: _estimate_logged(model, args.quiet)  # noqa: E731
    fit, total = fit_and_write(prepared, out, args.out is not None, estimator, start, getattr(args, "argv", None))
    shown = display_path(out)
    if not args.quiet:
        print(f"{prepared.spec.name}: {'converged' if fit.converged else 'NOT converged'}, "
              f"log likelihood {fit.loglik:.4f}, {fit.iterations} iterations, {total:.2f} s; "
              f"wrote {', '.join(str(Path(shown) / f) for f in OUTPUT_FILES)}")
    for warning in fit.warnings:
        _err(f"warning: {warning}")
    if not fit.converged:
        _err(f"mlmrun: {prepared.spec.name} did not converge; results written to {shown} and flagged (exit 1)")
        return EXIT_NOT_CONVERGED
    return EXIT_OK


def cmd_validate(args: argparse.Namespace) -> int:
    """Check every spec given (its data and compiled model, without fitting); one OK line or its errors each.

    Goes on after a failing spec; the exit code is the worst of all (2 if any spec is invalid).
    """
    worst = EXIT_OK
    for spec in args.specs:
        worst = max(worst, _guarded(lambda spec=spec: _validate_one(spec, args)))
    return worst


def _validate_one(spec: str, args: argparse.Namespace) -> int:
    from mlmrun.runner import output_dir

    prepared = prepare(relative_path(spec), args.allow_outside_data)
    output_dir(prepared, None, args.allow_outside_data)
    model = prepared.model
    levels = ", ".join(f"{lv.name} ({lv.n_units} units{', crossed' if lv.crossed else ''})" for lv in model.levels)
    print(f"{display_path(prepared.path)}: OK: spec '{prepared.spec.name}', {model.n} rows used "
          f"({model.n_dropped_missing} dropped for missing values) of {model.n_rows_read} read; "
          f"levels: {levels or 'none'}; {len(model.latent)} latent variables; "
          f"{model.partable.n_free} free parameters in {len(model.partable)} parameter-table rows")
    if args.show_partable:
        frame = model.partable.frame[PARTABLE_COLUMNS]
        print(frame.to_string(index=False))
    sys.stdout.flush()
    return EXIT_OK


def cmd_schema(args: argparse.Namespace) -> int:
    """Print the JSON Schema of the spec language (the copy shipped with the package: no model building)."""
    from mlmrun.spec.schema import shipped_schema_text

    sys.stdout.write(shipped_schema_text())
    return EXIT_OK


# --- post-estimation: compare and simulate (mlmrun/postest) -------------------------------------------------------


def cmd_compare(args: argparse.Namespace) -> int:
    """Fit (specs) or read (results.json) every model, then print the comparison and optionally write it as JSON."""
    from mlmrun.postest.compare import compare, load_candidate, render_text

    if args.bootstrap is not None and args.bootstrap < 1:
        raise OutputError(f"--bootstrap: {args.bootstrap} replicates; give a positive number such as 200")
    if args.bootstrap is None and (args.scheduler is not None or args.local_workers is not None):
        raise OutputError("--scheduler/--local-workers run the bootstrap replicates on a cluster; give --bootstrap R "
                          "too, or drop them")
    if args.json is not None:
        folder = Path(args.json).parent
        if not folder.is_dir():
            raise OutputError(f"--json: folder {display_path(folder)} does not exist; create it or choose another")
    with _replicate_map(args) as mapper:  # a cluster is reached (or refused) before the fits
        models = [load_candidate(relative_path(m), args.allow_outside_data) for m in args.models]
        doc = compare(models)
        if args.bootstrap:
            _bootstrap_tests(doc, models, args.bootstrap, args.seed, mapper)
    sys.stdout.write(render_text(doc))
    if args.json is not None:
        try:
            write_atomic(Path(args.json).parent, {Path(args.json).name: results_json(doc)})
        except OSError as exc:
            raise OutputError(f"--json: cannot write {display_path(args.json)} ({exc.strerror or exc})") from None
    converged = all(m["converged"] in (True, None) for m in doc["models"])
    if not converged:
        _err("mlmrun: a compared model did not converge (flagged in the table); its tests are unreliable (exit 1)")
    return EXIT_OK if converged else EXIT_NOT_CONVERGED


@contextlib.contextmanager
def _replicate_map(args: argparse.Namespace) -> Iterator[Callable]:
    """The map replicate loops run on: this process, or a Dask cluster with --scheduler/--local-workers."""
    from mlmrun.postest.bootstrap import in_process

    if args.scheduler is None and args.local_workers is None:
        yield in_process
        return
    from mlmrun.distributed.cluster import dask_client
    from mlmrun.distributed.replicates import dask_map

    with dask_client(args.scheduler, args.local_workers, args.connect_timeout) as client:
        yield dask_map(client)


def _bootstrap_tests(doc: dict, models: list, replicates: int, seed: int, mapper: Callable) -> None:
    """Add the parametric-bootstrap p-value to every LR test (both models must be specs fitted here)."""
    from mlmrun.postest.bootstrap import bootstrap_p, make_task
    from mlmrun.postest.compare import ComparisonError

    fits = {m.label: m.fit for m in models}
    for test in doc["lr_tests"]:
        small, large = fits[test["restricted"]], fits[test["full"]]
        if small is None or large is None:
            raise ComparisonError("--bootstrap refits both models on simulated data, so both must be given as specs, "
                                  f"not results.json ({test['restricted']}, {test['full']})")
        result = bootstrap_p(make_task(small, large, seed), test["chi2"], replicates, mapper)
        test["bootstrap"] = result


def cmd_simulate(args: argparse.Namespace) -> int:
    """Fit the spec (or read its fit from --results), then write `--replicates` simulated response vectors
    (seeded per replicate) to --out."""
    from mlmrun.postest.simulate import simulate_replicates, simulated_frame

    out = Path(args.out)
    suffix = out.suffix.lower()
    if suffix not in (".csv", ".parquet"):
        raise OutputError(f"--out: {display_path(out)} must end in .csv or .parquet")
    if not out.parent.is_dir():
        raise OutputError(f"--out: folder {display_path(out.parent)} does not exist; create it or choose another")
    if args.replicates < 1:
        raise OutputError(f"--replicates: {args.replicates}; give a positive number such as 100")
    prepared = prepare(relative_path(args.spec), args.allow_outside_data)
    if args.results:
        from mlmrun.postest.fitted import fitted_from_results, read_results

        fit = fitted_from_results(prepared, read_results(relative_path(args.results)), display_path(args.results))
    else:
        fit = estimate(prepared.model)
        for warning in fit.warnings:
            _err(f"warning: {warning}")
    frame = simulated_frame(fit.model, simulate_replicates(fit.model, fit.values, args.seed, args.replicates))
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        if suffix == ".csv":
            frame.to_csv(tmp, index=False)
        else:
            frame.to_parquet(tmp, index=False)
        os.replace(tmp, out)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise OutputError(f"--out: cannot write {display_path(out)} ({exc.strerror or exc})") from None
    if not args.quiet:
        print(f"{prepared.spec.name}: {'converged' if fit.converged else 'NOT converged'}, log likelihood "
              f"{fit.loglik:.4f}; wrote {args.replicates} replicates of {fit.model.n} rows (seed {args.seed}) "
              f"to {display_path(out)}")
    return EXIT_OK if fit.converged else EXIT_NOT_CONVERGED


def add_postest_commands(sub: argparse._SubParsersAction, trust: argparse.ArgumentParser) -> None:
    """The `compare` and `simulate` subcommands."""
    cmp = sub.add_parser("compare", parents=[trust],
                         help="compare fitted models: loglik, AIC, BIC, parameters and LR tests of nested pairs")
    cmp.add_argument("models", nargs="+", metavar="model", help="specs (fitted here) or results.json files")
    cmp.add_argument("--json", help="also write the comparison as JSON to this file")
    cmp.add_argument("--bootstrap", type=int, metavar="R",
                     help="parametric-bootstrap p-value of each LR test from R replicates (models given as specs)")
    cmp.add_argument("--seed", type=int, default=1, help="seed of the bootstrap replicates (default 1)")
    from mlmrun.distributed.cluster import add_cluster_options

    add_cluster_options(cmp, "the bootstrap replicates")
    cmp.set_defaults(func=cmd_compare)
    sim = sub.add_parser("simulate", parents=[trust],
                         help="fit a spec and simulate responses from the fitted model, keeping the design")
    sim.add_argument("spec", help="spec file (YAML)")
    sim.add_argument("--results", help="results.json of a fit of this spec (default: fit the spec first)")
    sim.add_argument("--seed", type=int, required=True, help="seed; replicate i uses child i of SeedSequence(seed)")
    sim.add_argument("--replicates", type=int, default=1, help="number of simulated data sets (default 1)")
    sim.add_argument("--out", required=True, help="output file, .csv or .parquet (long: replicate, obs, ids, response)")
    sim.add_argument("--quiet", action="store_true", help="no summary line")
    sim.set_defaults(func=cmd_simulate)
# --- predict (post-estimation) ------------------------------------------------------------------------------


def cmd_predict(args: argparse.Namespace) -> int:
    """Predictions per data row (and per unit with --by-unit) from results.json, or from a fit made first.

    Both output paths are checked before any (possibly long) fit; the tables are rendered in
    memory and written together, atomically.
    """
    from mlmrun.postest.fitted import fitted_from_results, read_results
    from mlmrun.postest.frames import model_rows, read_data_file
    from mlmrun.postest.newdata import new_predictions, read_new_data
    from mlmrun.postest.output import table_bytes, table_path, write_tables
    from mlmrun.postest.predict import Predictions, fitted_predictions, unit_table
    from mlmrun.postest.units import unit_predictions

    start = time.perf_counter()
    out = table_path(args.out, "--out")
    by_unit = table_path(args.by_unit, "--by-unit") if args.by_unit else None
    if by_unit is not None and by_unit.resolve() == out.resolve():
        raise OutputError("--by-unit: it names the same file as --out; give two different files")
    prepared = prepare(relative_path(args.spec), args.allow_outside_data)
    new_raw = None
    if args.data:
        new_raw = read_new_data(relative_path(args.data))
    if args.results:
        fit = fitted_from_results(prepared, read_results(relative_path(args.results)), display_path(args.results))
    else:
        fit = _estimate_logged(prepared.model, args.quiet)
    preds = unit_predictions(fit, args.eb)
    old_raw = read_data_file(prepared.data.path, prepared.model.data_sha256)
    rows = model_rows(prepared.spec, old_raw, fit.model.n)
    if new_raw is None:
        tables = fitted_predictions(fit.model, fit.values, rows, preds, args.eb)
    else:
        new = new_predictions(fit, old_raw, new_raw, preds, args.eb, display_path(args.data))
        tables = Predictions(new.rows, unit_table(fit.model, rows, preds, args.eb))
    files = {out: table_bytes(tables.rows, out)}
    if by_unit is not None:
        files[by_unit] = table_bytes(tables.units, by_unit)
    write_tables(files)
    if not fit.converged:
        _err(f"warning: the fit of {prepared.spec.name} did not converge; its predictions are those of the last estimates")
    for warning in fit.warnings if not args.results else ():
        _err(f"warning: {warning}")
    if not args.quiet:
        print(f"{prepared.spec.name}: {len(tables.rows)} rows predicted ({args.eb}s of the latent variables) in "
              f"{time.perf_counter() - start:.2f} s; wrote {', '.join(display_path(p) for p in files)}")
    return EXIT_OK


def add_predict_parser(sub: argparse._SubParsersAction, trust: argparse.ArgumentParser) -> None:
    """The `predict` subcommand's arguments."""
    pred = sub.add_parser("predict", parents=[trust],
                          help="predictions, residuals and empirical Bayes predictions per data row (or per unit)")
    pred.add_argument("spec", help="spec file (YAML)")
    pred.add_argument("--results", help="results.json of a fit of this spec (default: fit the spec first)")
    pred.add_argument("--data", help="predict for the rows of this file (CSV, TSV, Parquet, .dta) instead of the fitted data")
    pred.add_argument("--out", required=True, help="output table, FILE.csv or FILE.parquet")
    pred.add_argument("--eb", choices=("mean", "mode"), default="mean",
                      help="posterior means and SDs (default; gllapred u) or posterior modes with curvature SDs "
                           "(lme4's ranef)")
    pred.add_argument("--by-unit", help="also write one row per unit and level with its EB columns (.csv/.parquet)")
    pred.add_argument("--quiet", action="store_true", help="no iteration log and no summary line")
    pred.set_defaults(func=cmd_predict)

# --- end predict --------------------------------------------------------------------------------------------


# --- batch: many specs on a Dask cluster (mlmrun/distributed) ------------------------------------------------


def cmd_batch(args: argparse.Namespace) -> int:
    """Fit every spec on a Dask cluster as `fit` would, one progress line per completed fit, then the summary table.

    A failing spec does not stop the others; the exit code is the worst of all (distributed/batch.py).
    """
    from mlmrun.distributed import batch
    from mlmrun.distributed.cluster import dask_client, n_workers

    if args.json is not None and not Path(args.json).parent.is_dir():
        raise OutputError(f"--json: folder {display_path(Path(args.json).parent)} does not exist; create it or choose another")
    options = batch.BatchOptions(str(Path.cwd()), args.out, args.allow_outside_data, tuple(getattr(args, "argv", ()) or ()))
    batch.check_distinct_outputs(args.specs, options)
    start = time.perf_counter()
    with dask_client(args.scheduler, args.local_workers, args.connect_timeout) as client:
        workers = n_workers(client)
        rows = batch.run_batch(client, args.specs, options, None if args.quiet else _batch_progress)
    seconds = time.perf_counter() - start
    sys.stdout.write(batch.summary_table(rows, workers, seconds))
    if args.json is not None:
        try:
            write_atomic(Path(args.json).parent, {Path(args.json).name: batch.summary_json(rows, workers, seconds)})
        except OSError as exc:
            raise OutputError(f"--json: cannot write {display_path(args.json)} ({exc.strerror or exc})") from None
    return batch.exit_code(rows)


def _batch_progress(row: dict, done: int, total: int) -> None:
    from mlmrun.distributed.batch import progress_line

    for line in progress_line(row, done, total).splitlines():
        _err(line)


def add_batch_parser(sub: argparse._SubParsersAction, trust: argparse.ArgumentParser) -> None:
    """The `batch` subcommand's arguments."""
    from mlmrun.distributed.cluster import add_cluster_options

    bat = sub.add_parser("batch", parents=[trust],
                         help="fit many specs on a Dask cluster (local by default); a summary table at the end")
    bat.add_argument("specs", nargs="+", metavar="spec", help="spec files (YAML), each fitted as `mlmrun fit` fits it")
    bat.add_argument("--out", help="output folder: each spec's outputs go to OUT/<spec file stem> (default: where "
                                   "`mlmrun fit` puts them, the spec's report.dir, else reports/<name>)")
    bat.add_argument("--json", help="also write the summary (one row per spec) as JSON to this file")
    bat.add_argument("--quiet", action="store_true", help="no progress lines, only the summary table")
    add_cluster_options(bat, "the fits")
    bat.set_defaults(func=cmd_batch)

# --- end batch ----------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with its subcommands."""
    parser = argparse.ArgumentParser(prog="mlmrun", description="Fit GLLAMMs from declarative YAML specs.")
    parser.add_argument("--version", action="version", version=f"mlmrun {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    trust = argparse.ArgumentParser(add_help=False)
    trust.add_argument("--allow-outside-data", action="store_true",
                       help="let the spec read files, and write report.dir, outside its folder and the working "
                            "directory (only for specs you trust)")
    fit = sub.add_parser("fit", parents=[trust], help="fit a spec; write results.json, report.html and report.md")
    fit.add_argument("spec", help="spec file (YAML)")
    fit.add_argument("--out", help="output folder (default: the spec's report.dir, else reports/<name>)")
    fit.add_argument("--quiet", action="store_true", help="no iteration log and no summary line")
    fit.add_argument("--check", action="store_true",
                     help="refit and compare with the results.json in the output folder, writing nothing: exit 0 "
                          "when it reproduces, 4 with the differences when not (mlmrun/check.py has the tolerances)")
    fit.add_argument("--scheduler", metavar="ADDRESS",
                     help="fit over the workers of this Dask scheduler (e.g. tcp://10.0.0.5:8786); data.path must "
                          "name a partitioned Parquet folder (docs/distributed.md)")
    fit.add_argument("--local-workers", metavar="N", type=_workers,
                     help="fit over a local Dask cluster of N worker processes (partitioned Parquet data.path)")
    fit.set_defaults(func=cmd_fit)
    val = sub.add_parser("validate", parents=[trust],
                         help="check specs, their data and the compiled models without fitting")
    val.add_argument("specs", nargs="+", metavar="spec", help="spec file(s) (YAML); one line of outcome each")
    val.add_argument("--show-partable", action="store_true", help="print the parameter table")
    val.set_defaults(func=cmd_validate)
    sch = sub.add_parser("schema", help="print the JSON Schema of the spec language")
    sch.set_defaults(func=cmd_schema)
    add_postest_commands(sub, trust)
    add_predict_parser(sub, trust)
    add_batch_parser(sub, trust)
    return parser


def _report_error(exc: MlmrunError) -> None:
    located = [p for p in exc.problems if not p.startswith("mlmrun: ")] if isinstance(exc, SpecError) else []
    if len(located) > 1:
        _err(f"mlmrun: {len(located)} problems:")
    for line in (exc.problems if isinstance(exc, SpecError) else [str(exc)]):
        _err(line)


def _guarded(command: Callable[[], int]) -> int:
    """Run one command, turning mlmrun's errors into exit 2 and anything unexpected into one line and exit 3."""
    try:
        return command()
    except MlmrunError as exc:
        _report_error(exc)
        return EXIT_INVALID
    except (KeyboardInterrupt, BrokenPipeError):
        raise
    except Exception as exc:
        if os.environ.get("MLMRUN_DEBUG"):
            raise
        message = " ".join(str(exc).split()) or "(no message)"
        _err(f"mlmrun: internal error: {type(exc).__name__}: {message}; nothing written "
             f"(set MLMRUN_DEBUG=1 for the traceback)")
        return EXIT_INTERNAL


def _quiet_broken_pipe() -> None:
    """Point stdout and stderr at /dev/null so that the interpreter's last flush cannot fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(AttributeError, OSError, ValueError):
            os.dup2(devnull, stream.fileno())
    os.close(devnull)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `mlmrun` command; returns the exit code.

    Ctrl-C exits 130 with one line; a closed pipe on stdout (`| head`) exits 141 silently.
    """
    try:
        args = build_parser().parse_args(argv)
        args.argv = list(sys.argv[1:] if argv is None else argv)
        _load_heavy(_NEEDS.get(args.command, tuple(_HEAVY)))
        command: Callable[[argparse.Namespace], int] = args.func
        code = _guarded(lambda: command(args))
        sys.stdout.flush()
        return code
    except KeyboardInterrupt:
        with contextlib.suppress(OSError, ValueError):
            _err("mlmrun: interrupted; nothing written")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        _quiet_broken_pipe()
        return EXIT_BROKEN_PIPE


if __name__ == "__main__":
    raise SystemExit(main())

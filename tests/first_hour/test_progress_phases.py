"""The iteration log names its phases with elapsed time; a status line on a terminal, plain lines otherwise."""

from __future__ import annotations

import io
import itertools

from mlmrun.estimate import estimate
from mlmrun.pipeline import prepare
from mlmrun.progress import Offset, ProgressLog, phase
from tests.conftest import SPECS, write_spec


class Recorder:
    """A progress listener that keeps what the engine reported, in order."""

    def __init__(self) -> None:
        self.events: list[tuple[str, object]] = []

    def __call__(self, iteration: int, loglik: float) -> None:
        self.events.append(("iter", iteration))

    def phase(self, name: str) -> None:
        self.events.append(("phase", name))

    def phases(self) -> list[str]:
        return [str(v) for k, v in self.events if k == "phase"]


def test_linear_gaussian_engine_reports_its_phases_in_order():
    rec = Recorder()
    estimate(prepare(SPECS / "pig_slope.yaml").model, rec)
    names = rec.phases()
    assert names[0] == "start values" and names[1] == "optimisation (start 1)"
    assert names[-2:] == ["standard errors", "empirical Bayes"]
    first_iter = next(i for i, (k, _) in enumerate(rec.events) if k == "iter")
    assert rec.events.index(("phase", "optimisation (start 1)")) < first_iter


def test_quadrature_engine_reports_rounds_standard_errors_point_check_and_empirical_bayes(spec_dir):
    text = (SPECS / "cbpp.yaml").read_text().split("\n", 1)[1]
    text = text.replace("integration:", "check_points: [12], integration:") if "integration:" in text else \
        text + "\nestimation: {method: ML, check_points: [12]}\n"
    rec = Recorder()
    estimate(prepare(write_spec(spec_dir, text)).model, rec)
    names = rec.phases()
    assert names[0] == "start values"
    assert "optimisation round 1" in names
    assert names.index("standard errors") < names.index("point check") < names.index("empirical Bayes")
    assert names[-1] == "empirical Bayes"


def test_plain_lines_name_phases_with_elapsed_time_and_keep_the_iteration_format():
    clock = itertools.count(0.0, 0.5).__next__
    out = io.StringIO()
    log = ProgressLog(out, tty=False, clock=clock)
    log.phase("start values")
    log(1, -100.25)
    log.phase("standard errors")
    log.close()
    assert out.getvalue().splitlines() == ["phase start values (at 0.50 s)", "iter 1  loglik -100.250000",
                                           "phase standard errors (at 1.00 s)", "done in 1.50 s"]
    assert "\r" not in out.getvalue() and "\x1b" not in out.getvalue()


def test_terminal_rewrites_one_status_line_and_leaves_each_finished_phase_with_its_duration():
    clock = itertools.count(0.0, 1.0).__next__
    out = io.StringIO()
    log = ProgressLog(out, tty=True, clock=clock)
    log.phase("optimisation round 1")
    log(3, -50.0)
    log.phase("standard errors")
    log.close()
    text = out.getvalue()
    assert "\r\x1b[K[" in text and "optimisation round 1: iter 3  loglik -50.000000" in text
    finished = [ln for ln in text.replace("\r\x1b[K", "\n").splitlines() if ln.startswith("  ")]
    assert finished == ["  optimisation round 1: 3.00 s", "  standard errors: 2.00 s"]
    assert text.endswith("done in 6.00 s\n")


def test_plain_functions_are_not_told_about_phases_and_offsets_forward_them():
    calls = []
    phase(lambda i, f: calls.append((i, f)), "start values")  # a function without .phase: ignored
    assert calls == []
    rec = Recorder()
    shifted = Offset(rec, 10)
    shifted.phase("optimisation round 1")
    shifted(2, -1.0)
    assert rec.events == [("phase", "optimisation round 1"), ("iter", 12)]

"""Property-based fuzzing of the CLI: broken specs and data exit 0, 1 or 2 with located messages, never 3.

Bounded and reproducible: derandomized (the same cases every run), max_examples
from MLMRUN_FUZZ_EXAMPLES (default a few hundred, about a minute; `make fuzz`
runs tens of thousands), every MLMRUN_FUZZ_FIT_EVERY-th case also fitted
on a small slice of the data with 3 quadrature points,
then predicted and simulated from its results.json. MLMRUN_FUZZ_SEED draws a
different sequence; MLMRUN_FUZZ_LOG=FILE appends every outcome as JSON lines
and keeps going past failures (no shrinking), for long runs and their counts.

Each case is bounded in time by the runner (validate 20 s, fit 60 s and 3 GiB in
a subprocess), not by hypothesis's `deadline`, which would make a loaded CI
machine flaky; a case over its bound is a failure ("exit -1").
Failures in code other branches own are tolerated through tests/fuzz/known.py.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections import Counter
from pathlib import Path

from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

from tests.fuzz.mutate import Case, cases
from tests.fuzz.runner import Outcome, run_case

EXAMPLES = int(os.environ.get("MLMRUN_FUZZ_EXAMPLES", "300"))
FIT_EVERY = int(os.environ.get("MLMRUN_FUZZ_FIT_EVERY", "25"))
SEED = os.environ.get("MLMRUN_FUZZ_SEED")
LOG = os.environ.get("MLMRUN_FUZZ_LOG")


def _record(case: Case, outcomes: list[Outcome]) -> None:
    if not LOG:
        return
    with open(LOG, "a") as handle:
        for o in outcomes:
            handle.write(json.dumps({"spec": case.spec_name, "actions": case.actions, "command": o.command,
                                     "rc": o.rc, "problem": o.problem, "known": o.known,
                                     "stderr": o.stderr[-2000:] if (o.problem or o.rc == 2) else ""}) + "\n")


def test_mutated_specs_and_data_exit_cleanly_with_located_messages() -> None:
    tally: Counter[str] = Counter()
    unknown: list[str] = []

    @settings(max_examples=EXAMPLES, deadline=None, derandomize=SEED is None, database=None,
              phases=[Phase.explicit, Phase.generate] if LOG else list(Phase),
              suppress_health_check=list(HealthCheck))
    @given(st.data())
    def check(data: st.DataObject) -> None:
        case, fit = data.draw(cases(fit_every=FIT_EVERY))
        tally["cases"] += 1
        with tempfile.TemporaryDirectory(prefix="mlmrun-fuzz-") as folder:
            outcomes = run_case(case, Path(folder), fit)
        _record(case, outcomes)
        for o in outcomes:
            tally[f"{o.command} exit {o.rc}" + (" (known failure)" if o.known else "")] += 1
            if o.problem and not o.known:
                message = f"{o.command} on {case.spec_name} after {case.actions}: {o.problem}\n{o.stderr[-1500:]}"
                if not LOG:
                    raise AssertionError(message)
                unknown.append(message)

    if SEED is not None:
        check = seed(int(SEED))(check)
    check()
    print(f"fuzz: {dict(sorted(tally.items()))}")
    assert not unknown, f"{len(unknown)} unknown failures; first:\n{unknown[0]}"
    assert tally["validate exit 2"] > 0 and tally["validate exit 0"] > 0  # the mutations reach both outcomes

"""The error of post-estimation commands about their command-line inputs (exit 2)."""

from __future__ import annotations

from mlmrun.errors import MlmrunError


class UsageError(MlmrunError):
    """A command-line input besides the spec and its data is unusable: a results.json that is not one or
    belongs to other data or another model, a --data file the fitted model cannot predict for, an --out
    name without a table extension. The CLI exits 2 with the message (`FLAG: what is wrong; what to do`).

    Like io.OutputError, these are not spec or data errors located in a spec file, so they are tested by
    the command's own tests (tests/postest_predict/test_predict_errors.py), not by tests/errors' table.
    """

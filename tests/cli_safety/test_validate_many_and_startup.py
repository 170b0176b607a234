"""`mlmrun validate` on several specs; quiet Ctrl-C and closed pipes; paths relative to the working directory."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from tests.cli_safety.helpers import PIG_SPEC, located, run_cli
from tests.conftest import write_spec
from tests.report.fakes import ROOT, SPECS


def test_validate_several_specs_one_line_each_and_goes_on_after_failures(spec_dir, capsys, monkeypatch):
    monkeypatch.chdir(spec_dir)
    good = write_spec(spec_dir, PIG_SPEC, "good.yaml")
    dup = write_spec(spec_dir, PIG_SPEC + "name: again\n", "dup.yaml")
    other = write_spec(spec_dir, PIG_SPEC.replace("name: pig_slope", "name: second"), "second.yaml")
    code, out, err = run_cli(["validate", str(good), str(dup), "missing.yaml", str(other)], capsys)
    assert code == 2
    lines = out.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("good.yaml: OK: spec 'pig_slope', 432 rows used")
    assert lines[1].startswith("second.yaml: OK: spec 'second'")
    assert err.splitlines() == [
        f"dup.yaml:{len(PIG_SPEC.splitlines()) + 2}:1: key 'name' repeats the key at line 3; keep one",
        "missing.yaml: cannot read spec (No such file or directory); check the path (relative to the working directory)",
    ]


def test_validate_several_good_specs_exits_0_with_partables(capsys):
    specs = [str(SPECS / "pig_slope.yaml"), str(SPECS / "cbpp.yaml")]
    code, out, _ = run_cli(["validate", *specs, "--show-partable"], capsys)
    assert code == 0
    assert sum(": OK: spec" in line for line in out.splitlines()) == 2
    assert out.count("transform") == 2


def test_paths_in_messages_are_relative_to_the_working_directory(spec_dir, capsys, monkeypatch):
    monkeypatch.chdir(spec_dir)
    spec = write_spec(spec_dir, PIG_SPEC.replace("{method: ML}", "{metod: ML}"))
    code, _, err = run_cli(["validate", str(spec.resolve())], capsys)
    assert code == 2 and str(spec_dir) not in err
    assert located(err, "model.yaml") == [(13, 14, "estimation.metod: unknown key 'metod'; did you mean 'method'?")]


def _run_python(code: str, *args: str, **kwargs) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args], env=env, cwd=ROOT, check=False,
                          stdin=subprocess.DEVNULL, timeout=120, **kwargs)


INTERRUPTED_IMPORT = """
import os, signal, sys, time

class Interrupt:
    def find_spec(self, name, path=None, target=None):
        if name != "scipy":
            return None
        if CONVERT:  # a real Ctrl-C in the middle of an import that turns it into another error, as numpy's does
            try:
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(5)
            except KeyboardInterrupt:
                raise ImportError("PyCapsule_Import could not import module") from None
        raise KeyboardInterrupt

sys.meta_path.insert(0, Interrupt())
from mlmrun.cli import main  # what the `mlmrun` console script runs
sys.exit(main())
"""


@pytest.mark.parametrize("convert", [False, True], ids=["interrupt", "interrupt-turned-import-error"])
def test_ctrl_c_during_start_up_is_quiet_and_exits_130(convert):
    """The console script imports mlmrun.cli, whose heavy imports take seconds: interrupt one of them."""
    proc = _run_python(f"CONVERT = {convert}\n" + INTERRUPTED_IMPORT, "validate", "specs/pig_slope.yaml",
                       capture_output=True, text=True)
    assert proc.returncode == 130
    assert proc.stderr == "mlmrun: interrupted; nothing written\n"


def test_import_mlmrun_is_light():
    proc = _run_python("import sys, mlmrun; print(sorted(m for m in ('numpy', 'scipy', 'pandas', 'pydantic') "
                       "if m in sys.modules)); print(mlmrun.estimate.__module__)", capture_output=True, text=True)
    assert proc.stdout.splitlines() == ["[]", "mlmrun.estimate"], proc.stderr


def test_closed_pipe_is_quiet_and_exits_141():
    """`mlmrun validate specs/*.yaml --show-partable | head -1`: the reader goes away before the writing ends."""
    read, write = os.pipe()
    os.close(read)
    try:
        proc = _run_python("from mlmrun.cli import main; import sys; sys.exit(main())", "validate",
                           "specs/pig_slope.yaml", "specs/cbpp.yaml", "--show-partable", stdout=write,
                           stderr=subprocess.PIPE, text=True)
    finally:
        os.close(write)
    assert proc.returncode == 141
    assert proc.stderr == ""


def test_no_stage_prints_absolute_paths_inside_the_working_directory(spec_dir, capsys, monkeypatch):
    monkeypatch.chdir(spec_dir)
    for data_path in ("data/nope.csv", "../outside.csv"):
        spec = write_spec(spec_dir, PIG_SPEC.replace("data/pig.csv", data_path))
        code, _, err = run_cli(["validate", str(spec.resolve())], capsys)
        assert code == 2 and err.startswith("model.yaml:5:")
        assert str(spec_dir) not in err


def test_relative_in_text_rewrites_only_paths_inside_the_working_directory(tmp_path, monkeypatch):
    from mlmrun.display import relative_in_text

    monkeypatch.chdir(tmp_path)
    cwd = str(tmp_path)
    text = f"a {cwd}/data/x.csv; the folder {cwd}; a sibling {cwd}2/y; quoted '{cwd}'"
    assert relative_in_text(text) == f"a data/x.csv; the folder .; a sibling {cwd}2/y; quoted '.'"

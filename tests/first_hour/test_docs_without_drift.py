"""Documentation without drift: the results.json schema against real output, files the READMEs name exist,
stated defaults equal the code's, and the CI and pre-commit files say what docs/ci.md says."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tomllib

import jsonschema
import pytest
import yaml

from mlmrun import cli
from mlmrun.spec.model import Estimation, Integration
from tests.conftest import ROOT, SPECS

DOCS = ROOT / "docs"
SCHEMA = json.loads((DOCS / "results.schema.json").read_text())
CONTRACT = (DOCS / "results-json.md").read_text()

FITTED = {
    "pig_slope": "",                                            # exact linear Gaussian engine
    "cbpp": "check_points: [12], ",                             # adaptive quadrature, ICC, point check
    "wine_logit": "",                                           # ordinal thresholds
    "ovary_ar2": "",                                            # residual covariance structure
    "cbpp_npmle": "",                                           # discrete latent distribution
    "holzinger_swineford_rescov": "",                           # moments engine: fit measures, standardized
}


@pytest.fixture(scope="module")
def outputs(tmp_path_factory) -> dict[str, dict]:
    folder = tmp_path_factory.mktemp("docs")
    shutil.copytree(SPECS / "data", folder / "data")
    docs = {}
    for name, extra in FITTED.items():
        text = (SPECS / f"{name}.yaml").read_text()
        if extra:
            text = text.replace("estimation: {", "estimation: {" + extra, 1)
            assert extra in text
        (folder / f"{name}.yaml").write_text(text)
        assert cli.main(["fit", str(folder / f"{name}.yaml"), "--out", str(folder / name), "--quiet"]) == 0
        docs[name] = json.loads((folder / name / "results.json").read_text())
    return docs


def test_results_schema_is_a_valid_draft_2020_12_schema():
    jsonschema.Draft202012Validator.check_schema(SCHEMA)


@pytest.mark.parametrize("name", FITTED)
def test_real_results_json_matches_the_documented_schema(outputs, name):
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message[:200]}"
              for e in jsonschema.Draft202012Validator(SCHEMA).iter_errors(outputs[name])]
    assert errors == []


def test_every_top_level_key_written_is_in_the_schema_and_the_contract(outputs):
    written = set().union(*(doc.keys() for doc in outputs.values()))
    undocumented = sorted(k for k in written if k not in SCHEMA["properties"] or f"`{k}`" not in CONTRACT)
    assert undocumented == [], "document these keys in docs/results.schema.json and docs/results-json.md"
    assert {"point_check", "icc", "empirical_bayes", "lr_test", "residual_structure", "discrete", "class_posterior",
            "fit_measures", "standardized"} <= written  # the optional keys were exercised


def test_schema_properties_are_all_described_in_the_contract():
    assert [k for k in SCHEMA["properties"] if f"`{k}`" not in CONTRACT] == []


def test_thresholds_are_named_cut1_cut2_as_the_readme_says(outputs):
    names = [p["name"] for p in outputs["wine_logit"]["parameters"] if p["block"] == "threshold"]
    assert names == [f"cut{k}" for k in range(1, len(names) + 1)] and len(names) == 4
    assert "`cut1`, `cut2`" in (ROOT / "README.md").read_text()


def test_readme_defaults_table_states_the_code_defaults():
    readme = (ROOT / "README.md").read_text()
    table = readme[readme.index("### Defaults that matter"):readme.index("### Analyses in version control")]
    assert f"{Integration().points} points per dimension" in table
    assert f"method: {Integration().method}" in table
    assert f"at most {Estimation().max_iter} iterations" in table
    assert f"tolerance {Estimation().tol:.0e}".replace("e-0", "e-") in table
    assert f"exceed {Estimation().memory_budget_gib:g} GiB" in table
    assert Estimation().method == "ML" and "| method | ML |" in table


OUTPUT_NAMES = {"results.json", "report.md", "report.html", "run.json", "FILE.parquet", "FILE.csv", "specs/mine.yaml",
                ".bench/results.json", "bench/results.json", ".pre-commit-config.yaml"}
"""Names the READMEs use for files a command writes, or for the reader's own files: not in the repository."""

_FILE = re.compile(r"`([\w./-]+\.(?:csv|tsv|parquet|dta|yaml|yml|json|py|md))`|\b((?:specs|tests|examples|bench|docs|"
                   r"tools|schemas|mlmrun)/[\w./-]*\w\.(?:csv|tsv|parquet|dta|yaml|yml|json|py|md))\b")


@pytest.mark.parametrize("readme, folders, least", [
    ("README.md", ("", "specs", "docs"), 20),
    ("specs/data/README.md", ("specs/data", "", "tests/reference"), 40),
    ("docs/ci.md", ("docs", ""), 3),
    ("docs/results-json.md", ("docs", ""), 2),
])
def test_every_file_a_readme_names_exists(readme, folders, least):
    text = (ROOT / readme).read_text()
    named = {a or b for a, b in _FILE.findall(text)} - OUTPUT_NAMES
    named = {n for n in named if "<" not in n and "*" not in n and "NAME" not in n}
    missing = sorted(n for n in named if not any((ROOT / f / n.removeprefix("../")).exists() for f in folders))
    assert len(named) >= least and missing == []


def test_every_data_file_in_specs_data_is_described_in_its_readme():
    readme = (SPECS / "data" / "README.md").read_text()
    github = (SPECS / "data" / "PROVENANCE_github.md").read_text()  # a table of plain file names
    files = sorted(p.name for p in (SPECS / "data").iterdir() if p.suffix in (".csv", ".parquet", ".dta"))
    assert [f for f in files if f"`{f}`" not in readme and not re.search(rf"(^|[\s|,]){re.escape(f)}[\s|,]", github,
                                                                          re.M)] == []


def test_provenance_of_every_shipped_spec_names_only_files_in_the_repository():
    named = 0
    for spec in sorted(SPECS.glob("*.yaml")):
        provenance = str(yaml.safe_load(spec.read_text()).get("data", {}).get("provenance", ""))
        for path in re.findall(r"[\w./-]+/[\w.-]+\.(?:json|csv|py|md|R)\b", provenance):
            named += 1
            assert (ROOT / path).exists() or (SPECS / path).exists(), f"{spec.name}: {path}"
    assert named >= 2
    flagship = yaml.safe_load((SPECS / "abortion.yaml").read_text())["data"]["provenance"]
    assert "tests/reference/abortion_sim__truth.json" in flagship


def test_pyarrow_is_a_declared_dependency():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert any(re.match(r"pyarrow\s*>=", d) for d in deps)


def test_pre_commit_hook_runs_validate_on_yaml_files():
    hooks = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())
    hook = next(h for h in hooks if h["id"] == "mlmrun-validate")
    assert hook["entry"] == "mlmrun validate" and hook["language"] == "python"
    assert re.search(hook["files"], "specs/model.yaml") and not re.search(hook["files"], "data/x.csv")
    assert "mlmrun-validate" in (DOCS / "ci.md").read_text()


def test_example_workflow_validates_checks_and_keeps_reports():
    flow = yaml.safe_load((DOCS / "examples" / "mlmrun-analyses.yml").read_text())
    steps = [s for job in flow["jobs"].values() for s in job["steps"]]
    runs = " ".join(s.get("run", "") for s in steps)
    assert "mlmrun validate" in runs and "--check" in runs
    assert any(s.get("uses", "").startswith("actions/upload-artifact") for s in steps)
    assert "**0**" in (DOCS / "ci.md").read_text() and "**4**" in (DOCS / "ci.md").read_text()


def test_schema_written_next_to_a_copied_spec_validates_it(tmp_path):
    """docs/editors.md: `mlmrun schema > mlmrun.schema.json` beside a spec in any folder."""
    proc = subprocess.run([sys.executable, "-m", "mlmrun", "schema"], cwd=tmp_path, capture_output=True, text=True,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}, timeout=120, check=True)
    (tmp_path / "mlmrun.schema.json").write_text(proc.stdout)
    spec = yaml.safe_load((SPECS / "pig_slope.yaml").read_text())
    jsonschema.Draft202012Validator(json.loads(proc.stdout)).validate(spec)
    spec["estimation"]["metod"] = "ML"
    assert not jsonschema.Draft202012Validator(json.loads(proc.stdout)).is_valid(spec)

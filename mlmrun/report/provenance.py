"""Where a report comes from: mlmrun version, spec and data SHA-256, the command line, Python and library versions.

Shown at the bottom of the report and written to run.json. Library versions come from the installed
distributions' metadata (importlib.metadata), which costs no import of the libraries themselves.
"""

from __future__ import annotations

import platform
import shlex
from importlib import metadata

KEY_LIBRARIES = ("numpy", "scipy", "pandas", "formulaic", "pydantic", "jinja2", "matplotlib")


def library_versions() -> dict[str, str]:
    """{'python': '3.11.9', 'numpy': '2.1.0', ...}; a library that is not installed is left out."""
    out = {"python": platform.python_version()}
    for name in KEY_LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def command_line(argv: list[str] | None) -> str:
    """The command as a shell would take it back: `mlmrun fit specs/pig.yaml --out reports/pig`."""
    return "" if argv is None else shlex.join(["mlmrun", *argv])


def footer(version: str, spec_sha256: str, data_sha256: str, argv: list[str] | None) -> list[tuple[str, str]]:
    """(label, value) lines of the provenance footer."""
    versions = library_versions()
    lines = [("mlmrun", version), ("Spec SHA-256", spec_sha256), ("Data SHA-256", data_sha256)]
    if argv is not None:
        lines.append(("Command", command_line(argv)))
    lines.append(("Python", versions.pop("python")))
    lines.append(("Libraries", ", ".join(f"{k} {v}" for k, v in versions.items())))
    return lines

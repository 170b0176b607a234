"""Atomic output: every file is written to a temporary file in the target folder, then renamed into place.

Callers render everything in memory first and hand the finished texts over
together, so a failure (in rendering, or in writing any one file) never
leaves a half-written results.json or report behind: either a file is the
complete new version, or it is untouched.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_atomic(directory: str | Path, files: dict[str, str]) -> list[Path]:
    """Write `files` (name -> text) into `directory`; all temporaries are written before any rename.

    Returns the final paths. On any error every temporary file is removed and the
    error is re-raised; files already in the folder keep their previous content.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    mode = 0o666 & ~_umask()
    staged: list[tuple[str, Path]] = []
    try:
        for name, text in files.items():
            fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=directory)
            staged.append((tmp, directory / name))
            with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
                fh.write(text)
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(tmp, mode)
        for tmp, final in staged:
            os.replace(tmp, final)
    except BaseException:
        for tmp, _ in staged:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        raise
    return [final for _, final in staged]

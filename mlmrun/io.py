"""Output folders: checked before a fit, then written atomically after it.

`prepare_output_dir` creates the folder and writes (and removes) a probe file in it
before the fit, so an unwritable folder, a file in the way or a folder where an
output file should go is a clear error at once rather than after a long fit.

`write_atomic` writes every file to a temporary file in the target folder, then
renames it into place. Callers render everything in memory first and hand the
finished texts over together, so a failure (in rendering, or in writing any one
file) never leaves a half-written results.json or report behind: either a file is
the complete new version, or it is untouched.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

from mlmrun.display import clip, display_path
from mlmrun.errors import MlmrunError

OUTPUT_FILES = ("results.json", "report.html", "report.md", "run.json")
"""Written by every fit; the report's figures (report/plots.py FIGURE_PREFIX*.svg) are written beside them."""


class OutputError(MlmrunError):
    """The output folder cannot be created or written (exit 2, before any fitting)."""


def _missing_folders(directory: Path) -> list[Path]:
    """`directory` and those of its parents that do not exist yet, deepest first."""
    missing = []
    for folder in (directory, *directory.parents):
        if os.path.lexists(folder):
            break
        missing.append(folder)
    return missing


def prepare_output_dir(directory: str | Path, names: Iterable[str] = OUTPUT_FILES) -> list[Path]:
    """Create `directory` if needed and check that `names` can be written into it.

    Returns the folders it created (deepest first) so that a failed fit can remove them
    again (`remove_created`). Raises OutputError naming the folder and what to do.
    """
    directory = Path(directory)
    shown = clip(display_path(directory), 300)
    created = _missing_folders(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise OutputError(f"output folder {shown} is an existing file; remove it or choose another folder "
                          "(--out DIR)") from None
    except NotADirectoryError:
        raise OutputError(f"cannot create output folder {shown}: a part of its path is a file; "
                          "choose another folder (--out DIR)") from None
    except OSError as exc:
        raise OutputError(f"cannot create output folder {shown} ({exc.strerror or exc}); "
                          "choose another folder (--out DIR)") from None
    if not directory.is_dir():
        raise OutputError(f"output folder {shown} is not a folder; remove it or choose another folder (--out DIR)")
    try:
        for name in names:
            target = directory / name
            if os.path.lexists(target) and target.is_dir():
                raise OutputError(f"{clip(display_path(target), 300)} is a folder, where mlmrun writes the file {name}; "
                                  "remove it or choose another folder (--out DIR)")
        _probe(directory, shown)
    except OutputError:
        remove_created(created)
        raise
    return created


def _probe(directory: Path, shown: str) -> None:
    """Write a small file into `directory` and remove it again."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=".mlmrun-probe.", suffix=".tmp", dir=directory)
    except OSError as exc:
        raise OutputError(f"cannot write into output folder {shown} ({exc.strerror or exc}); "
                          "make it writable or choose another folder (--out DIR)") from None
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(b"mlmrun write check\n")
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as exc:
        raise OutputError(f"cannot write into output folder {shown} ({exc.strerror or exc}); "
                          "free some space or choose another folder (--out DIR)") from None
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def remove_created(created: list[Path]) -> None:
    """Remove folders `prepare_output_dir` created (deepest first), as long as they are still empty."""
    for folder in created:
        try:
            folder.rmdir()
        except OSError:
            return


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


def remove_stale(directory: str | Path, pattern: str, keep: Iterable[str]) -> None:
    """Remove files matching `pattern` (the report's figures, fig-*.svg) in `directory` that the latest write
    did not produce: a model that no longer has a plot must not leave an old one beside its report."""
    kept = set(keep)
    for path in Path(directory).glob(pattern):
        if path.name not in kept and path.is_file():
            with contextlib.suppress(OSError):
                path.unlink()

"""Which files a spec may read, and reading one safely.

Specs can arrive in untrusted pull requests and be validated in CI, where a
checkout keeps credentials in hidden files (.git/config, .env, ~/.netrc...)
and error messages end up in public logs. So a file a spec names must:
lie inside the spec's folder (unless the user passes --allow-outside-data),
have one of the extensions the key reads (data: .csv .tsv .parquet .dta;
start_from: .json; case-insensitive, checked on the name written and on the
file a symlink leads to), have no hidden component (a name starting with '.')
in its path below the spec's folder, and be a regular file (a FIFO would hang,
a device never ends). Paths in messages are relative to the working directory.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from mlmrun.data.shown import excerpt, shown_path
from mlmrun.errors import DataError

DATA_SUFFIXES = (".csv", ".tsv", ".parquet", ".dta")
"""Extensions `data.path` may have (any case)."""


def spec_relative_path(base_dir: Path, name: str, key: str, allow_outside: bool = False) -> Path:
    """Resolve a path a spec names, relative to the spec's folder, confined to that folder.

    By default a spec may only name paths inside its own folder: no absolute
    paths and no `..` (or symlink) escaping it; `allow_outside` lifts this for
    specs the user trusts.
    """
    return _confined(base_dir, name, key, allow_outside)[1]


def _confined(base_dir: Path, name: str, key: str, allow_outside: bool) -> tuple[Path, Path]:
    """(the spec's folder, the path `name` names) both resolved; see spec_relative_path."""
    try:
        base = Path(base_dir).resolve()
        path = (base / name).resolve()
    except (OSError, RuntimeError, ValueError) as exc:
        raise DataError(f"{key}: cannot use the path {excerpt(name, 80)}: {_reason(exc)}; write a plain relative "
                        "path such as data/NAME.csv") from None
    if not allow_outside and (Path(name).is_absolute() or not path.is_relative_to(base)):
        raise DataError(
            f"{key}: {excerpt(name, 80)} is outside the spec's folder {shown_path(base)}; put the file inside it "
            "(e.g. data/), or, for a spec you trust, pass --allow-outside-data"
        )
    return base, path


def spec_file(base_dir: Path, name: str, key: str, suffixes: tuple[str, ...], allow_outside: bool = False) -> Path:
    """A file a spec names: confined (see spec_relative_path), not hidden, with one of `suffixes`."""
    base, path = _confined(base_dir, name, key, allow_outside)
    below = path.relative_to(base).parts if path.is_relative_to(base) else (path.name,)
    hidden = [p for p in (*Path(name).parts, *below) if p.startswith(".") and p not in (".", "..")]
    if hidden:
        raise DataError(f"{key}: {excerpt(name, 80)} is or lies in a hidden file or folder ({excerpt(hidden[0])}); "
                        "mlmrun does not read hidden files (they often hold credentials); move the file to a "
                        "visible folder such as data/")
    for candidate, verb in ((Path(name), "has"), (path, "leads to a file with")):
        if candidate.suffix.lower() not in suffixes:
            found = f"the extension {excerpt(candidate.suffix)}" if candidate.suffix else "no extension"
            raise DataError(f"{key}: {excerpt(name, 80)} {verb} {found}; mlmrun reads only "
                            f"{', '.join(suffixes)} files here (any case); rename or convert the file")
    return path


def read_regular_file(path: Path, key: str, what: str = "data file") -> bytes:
    """The bytes of `path`, refusing anything but a non-empty regular file, with a message naming `key`."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise DataError(f"{key}: {what} not found: {shown_path(path)} (no file there; paths are relative to the spec "
                        "file's folder)") from None
    except OSError as exc:
        raise DataError(f"{key}: cannot read {shown_path(path)}: {_reason(exc)}; check the name and that the file "
                        "can be read") from None
    _check_regular(info, path, key)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        raise DataError(f"{key}: cannot read {shown_path(path)}: {_reason(exc)}; check the name and that the file "
                        "can be read") from None
    try:
        _check_regular(os.fstat(fd), path, key)  # the file may have been swapped since os.stat
        with os.fdopen(fd, "rb", closefd=False) as fh:
            return fh.read()
    except OSError as exc:
        raise DataError(f"{key}: cannot read {shown_path(path)}: {_reason(exc)}; check the name and that the file "
                        "can be read") from None
    finally:
        os.close(fd)


def _check_regular(info: os.stat_result, path: Path, key: str) -> None:
    if stat.S_ISDIR(info.st_mode):
        raise DataError(f"{key}: {shown_path(path)} is a folder, not a file; name a file inside it")
    if not stat.S_ISREG(info.st_mode):
        raise DataError(f"{key}: {shown_path(path)} is not a regular file (a pipe, device or socket); name a file")
    if info.st_size == 0:
        raise DataError(f"{key}: {shown_path(path)} is empty (0 bytes); name a file with a header row and data rows")


def _reason(exc: BaseException) -> str:
    """The cause of an OS error in words, without the path (which the caller shows its own way)."""
    if isinstance(exc, OSError):
        if exc.errno == errno.ENOENT:
            return "no file at this path (paths are relative to the spec file's folder)"
        if exc.errno == errno.ENAMETOOLONG:
            return "the path is too long for the file system (a file name may have at most 255 characters)"
        if exc.errno in (errno.EACCES, errno.EPERM):
            return "permission denied (make the file readable)"
        if exc.errno == errno.ELOOP:
            return "too many levels of symbolic links"
        if exc.strerror:
            return exc.strerror.lower()
    if isinstance(exc, RuntimeError):
        return "a symbolic link loop"
    if isinstance(exc, ValueError):
        return "it contains a character a path cannot hold (e.g. a NUL byte)"
    return type(exc).__name__

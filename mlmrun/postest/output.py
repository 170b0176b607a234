"""Prediction tables written as CSV or Parquet, atomically (a complete new file or the old one untouched)."""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
from pathlib import Path

import pandas as pd

from mlmrun.display import display_path
from mlmrun.io import OutputError

TABLE_SUFFIXES = (".csv", ".parquet")


def table_path(value: str, flag: str) -> Path:
    """A --out / --by-unit path, refused unless it ends in .csv or .parquet or is an existing folder."""
    path = Path(value)
    if path.suffix.lower() not in TABLE_SUFFIXES:
        raise OutputError(f"{flag}: {display_path(path)} must end in .csv or .parquet (the format is taken from the "
                          f"name); write e.g. {flag} predictions.csv")
    if path.is_dir():
        raise OutputError(f"{flag}: {display_path(path)} is a folder; give a file name such as predictions.csv")
    if not path.parent.is_dir():
        raise OutputError(f"{flag}: the folder of {display_path(path)} does not exist; create it or choose another")
    return path


def table_bytes(frame: pd.DataFrame, path: Path) -> bytes:
    """The table in the format of `path`'s extension (CSV: UTF-8, full precision, empty cells for missing)."""
    if path.suffix.lower() == ".parquet":
        buffer = io.BytesIO()
        try:
            frame.to_parquet(buffer, index=False)
        except ImportError:
            raise OutputError(f"{display_path(path)}: writing Parquet needs the pyarrow package, which is not "
                              "installed; install it (pip install 'pyarrow>=14') or write .csv") from None
        return buffer.getvalue()
    return frame.to_csv(index=False, lineterminator="\n").encode("utf-8")


def write_tables(files: dict[Path, bytes]) -> None:
    """Write every file to a temporary next to it, then rename all into place; on failure none is replaced."""
    staged: list[tuple[str, Path]] = []
    try:
        for path, data in files.items():
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
            staged.append((tmp, path))
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            mask = os.umask(0)
            os.umask(mask)
            os.chmod(tmp, 0o666 & ~mask)
        for tmp, path in staged:
            os.replace(tmp, path)
    except OSError as exc:
        for tmp, _ in staged:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        raise OutputError(f"cannot write {display_path(staged[-1][1]) if staged else 'the output'} "
                          f"({exc.strerror or exc}); choose another file or free some space") from None
    except BaseException:
        for tmp, _ in staged:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        raise

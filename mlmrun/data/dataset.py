"""A partitioned Parquet dataset: a folder of .parquet files (optionally hive folders `key=value/`).

`data.path` may name such a folder. A single-process fit reads every file and
concatenates them (in sorted path order); a distributed fit
(mlmrun/distributed) gives each worker some of the files. The folder obeys
the rules of files.py: inside the spec's folder (unless --allow-outside-data),
no hidden component; every file in it must resolve inside the folder too (a
symlink out of it is refused), and names starting with '.' or '_' (writers'
`_SUCCESS`, `_metadata`, `.crc` files) are skipped, never read.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from mlmrun.data.files import spec_relative_path
from mlmrun.data.shown import excerpt, shown_path
from mlmrun.errors import DataError


@dataclass(frozen=True)
class DatasetFile:
    """One file of a dataset: its path and the hive partition values of the folders above it."""

    path: Path
    hive: tuple[tuple[str, str], ...]


def is_dataset(base_dir: Path, name: str, allow_outside: bool = False) -> bool:
    """True when `data.path` names a folder (a partitioned dataset) rather than a file: a folder without an
    extension or named .parquet (as Spark writes them); a folder named like a CSV, TSV or Stata file is a
    mistake that files.py reports as such."""
    suffix = Path(name).suffix.lower()
    return suffix in ("", ".parquet") and spec_relative_path(base_dir, name, "data.path", allow_outside).is_dir()


def dataset_files(base_dir: Path, name: str, key: str = "data.path", allow_outside: bool = False) -> list[DatasetFile]:
    """The Parquet files of the dataset folder `name` (relative to the spec's folder), sorted by path."""
    root = spec_relative_path(base_dir, name, key, allow_outside)
    base = Path(base_dir).resolve()
    below = root.relative_to(base).parts if root.is_relative_to(base) else ()
    hidden = [p for p in (*Path(name).parts, *below) if p.startswith(".") and p not in (".", "..")]
    if hidden:
        raise DataError(f"{key}: {excerpt(name, 80)} is or lies in a hidden folder ({excerpt(hidden[0])}); mlmrun "
                        "does not read hidden files (they often hold credentials); move the dataset to a visible folder")
    out: list[DatasetFile] = []
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).parts
        if any(p.startswith((".", "_")) for p in rel) or path.is_dir() or path.suffix.lower() != ".parquet":
            continue
        resolved = spec_relative_path(base_dir, str(Path(name, *rel)), key, allow_outside)  # a link out is refused
        hive = tuple(tuple(p.split("=", 1)) for p in rel[:-1] if "=" in p)
        out.append(DatasetFile(resolved, hive))  # type: ignore[arg-type]
    if not out:
        raise DataError(f"{key}: the folder {shown_path(root)} holds no .parquet files; write the partitions there "
                        "(e.g. part-0.parquet, part-1.parquet, or hive folders bucket=0/)")
    return out


def _hive_value(text: str) -> object:
    """A hive folder's value: a number when it reads as one, else the text."""
    number = pd.to_numeric(pd.Series([text]), errors="coerce").iloc[0]
    if pd.isna(number):
        return text
    return int(number) if float(number).is_integer() else float(number)


def read_file(item: DatasetFile, key: str = "data.path") -> tuple[pd.DataFrame, str]:
    """One file of a dataset with its hive columns added (where the file lacks them), and its digest."""
    from mlmrun.data.load import read_table

    frame, digest = read_table(item.path, key)
    for column, value in item.hive:
        if column not in frame.columns:
            frame[column] = _hive_value(value)
    return frame, digest


def read_dataset(files: list[DatasetFile], key: str = "data.path") -> tuple[pd.DataFrame, str]:
    """Every file of a dataset concatenated in order, and one SHA-256 over the files' digests in that order."""
    frames, digests = [], []
    for item in files:
        frame, digest = read_file(item, key)
        frames.append(frame)
        digests.append(digest)
    return pd.concat(frames, ignore_index=True), combined_digest(digests)


def combined_digest(digests: list[str]) -> str:
    """SHA-256 of the files' digests in path order: the dataset's digest, the same whoever reads which files."""
    return hashlib.sha256("\n".join(digests).encode()).hexdigest()

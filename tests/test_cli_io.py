"""Atomic output (mlmrun.io): complete new files or untouched old ones, never temporaries left behind."""

from __future__ import annotations

import os
import stat

import pytest

from mlmrun import io


def test_writes_every_file_with_normal_permissions(tmp_path):
    paths = io.write_atomic(tmp_path / "new" / "dir", {"a.json": "{}\n", "b.md": "# b\n"})
    assert [p.name for p in paths] == ["a.json", "b.md"]
    assert paths[0].read_text() == "{}\n"
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(paths[0].stat().st_mode) == 0o666 & ~mask
    assert sorted(p.name for p in (tmp_path / "new" / "dir").iterdir()) == ["a.json", "b.md"]


def test_failure_while_staging_removes_temporaries_and_keeps_old_files(tmp_path, monkeypatch):
    (tmp_path / "a.json").write_text("old")
    real = os.fdopen
    opened = []

    def failing_fdopen(fd, *args, **kwargs):
        opened.append(fd)
        if len(opened) == 2:
            os.close(fd)
            raise OSError("disk full")
        return real(fd, *args, **kwargs)

    monkeypatch.setattr(os, "fdopen", failing_fdopen)
    with pytest.raises(OSError, match="disk full"):
        io.write_atomic(tmp_path, {"a.json": "new", "b.md": "new"})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json"]
    assert (tmp_path / "a.json").read_text() == "old"


def test_overwrites_previous_results(tmp_path):
    (tmp_path / "a.json").write_text("old")
    io.write_atomic(tmp_path, {"a.json": "new"})
    assert (tmp_path / "a.json").read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]

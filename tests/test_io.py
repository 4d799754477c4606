"""zoo._io: atomic writes (whole file or nothing, ordinary file mode) and sha256."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from zoo._io import atomic_write, atomic_write_json, atomic_write_text, sha256_file


def test_atomic_write_gives_the_mode_of_an_ordinary_write(tmp_path: Path) -> None:
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    written = atomic_write_text(tmp_path / "atomic.txt", "x")
    assert os.stat(written).st_mode & 0o777 == os.stat(plain).st_mode & 0o777


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    path = atomic_write_json(tmp_path / "a.json", {"v": 1})

    def fail(tmp: Path) -> None:
        tmp.write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(path, fail)
    assert path.read_text() == atomic_write_json(tmp_path / "b.json", {"v": 1}).read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "b.json"]


def test_sha256_file(tmp_path: Path) -> None:
    data = os.urandom(3_000_000)
    (tmp_path / "f").write_bytes(data)
    assert sha256_file(tmp_path / "f") == hashlib.sha256(data).hexdigest()

"""atomic_path / atomic_folder: all or nothing, and what they leave has the mode a plain write gives."""

from __future__ import annotations

import os
import stat

import pytest

from svgan.data.io import atomic_folder, atomic_path


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def umask_022():
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def test_a_file_written_atomically_is_readable_by_others_as_a_plain_write_is(tmp_path, umask_022):
    with open(tmp_path / "plain.yaml", "w") as f:
        f.write("a: 1\n")
    with atomic_path(tmp_path / "atomic.yaml") as tmp, open(tmp, "w") as f:
        f.write("a: 1\n")
    # An installed package's files (a shipped model's config) must be readable by every user.
    assert _mode(tmp_path / "atomic.yaml") == _mode(tmp_path / "plain.yaml") == 0o644


def test_a_folder_written_atomically_has_the_mode_of_a_plain_mkdir(tmp_path, umask_022):
    os.mkdir(tmp_path / "plain")
    with atomic_folder(tmp_path / "atomic") as tmp:
        with open(os.path.join(tmp, "x.txt"), "w") as f:
            f.write("x")
    assert _mode(tmp_path / "atomic") == _mode(tmp_path / "plain") == 0o755


def test_a_failed_write_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError):
        with atomic_path(tmp_path / "out.json") as tmp, open(tmp, "w") as f:
            f.write("{")
            raise RuntimeError("the writer failed")
    assert os.listdir(tmp_path) == []

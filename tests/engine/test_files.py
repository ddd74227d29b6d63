"""engine.files: atomic writes keep what a plain write would keep."""

from __future__ import annotations

import os
import stat

import pytest

from engine.files import atomic_write_bytes


@pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")
def test_an_atomic_write_keeps_the_files_permissions_and_gives_a_new_file_the_umasks(tmp_path):
    shared = tmp_path / "shared.json"
    shared.write_text("old")
    shared.chmod(0o664)
    atomic_write_bytes(shared, b"new")
    assert shared.read_bytes() == b"new" and stat.S_IMODE(shared.stat().st_mode) == 0o664
    mask = os.umask(0o022)
    try:
        atomic_write_bytes(tmp_path / "fresh.json", b"x")
    finally:
        os.umask(mask)
    # The umask read at import applies (a new file is not left 0600 like mkstemp's).
    from engine.files import _UMASK

    assert stat.S_IMODE((tmp_path / "fresh.json").stat().st_mode) == 0o666 & ~_UMASK


@pytest.mark.skipif(os.name != "posix", reason="symlinks")
def test_an_atomic_write_through_a_symlink_writes_its_target_and_keeps_the_link(tmp_path):
    target = tmp_path / "data" / "target.json"
    target.parent.mkdir()
    target.write_text("old")
    link = tmp_path / "link.json"
    link.symlink_to(target)
    atomic_write_bytes(link, b"new")
    assert link.is_symlink() and target.read_bytes() == b"new"
    assert not list(tmp_path.glob(".link.json.*")) and not list(target.parent.glob(".target.json.*"))


def test_a_read_only_file_is_refused_and_left_as_it_was(tmp_path):
    ro = tmp_path / "ro.json"
    ro.write_text("old")
    ro.chmod(0o444)
    with pytest.raises(PermissionError) as e:
        atomic_write_bytes(ro, b"new")
    assert "read-only (r--r--r--)" in str(e.value) and e.value.filename == str(ro)
    assert ro.read_text() == "old" and not list(tmp_path.glob(".ro.json.*"))

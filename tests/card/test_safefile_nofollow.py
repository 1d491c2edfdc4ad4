"""card/safefile.write_file_atomic(follow_symlinks=False): a symlink at the path is refused and
left as it is (tools/cli/face.py writes the holder's 券面 through it)."""
from __future__ import annotations

import os
import stat

import pytest

from mynaemu.card.safefile import UnsafeFile, write_file_atomic


def test_a_symlink_is_refused_and_nothing_changes(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"keep me")
    link = tmp_path / "out.png"
    link.symlink_to(victim)
    with pytest.raises(UnsafeFile, match="symbolic link, not a regular file"):
        write_file_atomic(link, b"PNG", follow_symlinks=False)
    assert victim.read_bytes() == b"keep me" and os.readlink(link) == str(victim)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png", "victim.txt"]   # no temp left


@pytest.mark.parametrize("existing", [None, b"an earlier run"])
def test_a_regular_file_or_a_new_path_is_written_0600(tmp_path, existing):
    path = tmp_path / "front.png"
    if existing is not None:
        path.write_bytes(existing)
        path.chmod(0o644)
    write_file_atomic(path, b"PNG data", follow_symlinks=False)
    assert path.read_bytes() == b"PNG data" and stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_a_symlinked_folder_is_still_written_into(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "alias").symlink_to(real)
    write_file_atomic(tmp_path / "alias" / "back.png", b"PNG", follow_symlinks=False)
    assert (real / "back.png").read_bytes() == b"PNG"


def test_a_fifo_is_refused(tmp_path):
    fifo = tmp_path / "name.png"
    os.mkfifo(fifo)
    with pytest.raises(UnsafeFile, match="a FIFO"):
        write_file_atomic(fifo, b"PNG", follow_symlinks=False)
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)

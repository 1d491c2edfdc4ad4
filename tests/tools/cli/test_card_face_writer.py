"""`card face` writes through card/safefile.py's atomic writer with symlinks refused: a symlink
planted after face's own check (a race) is still refused at the write, the victim untouched."""
from __future__ import annotations

import os

import pytest

from mynaemu.card.safefile import UnsafeFile
from mynaemu.issuance.personas import build_persona
from mynaemu.tools.cli import face


@pytest.fixture(scope="module")
def image():
    return build_persona("adult", seed=4)[0]


def test_a_symlink_planted_after_the_check_is_refused(image, tmp_path, monkeypatch):
    out = tmp_path / "face"
    out.mkdir(mode=0o700)
    victim = tmp_path / "victim"
    victim.write_bytes(b"not yours")
    (out / "name.png").symlink_to(victim)
    real_lstat, seen = os.lstat, []

    def lstat_before_the_plant(path, *args, **kwargs):
        # face's own check (the first look at name.png) sees nothing there yet; the writer's
        # later looks see the symlink
        if os.fspath(path) == os.fspath(out / "name.png") and not seen:
            seen.append(path)
            raise FileNotFoundError(path)
        return real_lstat(path, *args, **kwargs)

    monkeypatch.setattr(face.os, "lstat", lstat_before_the_plant)
    with pytest.raises(UnsafeFile, match="not a regular file"):
        face.write_face(image, out)
    monkeypatch.undo()
    assert seen                                           # face's check did run first
    assert victim.read_bytes() == b"not yours" and (out / "name.png").is_symlink()


def test_an_earlier_run_is_replaced_only_with_force(image, tmp_path):
    out = tmp_path / "face"
    first = face.write_face(image, out)
    with pytest.raises(face.FaceError, match="exists"):
        face.write_face(image, out)
    again = face.write_face(image, out, force=True)
    assert first == again and all(p.stat().st_mode & 0o777 == 0o600 for p in again.values())
    assert sorted(p.name for p in out.iterdir()) == sorted(first)        # no temp files left behind

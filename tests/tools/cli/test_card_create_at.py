"""`mynaemu card create --seed N --at T`: the same file every time, whatever today is (a tester's
fixture can be checked in); --at outside the TEST CAs' span is one line and exit 2."""
from __future__ import annotations

import json
import subprocess
import sys

from tests.support import REPO
from tests.support.cli import run_cli


def _create(path, *extra):
    return subprocess.run([sys.executable, "-m", "mynaemu", "card", "create", "--persona", "adult", "--seed", "7",
                           "-o", str(path), "--json", *extra], cwd=REPO, capture_output=True, text=True, timeout=300,
                          stdin=subprocess.DEVNULL)


def test_seed_and_at_give_the_same_bytes_in_two_processes(tmp_path):
    first, second = _create(tmp_path / "a.json", "--at", "2026-05-01"), _create(tmp_path / "b.json", "--at", "2026-05-01")
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()
    later = run_cli("card", "create", "--persona", "adult", "--seed", "7", "--at", "2028-05-01", "-o",
                    tmp_path / "c.json", "--json")
    assert json.loads(first.stdout)["card_expires"] != json.loads(later.stdout)["card_expires"]


def test_at_outside_the_test_cas_is_one_line(tmp_path):
    result = run_cli("card", "create", "--persona", "adult", "--at", "1990-05-01", "-o", tmp_path / "x.json", code=2)
    assert result.stderr.count("\n") == 1 and "--at" in result.stderr and "outside the CA" in result.stderr
    assert not (tmp_path / "x.json").exists()

"""Trust boundaries, item 5 (first half): the store and everything next to it is private.

Found: the store was 0644 in a 0755 home while it holds live holders' private keys, the 個人番号
history, the numbering secret (and now the store's CA keys); kiosk PDFs with 個人番号 were 0644.
Must: 0600 files and 0700 directories whatever the umask (issuance/private_files.py).
"""
from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from mynaemu.issuance.store import DB_NAME, Store
from mynaemu.tools.cli import main

PERSON = ["--name", "番号\u3000太郎", "--birth", "1980-04-02", "--sex", "1", "--address", "東京都清瀬市試験町１丁目"]
KIOSK_AT = "2026-05-11T12:00:00+09:00"


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def _cli(home: Path, *args):
    result = CliRunner().invoke(main, list(args), env={"MYNAEMU_HOME": str(home), "MYNAEMU_OPERATOR": "op"},
                                catch_exceptions=False)
    assert result.exit_code == 0, (args, result.output)
    return result


@pytest.fixture
def umask(request):
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


@pytest.mark.parametrize("umask", [0o000, 0o022], indirect=True)
def test_home_store_keys_card_and_pdf_are_private_whatever_the_umask(tmp_path, umask, issue_staff):
    home = tmp_path / "office" / "home"          # the home and a missing parent, both made here
    issue_staff(home, staff_id="op")             # every issue command authenticates (issue 13)
    app_id = json.loads(_cli(home, "issue", "apply", *PERSON, "--at", "2026-05-01", "--json").stdout)["id"]
    _cli(home, "issue", "generate", app_id, "--at", "2026-05-02T10:00")
    card = home / "cards" / "taro.json"          # a card image the back office writes into the home
    card.parent.mkdir(mode=0o700)
    _cli(home, "issue", "deliver", app_id, "--auth-pin", "1234", "--sign-pin", "ABC123", "--kenhojo-pin", "1234",
         "-o", str(card), "--at", "2026-05-10T10:00")
    _cli(home, "kiosk", "enrol", "--card", str(card), "--pin", "4321", "--at", KIOSK_AT)
    pdf = tmp_path / "juminhyo-with-number.pdf"  # outside the home: the PDF itself is private
    _cli(home, "kiosk", "issue", "--card", str(card), "--pin", "1234", "--document", "juminhyo",
         "--with-number", "-o", str(pdf), "--at", KIOSK_AT)
    assert _mode(pdf) == 0o600
    assert _mode(home) == 0o700 and _mode(home.parent) == 0o700
    with Store.open(home):                       # an open store has its -wal and -shm files
        seen = {p.name for p in home.rglob("*")}
        assert {DB_NAME, DB_NAME + "-wal", DB_NAME + "-shm", "kiosk"} <= seen
        assert any(name.startswith("municipality-") and name.endswith(".key.pem") for name in seen)
        assert any(name.startswith("kiosk-") and name.endswith(".key") for name in seen)
        for path in [home, *home.rglob("*")]:
            if path.is_dir():
                assert _mode(path) == 0o700, path
            else:
                assert _mode(path) == 0o600, (path, oct(_mode(path)))


@pytest.mark.parametrize("umask", [0o000], indirect=True)
def test_sqlite_journal_files_made_later_are_private(tmp_path, umask):
    home = tmp_path / "home"
    with Store.open(home):
        pass
    # the last connection removed -wal/-shm; a new connection (another process) makes them again
    for suffix in ("-wal", "-shm"):
        assert not (home / (DB_NAME + suffix)).exists()
    with Store.open(home) as store:
        store.audit_rows()
        for suffix in ("", "-wal", "-shm"):
            assert _mode(home / (DB_NAME + suffix)) == 0o600


def test_an_older_wider_store_and_kiosk_folder_are_tightened_when_opened(tmp_path):
    home = tmp_path / "home"
    with Store.open(home):
        pass
    kiosk = home / "kiosk"
    kiosk.mkdir()
    os.chmod(home / DB_NAME, 0o644)              # as an older build left them
    os.chmod(kiosk, 0o755)
    with Store.open(home):
        assert _mode(home / DB_NAME) == 0o600
        assert _mode(home / (DB_NAME + "-wal")) == 0o600
    from mynaemu.issuance.kiosk.keyfiles import load_or_create_kiosk_key

    load_or_create_kiosk_key(home)
    assert _mode(kiosk) == 0o700
    assert all(_mode(p) == 0o600 for p in kiosk.iterdir())


def test_an_existing_home_the_user_named_is_not_chmod_ed(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o755)
    with Store.open(shared):
        pass
    assert _mode(shared) == 0o755                # not ours to change (it could be /tmp)
    assert _mode(shared / DB_NAME) == 0o600      # the store inside it is private all the same


@pytest.mark.parametrize("umask", [0o000], indirect=True)
def test_the_pki_cache_folder_and_file_are_private(tmp_path, umask, monkeypatch):
    from mynaemu.issuance.pki import ca as ca_mod

    pki = ca_mod.default_test_pki()
    monkeypatch.setattr(ca_mod, "build_default_test_pki", lambda: pki)  # no rebuild: modes only
    cache = tmp_path / "cache" / "mynaemu" / "test-pki.json"
    ca_mod.load_or_build_test_pki(cache)
    assert _mode(cache.parent) == 0o700 and _mode(cache) == 0o600


def test_keys_made_on_first_use_by_racing_processes_are_one_and_private(tmp_path):
    """Four processes create the municipality's signer and the kiosk key at once: they all get
    the same keys (the first writer's), whole, 0600, with no temp file left behind."""
    import subprocess
    import sys

    home = tmp_path / "home"
    code = ("import sys; from mynaemu.issuance.kiosk.keyfiles import load_or_create_signer; "
            "from mynaemu.issuance.kiosk.keyfiles import load_or_create_kiosk_key; "
            "print(load_or_create_signer(sys.argv[1], '13221').key_id, load_or_create_kiosk_key(sys.argv[1]).hex())")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(home)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(4)]
    answers = set()
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        answers.add(out.strip())
    assert len(answers) == 1
    kiosk = home / "kiosk"
    made = [p for p in kiosk.rglob("*")]
    assert not [p for p in made if p.name.endswith(".tmp")]
    for path in [home, kiosk, *made]:
        assert _mode(path) == (0o700 if path.is_dir() else 0o600), path

"""`mynaemu demo` (the README's first command) and `mynaemu kiosk issue/serve/enrol` over a real
issuing store: exit codes per refusal class, the PDF only after success, services stopped."""
from __future__ import annotations

import datetime as _dt
import itertools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from mynaemu.card.image import CardImage
from mynaemu.issuance.kiosk import documents, lgpki
from mynaemu.issuance.pki.keys import generate_rsa_key
from mynaemu.issuance.personas import DEFAULT_PINS, synthetic_identity
from mynaemu.issuance.policy import JST
from mynaemu.issuance.store import Store
from mynaemu.issuance.lifecycle.workflow import Workflow
from mynaemu.tools.cli import main

KIOSK_AT = "2026-03-02T12:00:00+09:00"
T = _dt.datetime(2026, 3, 2, 12, 0, tzinfo=JST)


def _run_cli(args, *, cwd, env=None, timeout=180):
    return subprocess.run([sys.executable, "-m", "mynaemu.tools.cli", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, **(env or {})})


def test_demo_runs_with_no_arguments_and_writes_a_verified_pdf(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "MYNAEMU_HOME"}
    done = subprocess.run([sys.executable, "-m", "mynaemu.tools.cli", "demo"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=180, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    pdf = tmp_path / "mynaemu-demo-juminhyo.pdf"
    roots = list(tmp_path.glob("mynaemu-demo-juminhyo.lgpki-root.pem"))
    assert pdf.exists() and len(roots) == 1
    assert documents.verify_pdf(pdf.read_bytes(), [lgpki.load_trust_root(roots[0])])
    out = done.stdout
    for needle in ("申請", "交付", "SELECT 公的個人認証AP", "VERIFY 0018", "80 2A 00 80", "answered by OCSP",
                   "municipality 13221", "refused [cert-hold]", "tries left"):
        assert needle in out, needle
    # the PIN is never shown: not where it is entered, not where it is verified
    assert all("1234" not in line for line in out.splitlines() if "PIN" in line or "VERIFY" in line)
    # the temporary home is gone
    homes = [line.rstrip(")").split()[-1] for line in out.splitlines() if "TEST store in" in line]
    assert len(homes) == 1 and homes[0].startswith("/") and not Path(homes[0]).exists()


def test_demo_moves_its_clock_into_the_kiosk_hours():
    from mynaemu.tools.cli.demo import _demo_instant

    noon = _dt.datetime(2026, 3, 2, 12, 0, tzinfo=JST)
    assert _demo_instant(noon) == (noon, False)
    for hour, minute in ((2, 0), (6, 29), (22, 55), (23, 0)):
        at, moved = _demo_instant(noon.replace(hour=hour, minute=minute))
        assert moved and at == noon.replace(hour=10)


@pytest.mark.pcsc
def test_demo_through_pcscd_and_vpcd(tmp_path):
    from tests.support.pcsc_env import skip_unless_installed

    skip_unless_installed(opensc=False)
    done = _run_cli(["demo", "--pcsc", "-o", str(tmp_path / "pcsc.pdf")], cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Virtual PCD" in done.stdout and (tmp_path / "pcsc.pdf").exists()


# -- kiosk issue over an issuing store ----------------------------------------------------------

@pytest.fixture(scope="module")
def home(tmp_path_factory):
    """A store with two delivered cards (an adult, a 12-year-old) issued the day before T."""
    folder = tmp_path_factory.mktemp("home")
    pool = [generate_rsa_key(2048) for _ in range(9)]
    cycle = itertools.cycle(pool)
    cards = {}
    with Store.open(folder) as store:
        wf = Workflow(store, operator="test", terminal="test", key_factory=lambda: next(cycle))
        import random

        rng = random.Random(4)
        for label, age in (("adult", 40), ("child", 12)):
            ident = synthetic_identity(rng, age=age, on=T.date())
            app_id = wf.apply(name=ident.name, birth=ident.birth, sex=ident.sex, address=ident.address,
                              at=T - _dt.timedelta(days=8))
            wf.generate(app_id, at=T - _dt.timedelta(days=1))
            path = folder / f"{label}.json"
            pins = dict(DEFAULT_PINS) if age >= 15 else {**DEFAULT_PINS, "sign": None}
            wf.deliver(app_id, at=T - _dt.timedelta(hours=20), pins=pins, identity_check="test",
                       write=lambda img, p=path: img.save(p))
            cards[label] = (app_id, path)
    return folder, cards


def _fresh(home_dir: Path, src: Path, name: str) -> Path:
    copy = home_dir / name
    copy.write_bytes(src.read_bytes())
    return copy


def _issue(home_dir, card, out, *extra, pin="1234", document="juminhyo"):
    runner = CliRunner()
    return runner.invoke(main, ["kiosk", "issue", "--card", str(card), "--pin", pin, "--document", document,
                                "-o", str(out), "--at", KIOSK_AT, *extra],
                         env={"MYNAEMU_HOME": str(home_dir)})


def test_kiosk_issue_starts_its_own_services_and_writes_the_pdf(home, tmp_path):
    home_dir, cards = home
    card = _fresh(tmp_path, cards["adult"][1], "a.json")
    out = tmp_path / "juminhyo.pdf"
    result = _issue(home_dir, card, out, "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output.strip().splitlines()[-1])
    assert doc["status"] == "issued" and doc["tamper_checked"] is True and doc["output"] == str(out)
    assert doc["checks"][5] == {"check": "validity", "result": "good", "source": "ocsp"}
    assert out.read_bytes().startswith(b"%PDF-")
    # the text mode narrates and says where the PDF went; the under-15 card gets its PDF too
    child = _fresh(tmp_path, cards["child"][1], "c.json")
    result = _issue(home_dir, child, tmp_path / "zei.pdf", document="zei")
    assert result.exit_code == 0, result.output
    assert "started the JPKI validity service" in result.output and "issued zei" in result.output


def test_kiosk_issue_refusals_have_their_exit_codes(home, tmp_path):
    home_dir, cards = home
    card = _fresh(tmp_path, cards["adult"][1], "a.json")
    out = tmp_path / "x.pdf"
    wrong = _issue(home_dir, card, out, pin="9999")
    assert wrong.exit_code == 3 and "2 tries left" in wrong.output and not out.exists()
    assert CardImage.load(card).pin("jpki", 0x0018).remaining == 2   # saved back to the file, one try only
    early = _issue(home_dir, card, out, "--at", "2026-03-02T05:00:00+09:00")
    assert early.exit_code == 10 and "[outside-hours]" in early.output
    assert CardImage.load(card).pin("jpki", 0x0018).remaining == 2
    bad_pin = _issue(home_dir, card, out, pin="12a4")
    assert bad_pin.exit_code == 2
    number = _issue(home_dir, card, out, "--with-number", document="inkan")
    assert number.exit_code == 2
    out.write_bytes(b"keep")
    exists = _issue(home_dir, card, out)
    assert exists.exit_code == 2 and out.read_bytes() == b"keep"
    nowhere = CliRunner().invoke(main, ["kiosk", "issue", "--card", str(card), "--pin", "1234", "--document",
                                        "juminhyo", "-o", str(tmp_path / "n.pdf")],
                                 env={"MYNAEMU_HOME": str(tmp_path / "empty")})
    assert nowhere.exit_code == 14 and "no centre" in nowhere.output


def test_kiosk_issue_refuses_a_suspended_card(home, tmp_path):
    home_dir, cards = home
    app_id, src = cards["adult"]
    with Store.open(home_dir) as store:
        wf = Workflow(store, operator="test", terminal="test")
        wf.suspend(app_id, at=T - _dt.timedelta(hours=1))
    try:
        card = _fresh(tmp_path, src, "s.json")
        result = _issue(home_dir, card, tmp_path / "s.pdf", "--json")
        assert result.exit_code == 5, result.output
        assert json.loads(result.output.splitlines()[0])["reason"] == "cert-hold"
        assert CardImage.load(card).pin("jpki", 0x0018).remaining == 3
    finally:
        with Store.open(home_dir) as store:
            Workflow(store, operator="test", terminal="test").resume(app_id, at=T - _dt.timedelta(minutes=30))


def test_enrol_then_genko_and_henkan(home, tmp_path):
    home_dir, cards = home
    card = _fresh(tmp_path, cards["adult"][1], "g.json")
    enrol = CliRunner().invoke(main, ["kiosk", "enrol", "--card", str(card), "--pin-zei", "4321",
                                      "--pin-juminhyo", "8765"], env={"MYNAEMU_HOME": str(home_dir)})
    assert enrol.exit_code == 0, enrol.output
    assert {a.name for a in CardImage.load(card).applications} >= {"jpki", "jorei"}
    genko = _issue(home_dir, card, tmp_path / "g.pdf", "--method", "genko", pin="4321", document="zei")
    assert genko.exit_code == 0, genko.output
    assert "SELECT 条例利用AP" in genko.output
    wrong_doc = _issue(home_dir, card, tmp_path / "g2.pdf", "--method", "genko", pin="4321", document="inkan")
    assert wrong_doc.exit_code == 16
    henkan = _issue(home_dir, card, tmp_path / "h.pdf", "--method", "henkan")
    assert henkan.exit_code == 0, henkan.output
    assert "certificate converted to the 利用者ID" in henkan.output
    verify = CliRunner().invoke(main, ["kiosk", "verify-pdf", str(tmp_path / "h.pdf")],
                                env={"MYNAEMU_HOME": str(home_dir)})
    assert verify.exit_code == 0 and "intact" in verify.output


def test_kiosk_serve_is_used_by_kiosk_issue_and_stops_cleanly(home, tmp_path):
    home_dir, cards = home
    running = home_dir / "kiosk" / "centre.json"
    proc = subprocess.Popen([sys.executable, "-m", "mynaemu.tools.cli", "kiosk", "serve", "--at", KIOSK_AT],
                            env={**os.environ, "MYNAEMU_HOME": str(home_dir)}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not running.exists():
            assert proc.poll() is None, proc.stderr.read()
            assert time.monotonic() < deadline, "kiosk serve did not start"
            time.sleep(0.05)
        card = _fresh(tmp_path, cards["adult"][1], "r.json")
        result = _issue(home_dir, card, tmp_path / "r.pdf", document="inkan")
        assert result.exit_code == 0, result.output
        assert "using the centre running at " + json.loads(running.read_text())["url"] in result.output
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    assert proc.returncode == 0
    assert not running.exists()

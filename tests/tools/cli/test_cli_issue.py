"""`mynaemu issue …`: the scripted surface (forms, JSON, exit codes) over the default TEST PKI,
including real processes for the OCSP server and for concurrent commands on one card."""
import datetime as dt
import json
import os
import signal
import subprocess
import sys

import pytest
from cryptography import x509

from mynaemu.card.core import Card
from mynaemu.card.image import CardImage
from mynaemu.issuance.numbering import is_valid_individual_number
from mynaemu.issuance.pki.ocsp import ocsp_check
from mynaemu.issuance.pki.revocation import load_crl, status_from_crl, verify_crl
from mynaemu.issuance.store import Store
from tests.support.cli import run_issue as run

JST = dt.timezone(dt.timedelta(hours=9))
CLI = [sys.executable, "-m", "mynaemu.tools.cli", "issue"]
PERSON = ["--name", "番号\u3000太郎", "--birth", "1990-04-02", "--sex", "1", "--address", "東京都清瀬市試験町１丁目"]


def store_ca():
    """The store's own TEST CAs (issuance/store/pki.py): a store never issues under the built-in PKI."""
    from mynaemu.issuance.store.pki import store_pki

    with Store.open() as store:
        return store_pki(store)


def jrun(*args, code=0):
    return json.loads(run(*args, "--json", code=code).stdout)


def errline(result):
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    return lines[-1]


def new_card(tmp_path, *extra, name="番号\u3000太郎", birth="1990-04-02", at="2026-05-01"):
    person = ["--name", name, "--birth", birth, "--sex", "1", "--address", "東京都清瀬市試験町１丁目"]
    app_id = jrun("apply", *person, *extra, "--at", at)["id"]
    run("generate", app_id, "--at", "2026-05-02T10:00")
    return app_id


def deliver(app_id, path, *extra, code=0, at="2026-05-10T10:00"):
    return run("deliver", app_id, "--auth-pin", "1234", "--sign-pin", "ABC123", "--kenhojo-pin", "1234",
               "-o", str(path), "--at", at, *extra, code=code)


def read_auth_cert(path):
    card = Card(CardImage.load(path))
    card.power_on()
    for apdu in ("00A4040C0AD392F000260100000001", "00A4020C02000A"):
        assert card.transmit(bytes.fromhex(apdu))[-2:] == b"\x90\x00"
    response = card.transmit(bytes.fromhex("00B00000000000"))
    assert response[-2:] == b"\x90\x00"
    return x509.load_der_x509_certificate(response[:-2])


# ---------------------------------------------------------------------------------------------

def test_apply_generate_deliver_status_forms(home, tmp_path):
    app_id = jrun("apply", *PERSON, "--at", "2026-05-01")["id"]
    assert len(app_id) == 16
    gen = jrun("generate", app_id, "--at", "2026-05-02T10:00")
    assert gen["generated"][0]["id"] == app_id and gen["generated"][0]["sign_serial"]
    card_file = tmp_path / "card.json"
    deliver(app_id, card_file)
    cert = read_auth_cert(card_file)                      # the served card works (spec §3.1)
    cert.verify_directly_issued_by(store_ca().auth_ca.certificate)

    status = jrun("status", app_id, "--at", "2026-05-11")
    assert status["id"] == app_id and status["state"] == "active"
    assert status["individual_number"].startswith("********") and len(status["individual_number"]) == 12
    assert dt.date.fromisoformat(status["card_expires"]) == dt.date(2036, 4, 2)   # VAL-1
    auth = status["auth_cert"]
    assert int(auth["serial"], 16) == cert.serial_number and auth["status"] == "good"
    assert dt.datetime.fromisoformat(auth["not_after"]) == cert.not_valid_after_utc
    assert dt.datetime.fromisoformat(auth["not_before"]) == cert.not_valid_before_utc
    assert status["sign_cert"]["status"] == "good"
    revealed = jrun("status", app_id, "--reveal", "--at", "2026-05-11")["individual_number"]
    assert is_valid_individual_number(revealed) and revealed.endswith(status["individual_number"][-4:])
    # the audit names the operator (env) and terminal (default) and never the number (SEC-8)
    rows = jrun("audit", app_id)
    assert [r["operation"] for r in rows] == ["apply", "generate", "deliver", "status", "status --reveal"]
    assert {(r["operator"], r["terminal"]) for r in rows} == {("op-cli", "cli")}
    assert revealed not in json.dumps(rows, ensure_ascii=False)
    # naive --at is JST
    assert rows[0]["at"] == "2026-04-30T15:00:00+00:00"


def test_suspend_shows_in_ocsp_server_and_crl_then_resume(home, tmp_path):
    app_id = new_card(tmp_path)
    card_file = tmp_path / "card.json"
    deliver(app_id, card_file)
    cert = read_auth_cert(card_file)
    ca = store_ca().auth_ca.certificate
    jrun("suspend", app_id, "--at", "2026-06-01T09:00", "--caller-name", "番号\u3000太郎", "--caller-birth",
         "1990-04-02", "--caller-sex", "1", "--caller-address", "東京都清瀬市試験町１丁目")
    crl_file = tmp_path / "auth.crl"
    run("crl", "--ca", "auth", "-o", str(crl_file), "--at", "2026-06-01T10:00")
    crl = load_crl(crl_file.read_bytes())
    at = dt.datetime(2026, 6, 1, 10, tzinfo=JST)
    verify_crl(crl, ca, at=at)
    assert status_from_crl(crl, cert).status == "hold"

    server = subprocess.Popen([*CLI, "ocsp-serve", "--json", "--at", "2026-06-01T10:00"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=os.environ.copy())
    try:
        url = json.loads(server.stdout.readline())["url"]
        assert url.startswith("http://127.0.0.1:")                # loopback by default
        answer = ocsp_check(url, cert, ca, at=at)
        assert answer.status == "hold" and answer.reason == x509.ReasonFlags.certificate_hold
        run("resume", app_id, "--at", "2026-06-01T10:00")
        assert ocsp_check(url, cert, ca, at=at).status == "good"
    finally:
        server.send_signal(signal.SIGTERM)
        assert server.wait(20) == 0
    crl2 = jrun("crl", "--ca", "auth", "--at", "2026-06-01T11:00")
    assert crl2["entries"] == [] and crl2["number"] > crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number


def test_refusals_and_bad_input_have_clear_messages_and_exit_codes(home, tmp_path):
    app_id = new_card(tmp_path)
    deliver(app_id, tmp_path / "a.json")
    before = jrun("status", app_id, "--at", "2026-05-11")
    # a second deliver: exit 1, names the state, store unchanged
    r = deliver(app_id, tmp_path / "b.json", code=1, at="2026-05-12")
    assert "deliver refused: card" in errline(r) and "is active" in errline(r)
    assert not (tmp_path / "b.json").exists()
    # renewal outside the window: exit 1 with the VAL-7 reason
    r = run("renew", app_id, "--at", "2026-06-01", code=1)
    assert "VAL-7: renewal not yet open" in errline(r)
    # unknown and malformed ids, impossible dates, bad PINs
    assert "no application 0000000000000000" in errline(run("suspend", "0000000000000000", code=3))
    assert "check character" in errline(run("status", app_id[:-1] + ("0" if app_id[-1] != "0" else "1"), code=2))
    for bad, text in ((("apply", *PERSON[:2], "--birth", "2023-02-30", "--sex", "1", "--address", "x"),
                       "not a valid date"),
                      (("suspend", app_id, "--at", "2026-02-30T10:00"), "ISO 8601"),
                      (("suspend",), "Missing argument 'ID'")):
        r = run(*bad, code=2)
        assert r.stdout == "" and len(r.stderr.strip().splitlines()) == 1 and text in r.stderr
    other = new_card(tmp_path, name="見本\u3000一郎")
    assert "4 digits" in errline(run("deliver", other, "--auth-pin", "12", "--sign-pin", "ABC123", "--kenhojo-pin",
                                     "1234", "-o", str(tmp_path / "c.json"), code=2))
    assert jrun("status", app_id, "--at", "2026-05-11") == before


def test_proxy_without_seal_certificate(home, tmp_path):
    docs = ["--proxy", "household-member", "--proxy-reason", "homebound-with-household"]
    for doc in ("letter-of-authority", "proxy-photo-id", "principal-photo-id", "household-proof", "cannot-go-out-proof"):
        docs += ["--proxy-doc", doc]
    signing = new_card(tmp_path)
    notice = jrun("status", signing)["notice_id"]
    r = deliver(signing, tmp_path / "s.json", *docs, "--notice", notice, code=1)
    assert "FLOW-PROXY-6" in errline(r)
    deliver(signing, tmp_path / "s.json", *docs, "--notice", notice, "--seal-cert-issued", "2026-04-01")
    auth_only = new_card(tmp_path, "--decline-sign-cert", name="見本\u3000花子")
    notice = jrun("status", auth_only)["notice_id"]
    r = deliver(auth_only, tmp_path / "a.json", *docs, "--notice", notice)       # FLOW-PROXY-5
    assert "--sign-pin was not used" in r.stderr


def test_generate_batch_and_move_with_the_card(home, tmp_path):
    ids = [jrun("apply", "--name", f"架空\u3000{n}", "--birth", "1985-08-08", "--sex", "2", "--address", "東京都",
                "--at", "2026-05-01")["id"] for n in ("桜", "陽菜")]
    result = run("generate", "--at", "2026-05-02", "--json")
    assert sorted(g["id"] for g in json.loads(result.stdout)["generated"]) == sorted(ids)
    assert "generating" in result.stderr                                     # the progress bar
    assert json.loads(run("generate", "--at", "2026-05-03", "--json").stdout)["generated"] == []
    card_file = tmp_path / "m.json"
    deliver(ids[0], card_file)
    moved = jrun("move", ids[0], "--address", "東京都清瀬市見本町", "--card", str(card_file), "--at", "2026-07-01")
    assert moved["card_written"] and moved["sign_serial"] != moved["revoked_sign_serial"]
    status = jrun("status", ids[0], "--at", "2026-07-02")
    assert status["sign_cert"]["serial"] == moved["sign_serial"]
    assert status["sign_cert"]["not_after"] == status["auth_cert"]["not_after"]          # MOV-1, VAL-6
    assert [c["status"] for c in status["certificates"] if c["kind"] == "sign"] == ["revoked", "good"]
    assert read_auth_cert(card_file).serial_number == int(status["auth_cert"]["serial"], 16)  # auth kept


def test_pipeline_persona_command(home, tmp_path):
    out = tmp_path / "p.json"
    doc = jrun("persona", "suspended", "-o", str(out), "--at", "2026-11-01T12:00")
    assert doc["state"] == "suspended" and doc["auth_cert"]["status"] == "hold"
    assert CardImage.load(out).meta["persona"] == "suspended"
    assert "unknown persona" in run("persona", "nobody", "-o", str(tmp_path / "x.json"), code=2).output


def _spawn(*args):
    return subprocess.Popen([*CLI, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=os.environ.copy())


def test_concurrent_suspend_and_renew_from_two_processes(home, tmp_path):
    # A minor's 5-year card (VAL-2) issued 2025-01-02 expires 2029-01-03: 2028-11-01 is in the window
    ids = []
    for n, name in enumerate(("模擬\u3000一郎", "模擬\u3000二郎", "模擬\u3000三郎")):
        app_id = jrun("apply", "--name", name, "--birth", "2011-01-03", "--sex", "1", "--address", "東京都",
                      "--at", "2025-01-01T09:00")["id"]
        run("generate", app_id, "--at", "2025-01-02T10:00")
        deliver(app_id, tmp_path / f"c{n}.json", at="2025-01-05T10:00")
        ids.append(app_id)
    for app_id in ids:
        procs = [_spawn("suspend", app_id, "--at", "2028-11-01T10:00", "--allow-future", "--json"),
                 _spawn("renew", app_id, "--at", "2028-11-01T10:00", "--allow-future", "--json")]
        outcomes = []
        for proc in procs:
            out, err = proc.communicate(timeout=60)
            assert proc.returncode in (0, 1), err
            if proc.returncode == 1:
                assert len(err.strip().splitlines()) == 1 and "refused" in err        # one clear line
            outcomes.append((proc.returncode, err))
        with Store.open(home) as store:
            card = store.card(app_id)
            certs = store.certificates_of(app_id)
            renewal = store.conn.execute("SELECT id FROM applications WHERE replaces = ?", (app_id,)).fetchall()
            assert store.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        # Either order is consistent: renew first leaves the card active, so the suspension still
        # goes through; suspend first makes the renewal wait for the release (FLOW-SUSP-3).
        (suspend_rc, _), (renew_rc, renew_err) = outcomes
        assert suspend_rc == 0 and card["state"] == "suspended"
        assert all(c["status"] == "hold" for c in certs)                           # STATE-3(3)
        assert len(renewal) == (1 if renew_rc == 0 else 0)
        if renew_rc == 1:
            assert "is suspended" in renew_err


# ---------------------------------------------------------------------------------------------
# the whole chain over PC/SC with unmodified OpenSC (tests/support/pcsc_env.py harness)
# ---------------------------------------------------------------------------------------------

@pytest.mark.pcsc
def test_issued_card_works_with_opensc_then_hold_and_release(home, tmp_path, request):
    from tests.support import pcsc_env

    pcsc_env.skip_unless_installed(opensc=True)
    serve = request.getfixturevalue("card_server")
    app_id = new_card(tmp_path)
    card_file = tmp_path / "served.json"
    deliver(app_id, card_file)
    serve(card_file)
    pem = pcsc_env.run_tool(["pkcs15-tool", "-r", "0", "--read-certificate", "1"]).stdout
    cert = x509.load_pem_x509_certificate(pem[pem.index("-----BEGIN"):].encode())
    status = jrun("status", app_id, "--at", "2026-05-11")
    assert cert.serial_number == int(status["auth_cert"]["serial"], 16)
    ca = store_ca().auth_ca.certificate
    at = dt.datetime(2026, 6, 1, 10, tzinfo=JST)
    server = subprocess.Popen([*CLI, "ocsp-serve", "--json", "--at", "2026-06-01T10:00"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=os.environ.copy())
    try:
        url = json.loads(server.stdout.readline())["url"]
        assert ocsp_check(url, cert, ca, at=at).status == "good"
        run("suspend", app_id, "--at", "2026-06-01T09:00")
        assert ocsp_check(url, cert, ca, at=at).status == "hold"
        run("resume", app_id, "--at", "2026-06-01T09:30")
        assert ocsp_check(url, cert, ca, at=at).status == "good"
    finally:
        server.send_signal(signal.SIGTERM)
        assert server.wait(20) == 0

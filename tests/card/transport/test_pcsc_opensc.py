"""Unmodified OpenSC and pyscard against persona cards served through pcscd + vpcd (pcsc.md).

Each test serves a fresh copy of a persona image with `card serve` (a subprocess, stopped by
PID). OpenSC runs WITHOUT OPENSC_DRIVER: it must pick its jpki driver by itself, which only
works if every foreign-AID probe of the ~30 drivers before it is refused (spec §2.2, pcsc.md).
"""
from __future__ import annotations

import re
import subprocess

import pytest

from mynaemu.card.image import CardImage
from tests.support.pcsc_env import PKCS11_MODULE, READER, opensc_env, run_tool, skip_unless_installed

pytestmark = pytest.mark.pcsc

AID_JPKI = "D392F000260100000001"
AID_KENKAKU = "D392100031000101040" + "2"
CONTACT_ATR = bytes.fromhex("3BE000FF8131FE4514")
AUTH_PIN, SIGN_PIN = "1234", "ABC123"


@pytest.fixture(autouse=True)
def _installed():
    skip_unless_installed(opensc=True)


@pytest.fixture
def serve(card_server, persona_images):
    """serve(persona) -> (image path, server handle) for a fresh copy of the persona's card."""
    def _serve(name):
        path = persona_images(name)
        return path, card_server(path)
    return _serve


# -- output parsing -----------------------------------------------------------------------------

def certificates(text: str) -> list:
    """[(label, flags line, path)] from `pkcs15-tool --list-certificates`.

    OpenSC's JPKI emulator declares the same four objects for every card (pkcs15-jpki.c); a
    certificate it could read shows an "Encoded serial" line, see serials()."""
    out = []
    for block in re.split(r"\n(?=X\.509 Certificate \[)", text.strip()):
        head = re.match(r"X\.509 Certificate \[(.+?)\]", block)
        if not head:
            continue
        flags = re.search(r"Object Flags\s*:\s*(.+)", block)
        path = re.search(r"Path\s*:\s*(\S+)", block)
        out.append((head.group(1), flags.group(1) if flags else "", path.group(1) if path else ""))
    return out


def serials(text: str) -> set:
    """Paths of the certificates whose content pkcs15-tool read (it prints their serial)."""
    out = set()
    for block in re.split(r"\n(?=X\.509 Certificate \[)", text.strip()):
        path = re.search(r"Path\s*:\s*(\S+)", block)
        if path and re.search(r"Encoded serial\s*:", block):
            out.add(path.group(1))
    return out


def tries_left(text: str) -> dict:
    """{PIN label: tries left} from `pkcs15-tool --list-pins`."""
    result = {}
    for block in re.split(r"\n(?=PIN \[)", text.strip()):
        head = re.match(r"PIN \[(.+?)\]", block)
        tries = re.search(r"Tries left\s*:\s*(-?\d+)", block)
        if head and tries:
            result[head.group(1)] = int(tries.group(1))
    return result


def list_pins() -> dict:
    return tries_left(run_tool(["pkcs15-tool", "-r", "0", "--list-pins"]).stdout)


def pkcs11_login_sign(tmp_path, pin: str, check=True):
    msg = tmp_path / "msg.txt"
    msg.write_bytes(b"mynaemu TEST message for a JPKI auth signature\n")
    sig = tmp_path / "msg.sig"
    done = run_tool(["pkcs11-tool", "--module", PKCS11_MODULE, "--login", "--pin", pin, "--sign",
                     "-m", "SHA256-RSA-PKCS", "--id", "01", "-i", msg, "-o", sig], check=check)
    return done, msg, sig


# -- pyscard ------------------------------------------------------------------------------------

def test_pyscard_smoke_select_and_foreign_aids(serve):
    from smartcard.System import readers

    serve("adult")
    reader = next(r for r in readers() if str(r) == READER)
    conn = reader.createConnection()
    conn.connect()
    try:
        assert bytes(conn.getATR()) == CONTACT_ATR

        def tx(hexstr):
            data, sw1, sw2 = conn.transmit(list(bytes.fromhex(hexstr)))
            return bytes(data), f"{sw1:02X}{sw2:02X}"

        assert tx("00A4040C0A" + AID_JPKI) == (b"", "9000")
        # Foreign AIDs of drivers OpenSC tries first (PIV, OpenPGP, GIDS): never 9000.
        for aid in ("A000000308000010000100", "D27600012401", "A000000397425446590201"):
            assert tx(f"00A40400{len(aid) // 2:02X}{aid}00")[1] == "6A82", aid
        assert tx("00A4040C0A" + AID_JPKI)[1] == "9000"
        assert tx("00A4020C02000A")[1] == "9000"
        data, sw = tx("00B0000004")
        assert sw == "9000" and data[:2] == b"\x30\x82"
    finally:
        conn.disconnect()
        conn.release()      # free the PC/SC context while pcscd is still up


def test_bench_lean_client_reads_what_pyscard_reads(serve):
    """bench/pcsc_lean.py (the P1 benchmark's C-style client) talks to the same card correctly:
    whole 256-byte answers, status words, and pcsc-lite errors by name."""
    from bench import pcsc_lean

    serve("adult")
    with pcsc_lean.Context() as ctx:
        assert READER in ctx.readers()
        with pytest.raises(pcsc_lean.PcscError, match="SCARD_E_UNKNOWN_READER"):
            ctx.connect("no such reader")
        conn = ctx.connect(READER)
        try:
            assert conn.transmit(bytes.fromhex("00A4040C0A" + AID_JPKI)) == b"\x90\x00"
            assert conn.transmit(bytes.fromhex("00A4020C02000A")) == b"\x90\x00"
            first = conn.transmit(bytes.fromhex("00B0000000"))
            assert len(first) == 258 and first[:2] == b"\x30\x82" and first[-2:] == b"\x90\x00"
            assert conn.transmit(bytes.fromhex("00B0000010"))[:-2] == first[:16]
            assert conn.transmit(bytes.fromhex("00A4020C02001F")) == b"\x6a\x82"
        finally:
            conn.close()


# -- pkcs15-tool --------------------------------------------------------------------------------

def test_opensc_picks_jpki_driver_unforced(serve):
    serve("adult")
    env = opensc_env(force_driver=False)
    assert "OPENSC_DRIVER" not in env
    assert run_tool(["opensc-tool", "-r", "0", "-n"], env=env).stdout.strip() == "jpki"


def test_opensc_finds_jpki_by_aid_with_contactless_atr(card_server, persona_images):
    """With an ATR OpenSC does not know, jpki_match_card must SELECT the JPKI AID; all drivers
    probing before it must have been refused, or one of them claims the card (spec §2.2)."""
    path = persona_images("adult")
    image = CardImage.load(path)
    image.atr = "contactless"
    image.save(path)
    card_server(path)
    assert run_tool(["opensc-tool", "-r", "0", "-n"]).stdout.strip() == "jpki"
    certs = certificates(run_tool(["pkcs15-tool", "-r", "0", "--list-certificates"]).stdout)
    assert len(certs) == 4


def test_list_certificates_adult(serve):
    serve("adult")
    text = run_tool(["pkcs15-tool", "-r", "0", "--list-certificates"]).stdout
    certs = certificates(text)
    assert len(certs) == 4, certs
    by_path = {path: (label, flags) for label, flags, path in certs}
    assert set(by_path) == {"000a", "0001", "000b", "0002"}
    # The signing certificate (EF 0001) is the only private one (spec §3.1: needs 001B), so it
    # is listed without being read; the other three are read (serial shown).
    assert "private" in by_path["0001"][1]
    assert all("private" not in flags for path, (_l, flags) in by_path.items() if path != "0001")
    assert serials(text) == {"000a", "000b", "0002"}
    # Without the signing password the card refuses EF 0001 (6982), so the export fails.
    assert run_tool(["pkcs15-tool", "-r", "0", "--read-certificate", "2"], check=False).returncode != 0


def test_list_certificates_under15(serve):
    """An under-15 card has no signing certificate (ELIG-2): OpenSC's emulator still declares
    four objects, but only three certificates exist on the card and the signing one is absent."""
    path, _ = serve("under15")
    text = run_tool(["pkcs15-tool", "-r", "0", "--list-certificates"]).stdout
    assert len(certificates(text)) == 4
    assert serials(text) == {"000a", "000b", "0002"}
    done = run_tool(["pkcs15-tool", "-r", "0", "--read-certificate", "2"], check=False)
    assert done.returncode != 0 and "File not found" in done.stdout + done.stderr
    assert 0x0001 not in CardImage.load(path).application("jpki").efs
    assert "BEGIN CERTIFICATE" in run_tool(["pkcs15-tool", "-r", "0", "--read-certificate", "1"]).stdout
    # The signing password was never set: OpenSC still binds (63C0, SW1=63) and shows 0 tries.
    assert list_pins() == {"User Authentication PIN": 3, "Digital Signature PIN": 0}


def test_list_pins_shows_tries_left(serve):
    serve("adult")
    pins = list_pins()
    assert pins == {"User Authentication PIN": 3, "Digital Signature PIN": 5}


@pytest.mark.parametrize("persona, label, expected", [
    ("sign-1-left", "Digital Signature PIN", 1),
    ("auth-locked", "User Authentication PIN", 0),
])
def test_list_pins_persona_counters(serve, persona, label, expected):
    serve(persona)
    assert list_pins()[label] == expected


# -- pkcs11-tool signature ----------------------------------------------------------------------

def test_pkcs11_sign_verifies_with_auth_certificate(serve, tmp_path):
    path, _ = serve("adult")
    _, msg, sig = pkcs11_login_sign(tmp_path, AUTH_PIN)
    assert sig.stat().st_size == 256
    pem = run_tool(["pkcs15-tool", "-r", "0", "--read-certificate", "1"]).stdout
    cert = tmp_path / "auth.pem"
    cert.write_text(pem)
    pub = tmp_path / "auth.pub"
    pub.write_text(run_tool(["openssl", "x509", "-in", cert, "-pubkey", "-noout"]).stdout)
    done = run_tool(["openssl", "dgst", "-sha256", "-verify", pub, "-signature", sig, msg])
    assert "Verified OK" in done.stdout
    # The exported certificate is the card's EF 000A (the DER object at its start).
    exported = subprocess.run(["openssl", "x509", "-in", str(cert), "-outform", "DER"],
                              capture_output=True, check=True).stdout
    image_cert = CardImage.load(path).application("jpki").efs[0x000A].data
    assert exported and image_cert[:len(exported)] == exported


def test_auth_locked_refuses_correct_pin(serve, tmp_path):
    serve("auth-locked")
    done, _, sig = pkcs11_login_sign(tmp_path, AUTH_PIN, check=False)
    # The card answers 6984 to a VERIFY on a blocked key (spec §4.2); OpenSC turns that into a
    # C_Login failure (CKR_GENERAL_ERROR in 0.23), so only the failure itself is asserted.
    assert done.returncode != 0 and "C_Login failed" in done.stdout + done.stderr
    assert not sig.exists() or sig.stat().st_size == 0
    assert list_pins()["User Authentication PIN"] == 0


def test_wrong_pins_lock_and_lock_survives_restart(serve, card_server, tmp_path):
    path, server = serve("adult")
    done, _, _ = pkcs11_login_sign(tmp_path, "9999", check=False)
    assert done.returncode != 0 and "CKR_PIN_INCORRECT" in done.stdout + done.stderr
    assert list_pins()["User Authentication PIN"] == 2
    for _ in range(2):
        pkcs11_login_sign(tmp_path, "9999", check=False)
    assert list_pins()["User Authentication PIN"] == 0
    # The counter is on disk (the card persists it): stop by PID, serve the same file again.
    server.stop()
    assert CardImage.load(path).pin("jpki", 0x0018).remaining == 0
    card_server(path)
    assert list_pins()["User Authentication PIN"] == 0
    done, _, _ = pkcs11_login_sign(tmp_path, AUTH_PIN, check=False)
    assert done.returncode != 0 and "C_Login failed" in done.stdout + done.stderr


def test_signing_slot_lists_certificates_after_login(serve):
    serve("adult")
    out = run_tool(["pkcs11-tool", "--module", PKCS11_MODULE, "--slot-index", "1", "--login", "--pin",
                    SIGN_PIN, "--list-objects", "--type", "cert"]).stdout
    assert "Digital Signature Certificate" in out
    assert list_pins()["Digital Signature PIN"] == 5     # a correct password keeps the counter full


def test_kenkaku_b_locked_leaves_jpki_alone(serve):
    from smartcard.System import readers

    serve("kenkaku-b-locked")
    conn = next(r for r in readers() if str(r) == READER).createConnection()
    conn.connect()
    try:
        def sw(hexstr):
            _data, sw1, sw2 = conn.transmit(list(bytes.fromhex(hexstr)))
            return f"{sw1:02X}{sw2:02X}"

        assert sw("00A4040C0A" + AID_KENKAKU) == "9000"
        assert sw("00A4020C020012") == "9000"
        assert sw("00200080") == "63C0"        # blocked 照合番号B: query 63C0 (spec §4.2)
    finally:
        conn.disconnect()
        conn.release()      # free the PC/SC context while pcscd is still up
    assert list_pins() == {"User Authentication PIN": 3, "Digital Signature PIN": 5}

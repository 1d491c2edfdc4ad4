"""The kiosk against the centre and the JPKI validity service over loopback HTTP (issue 4).

Every refusal of the issue's "must show" list has its own test: each checks the reason (and so
the exit-code class), and that the card's PIN counter is exactly where the holder's own entries
put it — the kiosk never locks a card by itself. Cards are personas with random keys, issued at
ISSUE_AT; the whole stack runs on one SettableClock starting at KIOSK_AT (inside 6:30-23:00).
"""
from __future__ import annotations

import base64
import datetime as _dt
import http.server
import json
import secrets
import socket
import subprocess
import threading
import tempfile

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from mynaemu.card.apps import jorei
from mynaemu.card.core import Card
from mynaemu.card.image import CardImage
from mynaemu.issuance.kiosk import documents
from mynaemu.issuance.pki.ca import TestCA, default_test_pki
from mynaemu.issuance.clock import SettableClock
from mynaemu.issuance.kiosk.keyfiles import load_or_create_signer
from mynaemu.issuance.kiosk.records import MemoryCentreTrail, MemoryKioskHistory
from mynaemu.issuance.kiosk.municipality import MunicipalityServer
from mynaemu.issuance.kiosk.residents import MemoryResidentDirectory, synthesize_resident
from mynaemu.issuance.kiosk.services import start_services
from mynaemu.issuance.kiosk.wire import REASONS, Refusal
from mynaemu.issuance.personas import build_persona
from mynaemu.issuance.policy import JST
from mynaemu.issuance.pki.revocation import MemoryRevocationSource
from mynaemu.tools.terminal.client import CardClient, InProcessConnection
from mynaemu.tools.cli.kiosk import EXIT_CLASSES
from mynaemu.tools.terminal.kiosk import CentreClient, Kiosk, digest_info

ISSUE_AT = _dt.datetime(2026, 3, 2, 9, 0, tzinfo=JST)
KIOSK_AT = _dt.datetime(2026, 3, 2, 12, 0, tzinfo=JST)
KIOSK_ID = "TEST-KIOSK-0042"
MUNI = "13221"
PIN = "1234"
AUTH_PIN_FID = 0x0018


def _auth_cert(image: CardImage) -> x509.Certificate:
    return x509.load_der_x509_certificate(image.application("jpki").efs[0x000A].data)


def _copy(image: CardImage) -> CardImage:
    return CardImage.from_json(image.to_json())


class Stack:
    """The services plus helpers to register cards and run the kiosk on a fresh copy of a card."""

    def __init__(self):
        self.pki = default_test_pki()
        self.source = MemoryRevocationSource()
        self.directory = MemoryResidentDirectory()
        self._home = tempfile.TemporaryDirectory()
        self.muni_key = load_or_create_signer(self._home.name, MUNI)   # the mayor's TEST LGPKI signer
        self.history = MemoryKioskHistory()    # an in-process stack: no store (records.py)
        self.trail = MemoryCentreTrail()
        self.municipality = MunicipalityServer(MUNI, self.muni_key, self.directory, history=self.history)
        self.kiosk_key = secrets.token_bytes(32)
        self.clock = SettableClock(KIOSK_AT)
        self.services = start_services(pki=self.pki, source=self.source, directory=self.directory,
                                       municipalities={MUNI: self.municipality},
                                       kiosk_keys={KIOSK_ID: self.kiosk_key}, clock=self.clock,
                                       trail=self.trail)
        self.trusted = [self.muni_key.root]
        self.registered = {}

    def register(self, image: CardImage, info, *, user_id: str | None = None, directory=True) -> CardImage:
        """Record the card's auth certificate as issued and its holder as a resident."""
        cert = _auth_cert(image)
        self.source.add_issued("auth", cert.serial_number, cert.not_valid_after_utc, at=ISSUE_AT)
        if directory:
            resident = synthesize_resident(info.identity, on=ISSUE_AT.date(), user_id=user_id)
            self.directory.add(resident, auth_serials=[cert.serial_number])
        return image

    def centre(self, key: bytes | None = None, url: str | None = None) -> CentreClient:
        return CentreClient(url or self.services.centre_url, KIOSK_ID, key or self.kiosk_key)

    def kiosk(self, **kwargs) -> Kiosk:
        kwargs.setdefault("clock", self.clock)
        kwargs.setdefault("trust_roots", self.trusted)
        return Kiosk(kwargs.pop("centre", None) or self.centre(), **kwargs)


@pytest.fixture(scope="module")
def stack():
    s = Stack()
    yield s
    s.services.stop()


@pytest.fixture(scope="module")
def adult(stack):
    image, info = build_persona("adult", at=ISSUE_AT)
    return stack.register(image, info, user_id="USERID0000000001"), info


@pytest.fixture(scope="module")
def under15(stack):
    image, info = build_persona("under15", at=ISSUE_AT)
    return stack.register(image, info, user_id="USERID0000000002"), info


def _session(image: CardImage, **client_kwargs):
    """A powered card on a copy of `image`: (card, CardClient)."""
    card = Card(_copy(image))
    return card, CardClient(InProcessConnection(card), **client_kwargs)


def _tries(card: Card, app: str = "jpki", fid: int = AUTH_PIN_FID) -> int:
    return card.image.pin(app, fid).remaining


def _pdf_text(pdf: bytes) -> str:
    done = subprocess.run(["pdftotext", "-", "-"], input=pdf, capture_output=True, timeout=60, check=True)
    return done.stdout.decode("utf-8")


def _refusal(func, *args, **kwargs) -> Refusal:
    with pytest.raises(Refusal) as info:
        func(*args, **kwargs)
    return info.value


# -- acceptance ---------------------------------------------------------------------------------

@pytest.mark.parametrize("who", ["adult", "under15"])
def test_adult_and_under15_get_a_verified_pdf(stack, who, request):
    image, info = request.getfixturevalue(who)
    card, client = _session(image)
    narration = []
    result = stack.kiosk(narrate=lambda actor, text: narration.append((actor, text))).issue(
        client, pin=PIN, document="juminhyo")
    assert result.pdf.startswith(b"%PDF-")
    assert result.tamper_checked
    assert documents.verify_pdf(result.pdf, stack.trusted)
    verified = documents.check_pdf(result.pdf, stack.trusted)
    names = [m["name"] for m in verified.content["fields"]["members"]]
    assert info.identity.name in names
    assert result.fee == 200 and result.verification_code == verified.verification_code
    assert [c["check"] for c in result.checks] == ["challenge", "certificate", "chain", "signature", "dates",
                                                   "validity", "route"]
    assert result.checks[5]["source"] == "ocsp" and result.checks[5]["result"] == "good"
    # PIN counter untouched by a good transaction; the kiosk left the card at the ISD
    assert _tries(card) == 3
    assert any("SELECT ISD" in text for _, text in narration)
    assert result.timing["decision_s"] > 0 and result.timing["render_s"] > 0


def test_card_apdus_are_the_spec_sequence(stack, adult):
    card, client = _session(adult[0], trace=True)
    stack.kiosk().issue(client, pin=PIN, document="zei")
    commands = [c for c, _ in client.trace]
    assert commands[0] == "00 A4 04 0C 0A D3 92 F0 00 26 01 00 00 00 01"          # SELECT JPKI-AP
    assert "00 A4 02 0C 02 00 0A" in commands                                      # EF 000A
    query = commands.index("00 20 00 80")                                          # retry query ...
    verify = next(i for i, c in enumerate(commands) if c.startswith("00 20 00 80 04"))
    assert query < verify and commands[verify].endswith("****")                    # ... before VERIFY, redacted
    sign = next(i for i, c in enumerate(commands) if c.startswith("80 2A 00 80 33"))  # DigestInfo = 51 bytes
    assert commands[sign - 1] == "00 A4 02 0C 02 00 17" and verify < sign
    assert commands[-1] == "00 A4 04 0C 07 A0 00 00 01 51 00 00"                   # ISD at the end
    assert sum(c.startswith("00 20 00 80 04") for c in commands) == 1


# -- the PIN: refused without locking -------------------------------------------------------------

def test_wrong_pin_shows_tries_left_and_costs_exactly_one_try(stack, adult):
    card, client = _session(adult[0], trace=True)
    refusal = _refusal(stack.kiosk().issue, client, pin="9999", document="juminhyo")
    assert (refusal.reason, refusal.code, refusal.details["tries_left"]) == ("pin-wrong", 3, 2)
    assert "2 tries left" in refusal.message
    assert _tries(card) == 2
    assert sum(c.startswith("00 20 00 80 04") for c, _ in client.trace) == 1


def test_locked_pin_is_refused_without_sending_a_pin(stack):
    image, info = build_persona("auth-locked", at=ISSUE_AT)
    stack.register(image, info)
    card, client = _session(image, trace=True)
    refusal = _refusal(stack.kiosk().issue, client, pin=PIN, document="juminhyo")
    assert (refusal.reason, refusal.code) == ("pin-blocked", 4)
    assert not any(c.startswith("00 20 00 80 04") for c, _ in client.trace)


def test_last_try_needs_confirmation_and_is_never_spent_by_the_kiosk(stack, adult):
    image = _copy(adult[0])
    image.pin("jpki", AUTH_PIN_FID).remaining = 1
    card, client = _session(image, trace=True)
    refusal = _refusal(stack.kiosk().issue, client, pin=PIN, document="juminhyo")
    assert (refusal.reason, refusal.code) == ("pin-last-try", 4)
    assert _tries(card) == 1
    assert not any(c.startswith("00 20 00 80 04") for c, _ in client.trace)
    # With the holder's confirmation the right PIN goes through and resets the counter (§4.1)
    card2, client2 = _session(image)
    stack.kiosk().issue(client2, pin=PIN, document="juminhyo", last_try=True)
    assert _tries(card2) == 3


def test_malformed_pin_never_reaches_the_card(stack, adult):
    card, client = _session(adult[0], trace=True)
    for bad in ("123", "12345", "abcd", ""):
        with pytest.raises(ValueError):
            stack.kiosk().issue(client, pin=bad, document="juminhyo")
    assert client.trace == [] and _tries(card) == 3


# -- 有効性の確認 (CVS-16) --------------------------------------------------------------------------

def _fresh_adult(stack, **register):
    image, info = build_persona("adult", at=ISSUE_AT)
    return stack.register(image, info, **register), info


def test_suspended_card_is_refused_as_on_hold(stack):
    image, _ = _fresh_adult(stack)
    stack.source.hold("auth", _auth_cert(image).serial_number, at=ISSUE_AT + _dt.timedelta(hours=1))
    card, client = _session(image)
    refusal = _refusal(stack.kiosk().issue, client, pin=PIN, document="juminhyo")
    assert (refusal.reason, refusal.code, refusal.details.get("source")) == ("cert-hold", 5, "ocsp")
    assert "一時保留" in refusal.message
    assert _tries(card) == 3


def test_revoked_card_is_refused(stack):
    image, _ = _fresh_adult(stack)
    stack.source.revoke("auth", _auth_cert(image).serial_number, x509.ReasonFlags.key_compromise,
                        at=ISSUE_AT + _dt.timedelta(hours=1))
    card, client = _session(image)
    refusal = _refusal(stack.kiosk().issue, client, pin=PIN, document="juminhyo")
    assert (refusal.reason, refusal.code) == ("cert-revoked", 5)


def _with_auth_cert(stack, image: CardImage, key, *, ca=None, not_before, not_after) -> CardImage:
    """A copy of `image` whose EF 000A holds a new certificate for `key` (the card's own key)."""
    ca = ca or stack.pki.auth_ca
    cert = ca.issue_auth(key.public_key(), serial=secrets.randbits(62) | 1, not_before=not_before,
                         not_after=not_after, issue_id="TESTKIOSK" + secrets.token_hex(4).upper())
    out = _copy(image)
    out.application("jpki").efs[0x000A].data = cert.public_bytes(serialization.Encoding.DER)
    return out, cert


def _card_key(image: CardImage):
    return serialization.load_pem_private_key(image.application("jpki").efs[0x0017].key_pem, None)


def test_expired_certificate_is_refused(stack, adult):
    image, info = adult
    expired, cert = _with_auth_cert(stack, image, _card_key(image),
                                    not_before=_dt.datetime(2025, 2, 1, tzinfo=_dt.timezone.utc),
                                    not_after=_dt.datetime(2025, 12, 31, tzinfo=_dt.timezone.utc))
    stack.register(expired, info)
    card, client = _session(expired)
    refusal = _refusal(stack.kiosk().issue, client, pin=PIN, document="juminhyo")
    assert (refusal.reason, refusal.code) == ("cert-expired", 6)


def test_not_yet_valid_certificate_is_refused(stack, adult):
    image, info = adult
    future, cert = _with_auth_cert(stack, image, _card_key(image),
                                   not_before=KIOSK_AT + _dt.timedelta(days=30),
                                   not_after=KIOSK_AT + _dt.timedelta(days=400))
    stack.register(future, info)
    card, client = _session(future)
    refusal = _refusal(stack.kiosk().issue, client, pin=PIN, document="juminhyo")
    assert (refusal.reason, refusal.code) == ("cert-not-yet-valid", 6)


def test_certificate_from_another_ca_with_the_same_name_is_refused(stack, adult):
    image, info = adult
    rogue = TestCA.create("auth", not_before=_dt.datetime(2025, 1, 1, tzinfo=_dt.timezone.utc))
    assert rogue.certificate.subject == stack.pki.auth_ca.certificate.subject  # same DN, other key
    forged, _ = _with_auth_cert(stack, image, _card_key(image), ca=rogue, not_before=ISSUE_AT,
                                not_after=ISSUE_AT + _dt.timedelta(days=365))
    card, client = _session(forged)
    refusal = _refusal(stack.kiosk().issue, client, pin=PIN, document="juminhyo")
    assert (refusal.reason, refusal.code) == ("chain-invalid", 7)
    assert _tries(card) == 3


def test_card_whose_key_does_not_match_its_certificate_is_refused(stack, adult):
    image = _copy(adult[0])
    other = rsa.generate_private_key(65537, 2048)
    image.application("jpki").efs[0x0017].key_pem = other.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    card, client = _session(image)
    refusal = _refusal(stack.kiosk().issue, client, pin=PIN, document="juminhyo")
    assert (refusal.reason, refusal.code) == ("signature-invalid", 7)
    assert _tries(card) == 3


def test_truncated_certificate_on_the_card_is_refused(stack, adult):
    image = _copy(adult[0])
    ef = image.application("jpki").efs[0x000A]
    ef.data = ef.data[:len(ef.data) // 2]
    card, client = _session(image, trace=True)
    refusal = _refusal(stack.kiosk().issue, client, pin=PIN, document="juminhyo")
    assert (refusal.reason, refusal.code) == ("cert-invalid", 7)
    assert not any(c.startswith("00 20 00 80 04") for c, _ in client.trace)  # refused before the PIN


def test_truncated_certificate_sent_to_the_centre_is_refused(stack, adult):
    """A kiosk that forwards a truncated DER (e.g. a broken terminal) gets cert-invalid."""
    refusal = _refusal(_manual, stack, adult[0], mangle=lambda req: req.update(
        certificate=base64.b64encode(base64.b64decode(req["certificate"])[:700]).decode()))
    assert (refusal.reason, refusal.code) == ("cert-invalid", 7)


# -- replay and stale challenges --------------------------------------------------------------------

def _manual(stack, image, *, mangle=None, before_issue=None, centre=None):
    """Run the card side by hand (as a kiosk would) and send the request; returns (request, answer)."""
    centre = centre or stack.centre()
    session = centre.open_session("shin")
    nonce = base64.b64decode(session["nonce"])
    _, client = _session(image)
    client.select_ap("jpki")
    cert = client.read_certificate("auth")
    client.verify(AUTH_PIN_FID, PIN)
    sig = client.sign(0x0017, digest_info(nonce))
    request = {"kiosk_id": KIOSK_ID, "method": "shin", "document": "juminhyo", "with_number": False,
               "nonce": session["nonce"], "certificate": base64.b64encode(cert).decode(),
               "signature": base64.b64encode(sig).decode()}
    if mangle:
        mangle(request)
    if before_issue:
        before_issue()
    return request, centre.issue(request)


def test_replayed_signature_is_refused(stack, adult):
    request, answer = _manual(stack, adult[0])
    assert answer["status"] == "issued"
    refusal = _refusal(stack.centre().issue, request)
    assert (refusal.reason, refusal.code) == ("challenge-replayed", 12)


def test_signature_over_another_challenge_is_refused(stack, adult):
    """A signature captured in one session does not open another (the nonce is what is signed)."""
    request, _ = _manual(stack, adult[0])
    fresh = stack.centre().open_session("shin")
    refusal = _refusal(stack.centre().issue, {**request, "nonce": fresh["nonce"]})
    assert (refusal.reason, refusal.code) == ("signature-invalid", 7)


def test_stale_challenge_is_refused(stack, adult):
    refusal = _refusal(_manual, stack, adult[0], before_issue=lambda: stack.clock.advance(61))
    assert (refusal.reason, refusal.code) == ("challenge-expired", 12)


def test_challenge_of_another_kiosk_is_refused(stack, adult):
    other_key = secrets.token_bytes(32)
    stack.services.centre.kiosk_keys["TEST-KIOSK-OTHER"] = other_key
    other = CentreClient(stack.services.centre_url, "TEST-KIOSK-OTHER", other_key)
    nonce = other.open_session("shin")["nonce"]
    refusal = _refusal(_manual, stack, adult[0], mangle=lambda req: req.update(nonce=nonce))
    assert (refusal.reason, refusal.code) == ("challenge-replayed", 12)


# -- the card goes away ---------------------------------------------------------------------------

@pytest.mark.parametrize("step", ["read-certificate", "verify", "sign"])
def test_card_removed_mid_transaction(stack, adult, step):
    card, client = _session(adult[0])
    kiosk = stack.kiosk(on_step=lambda name: card.power_off() if name == step else None)
    refusal = _refusal(kiosk.issue, client, pin=PIN, document="juminhyo")
    assert (refusal.reason, refusal.code) == ("card-removed", 9)
    assert _tries(card) == 3


# -- the validity service is down ------------------------------------------------------------------

def _dead_url() -> str:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def crl_only(stack):
    """A second centre whose OCSP URL is dead but whose CRL URL works."""
    services = start_services(pki=stack.pki, source=stack.source, directory=stack.directory,
                              municipalities={MUNI: stack.municipality}, kiosk_keys={KIOSK_ID: stack.kiosk_key},
                              clock=stack.clock, trail=stack.trail, validity=False, ocsp_url=_dead_url(),
                              crl_url=stack.services.crl_url, validity_timeout=1)
    yield services
    services.stop()


def test_ocsp_unreachable_falls_back_to_the_crl(stack, crl_only, adult):
    card, client = _session(adult[0])
    result = stack.kiosk(centre=stack.centre(url=crl_only.centre_url)).issue(client, pin=PIN, document="inkan")
    validity = next(c for c in result.checks if c["check"] == "validity")
    assert (validity["result"], validity["source"]) == ("good", "crl")


def test_crl_fallback_still_sees_a_hold(stack, crl_only):
    image, _ = _fresh_adult(stack)
    stack.source.hold("auth", _auth_cert(image).serial_number, at=ISSUE_AT + _dt.timedelta(hours=2))
    card, client = _session(image)
    refusal = _refusal(stack.kiosk(centre=stack.centre(url=crl_only.centre_url)).issue, client, pin=PIN,
                       document="juminhyo")
    assert (refusal.reason, refusal.details.get("source")) == ("cert-hold", "crl")


def test_ocsp_and_crl_unreachable_is_refused(stack, adult):
    services = start_services(pki=stack.pki, source=stack.source, directory=stack.directory,
                              municipalities={MUNI: stack.municipality}, kiosk_keys={KIOSK_ID: stack.kiosk_key},
                              clock=stack.clock, trail=stack.trail, validity=False, ocsp_url=_dead_url(),
                              crl_url=_dead_url() + "/crl/auth.crl", validity_timeout=1)
    try:
        card, client = _session(adult[0])
        refusal = _refusal(stack.kiosk(centre=stack.centre(url=services.centre_url)).issue, client, pin=PIN,
                           document="juminhyo")
    finally:
        services.stop()
    assert (refusal.reason, refusal.code) == ("validity-unavailable", 8)
    assert "OCSP" in refusal.message and "CRL" in refusal.message


# -- hours, residents, fee, authentication ---------------------------------------------------------

def test_outside_service_hours_is_refused_before_touching_the_card(stack, adult):
    card, client = _session(adult[0], trace=True)
    early = SettableClock(_dt.datetime(2026, 3, 3, 6, 29, tzinfo=JST))
    refusal = _refusal(stack.kiosk(clock=early).issue, client, pin=PIN, document="juminhyo")
    assert (refusal.reason, refusal.code) == ("outside-hours", 10)
    assert client.trace == []
    late = SettableClock(_dt.datetime(2026, 3, 3, 23, 0, tzinfo=JST))
    assert _refusal(stack.kiosk(clock=late).issue, client, pin=PIN, document="juminhyo").reason == "outside-hours"


def test_municipality_hours_inside_the_national_window(stack, adult):
    """CVS-6: a municipality may set narrower hours; its server refuses outside them."""
    narrow = MunicipalityServer(MUNI, stack.muni_key, stack.directory, history=stack.history, hours=(_dt.time(8, 30), _dt.time(17, 15)))
    with pytest.raises(ValueError):
        MunicipalityServer(MUNI, stack.muni_key, stack.directory, history=stack.history, hours=(_dt.time(6, 0), _dt.time(23, 0)))
    evening = SettableClock(_dt.datetime(2026, 3, 2, 20, 0, tzinfo=JST))
    services = start_services(pki=stack.pki, source=stack.source, directory=stack.directory,
                              municipalities={MUNI: narrow}, kiosk_keys={KIOSK_ID: stack.kiosk_key}, clock=evening,
                              trail=stack.trail)
    try:
        card, client = _session(adult[0])
        refusal = _refusal(stack.kiosk(centre=stack.centre(url=services.centre_url), clock=evening).issue,
                           client, pin=PIN, document="juminhyo")
    finally:
        services.stop()
    assert (refusal.reason, refusal.code) == ("outside-hours", 10)


def test_unknown_resident_is_refused(stack):
    image, info = build_persona("adult", at=ISSUE_AT)
    stack.register(image, info, directory=False)
    card, client = _session(image)
    refusal = _refusal(stack.kiosk().issue, client, pin=PIN, document="juminhyo")
    assert (refusal.reason, refusal.code) == ("resident-unknown", 11)


def test_unpaid_fee_prints_nothing(stack, adult):
    card, client = _session(adult[0])
    asked = []
    refusal = _refusal(stack.kiosk().issue, client, pin=PIN, document="juminhyo",
                       pay=lambda fee: asked.append(fee) or False)
    assert (refusal.reason, refusal.code) == ("fee-unpaid", 15)
    assert asked == [200]  # FEE-4: asked once, after the data arrived


def test_unknown_kiosk_key_is_refused(stack, adult):
    card, client = _session(adult[0], trace=True)
    refusal = _refusal(stack.kiosk(centre=stack.centre(key=secrets.token_bytes(32))).issue, client, pin=PIN,
                       document="juminhyo")
    assert (refusal.reason, refusal.code) == ("kiosk-auth", 13)
    assert client.trace == []  # the session is refused before the card is touched


def test_unauthenticated_centre_answer_is_refused(stack, adult):
    """A man in the middle answering 200 without the centre's MAC is not believed."""
    class Fake(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            body = json.dumps({"nonce": base64.b64encode(b"x" * 32).decode(), "expires_at": "-"}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("X-Centre-Mac", "00" * 32)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Fake)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        card, client = _session(adult[0], trace=True)
        url = f"http://127.0.0.1:{server.server_address[1]}"
        refusal = _refusal(stack.kiosk(centre=stack.centre(url=url)).issue, client, pin=PIN, document="juminhyo")
    finally:
        server.shutdown()
        server.server_close()
    assert (refusal.reason, refusal.code) == ("centre-auth", 13)
    assert client.trace == []


def test_centre_unreachable_is_refused(stack, adult):
    card, client = _session(adult[0])
    refusal = _refusal(stack.kiosk(centre=stack.centre(url=_dead_url())).issue, client, pin=PIN,
                       document="juminhyo")
    assert (refusal.reason, refusal.code) == ("centre-unavailable", 14)


# -- documents by method ------------------------------------------------------------------------------

def test_number_only_on_request_and_only_on_a_juminhyo(stack, adult):
    image, info = adult
    number = info.identity.individual_number
    for with_number in (False, True):
        card, client = _session(image)
        result = stack.kiosk().issue(client, pin=PIN, document="juminhyo", with_number=with_number)
        content = documents.check_pdf(result.pdf, stack.trusted).content
        me = next(m for m in content["fields"]["members"] if m["name"] == info.identity.name)
        assert ("individual_number" in me) is with_number
        assert (number in _pdf_text(result.pdf)) is with_number  # and on the page itself
        if with_number:
            assert me["individual_number"] == number
    card, client = _session(image)
    with pytest.raises(ValueError):
        stack.kiosk().issue(client, pin=PIN, document="zei", with_number=True)
    refusal = _refusal(_manual, stack, image, mangle=lambda req: req.update(document="zei", with_number=True))
    assert refusal.reason == "bad-request"


def test_inkan_needs_a_seal_registration(stack, adult, under15):
    card, client = _session(adult[0])
    result = stack.kiosk().issue(client, pin=PIN, document="inkan")
    assert documents.check_pdf(result.pdf, stack.trusted).content["document"] == "inkan"
    card, client = _session(under15[0])
    refusal = _refusal(stack.kiosk().issue, client, pin=PIN, document="inkan")
    assert (refusal.reason, refusal.code) == ("document-unavailable", 16)


def test_henkan_converts_to_the_user_id(stack, adult):
    card, client = _session(adult[0])
    result = stack.kiosk().issue(client, pin=PIN, document="zei", method="henkan")
    steps = [c["check"] for c in result.checks]
    assert "convert" in steps and steps.index("validity") < steps.index("convert")
    assert documents.check_pdf(result.pdf, stack.trusted).content["method"] == "henkan"


def test_henkan_without_a_user_id_is_refused(stack):
    image, _ = _fresh_adult(stack, user_id=None)
    card, client = _session(image)
    refusal = _refusal(stack.kiosk().issue, client, pin=PIN, document="juminhyo", method="henkan")
    assert refusal.reason == "resident-unknown"


@pytest.fixture(scope="module")
def jorei_card(adult):
    image = _copy(adult[0])
    jorei.add_to_image(image, user_id="USERID0000000001", municipality_code=MUNI,
                       pins={"juminhyo": "1111", "zei": "3333"})
    return image


def test_genko_reads_the_user_id_with_the_documents_own_pin(stack, jorei_card, adult):
    card, client = _session(jorei_card, trace=True)
    result = stack.kiosk().issue(client, pin="3333", document="zei", method="genko")
    content = documents.check_pdf(result.pdf, stack.trusted).content
    assert content["method"] == "genko" and content["fields"]["name"] == adult[1].identity.name
    commands = [c for c, _ in client.trace]
    assert commands[0] == "00 A4 04 0C 10 " + jorei.AID.hex(" ").upper()
    assert "00 A4 02 0C 02 00 13" in commands  # the 税証明 PIN, not another
    assert not any(c.startswith("00 A4 04 0C 0A D3 92 F0") for c in commands)  # no JPKI needed


def test_genko_wrong_pin_costs_only_that_documents_try(stack, jorei_card):
    card, client = _session(jorei_card)
    refusal = _refusal(stack.kiosk().issue, client, pin="1111", document="zei", method="genko")
    assert (refusal.reason, refusal.details["tries_left"]) == ("pin-wrong", 2)
    assert card.image.pin("jorei", 0x0013).remaining == 2
    assert card.image.pin("jorei", 0x0011).remaining == 3
    assert _tries(card) == 3


def test_genko_unregistered_document_and_card_without_the_ap(stack, jorei_card, adult):
    card, client = _session(jorei_card, trace=True)
    refusal = _refusal(stack.kiosk().issue, client, pin="1111", document="inkan", method="genko")
    assert (refusal.reason, refusal.code) == ("document-unavailable", 16)
    assert not any(c.startswith("00 20 00 80 04") for c, _ in client.trace)
    card, client = _session(adult[0])
    refusal = _refusal(stack.kiosk().issue, client, pin="1111", document="zei", method="genko")
    assert (refusal.reason, refusal.code) == ("method-unavailable", 16)


def test_genko_unknown_user_id_is_refused(stack, adult):
    image = _copy(adult[0])
    jorei.add_to_image(image, user_id="NOBODY0000000000", municipality_code=MUNI, pins={"juminhyo": "1111"})
    card, client = _session(image)
    refusal = _refusal(stack.kiosk().issue, client, pin="1111", document="juminhyo", method="genko")
    assert refusal.reason == "resident-unknown"


def test_municipality_keeps_a_history_without_personal_data(stack, adult):
    before = len(stack.municipality.history.entries())
    card, client = _session(adult[0])
    result = stack.kiosk().issue(client, pin=PIN, document="juminhyo", with_number=True)
    entry = stack.municipality.history.entries()[before]
    assert entry["verification_code"] == result.verification_code
    text = json.dumps(stack.municipality.history.entries(), ensure_ascii=False)
    assert adult[1].identity.individual_number not in text and adult[1].identity.name not in text


# -- the jorei AP layout -------------------------------------------------------------------------------

def test_jorei_layout_round_trip_and_bad_input():
    ef = jorei.encode_user_id("ABCDEF0123456789", "13221")
    assert ef[:2] == b"\xFF\x60"
    assert jorei.parse_user_id(ef) == {"municipality_code": "13221", "user_id": "ABCDEF0123456789"}
    assert jorei.parse_documents(jorei.encode_documents(["juminhyo", "zei"])) == {"juminhyo": 0x11, "zei": 0x13}
    for bad in ("abc", "ABCDEF012345678", "ABCDEF01234567890", "abcdef0123456789"):
        with pytest.raises(ValueError):
            jorei.check_user_id(bad)
    with pytest.raises(ValueError):
        jorei.build(user_id="ABCDEF0123456789", municipality_code="13221", pins={})
    with pytest.raises(ValueError):
        jorei.build(user_id="ABCDEF0123456789", municipality_code="13221", pins={"juminhyo": "12"})
    with pytest.raises(ValueError):
        jorei.parse_documents(b"\x09\x00\x11")
    assert jorei.AID[0] == 0xF0 and b"TEST" in jorei.AID and len(jorei.AID) == 16


def test_jorei_ap_through_the_card(adult):
    image = _copy(adult[0])
    jorei.add_to_image(image, user_id="ABCDEF0123456789", municipality_code=MUNI, pins={"inkan": "2222"})
    with pytest.raises(ValueError):
        jorei.add_to_image(image, user_id="ABCDEF0123456789", municipality_code=MUNI, pins={"inkan": "2222"})
    image = CardImage.from_json(image.to_json())  # survives the image format
    card, client = _session(image)
    client.select_ap(jorei.AID)
    from mynaemu.tools.terminal.client import SecurityStatusNotSatisfied

    with pytest.raises(SecurityStatusNotSatisfied):
        client.read_binary(jorei.EF_USER_ID)
    assert client.tries_left(0x0012) == 3
    client.verify(0x0012, "2222")
    assert jorei.parse_user_id(client.read_binary(jorei.EF_USER_ID))["user_id"] == "ABCDEF0123456789"


def test_every_reason_has_an_exit_class():
    assert set(REASONS.values()) <= set(EXIT_CLASSES)
    assert len(set(REASONS.values())) == len(EXIT_CLASSES)

"""Pipeline personas: each made by the real workflow, its card image and store state agreeing."""
import datetime as dt
import itertools

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

from mynaemu.card.core import Card
from mynaemu.issuance import policy
from mynaemu.issuance.personalise import KEYS_PER_CARD
from mynaemu.issuance.pipeline_personas import PIPELINE_PERSONAS, build_pipeline_persona
from mynaemu.issuance.pki.revocation import build_crl
from mynaemu.issuance.store import Store
from mynaemu.issuance.lifecycle.workflow import Refused, Workflow

JST = policy.JST
# a date well inside the default TEST CAs' life (2015..2049), 4 years into an adult's card
AT = dt.datetime(2029, 6, 15, 12, 0, tzinfo=JST)


@pytest.fixture(scope="module")
def wf(tmp_path_factory):
    pool = itertools.cycle([rsa.generate_private_key(65537, 2048) for _ in range(KEYS_PER_CARD + 1)])
    store = Store.open(tmp_path_factory.mktemp("personas"))
    yield Workflow(store, operator="persona-test", terminal="t", key_factory=lambda: next(pool))
    store.close()


@pytest.fixture(scope="module")
def personas(wf):
    return {name: build_pipeline_persona(wf, name, at=AT, seed=3) for name in PIPELINE_PERSONAS}


def card_cert(image, fid, pin=None):
    card = Card(image)
    card.power_on()
    steps = ["00A4040C0AD392F000260100000001"]
    if pin:
        steps += ["00A4020C02001B", "0020008006" + pin.encode().hex()]
    steps += [f"00A4020C02{fid:04X}"]
    for apdu in steps:
        assert card.transmit(bytes.fromhex(apdu))[-2:] == b"\x90\x00", apdu
    response = card.transmit(bytes.fromhex("00B00000000000"))
    if response[-2:] != b"\x90\x00":
        return None
    return x509.load_der_x509_certificate(response[:-2])


def test_every_persona_is_built(personas):
    assert set(personas) == {"expired", "suspended", "revoked-after-move", "under15", "guardianship",
                             "not-yet-valid"}


def test_expired(personas, wf):
    p = personas["expired"]
    status = wf.status(p.id, at=AT)
    assert status["state"] == "expired" and status["auth_cert"]["status"] == "expired"     # VAL-12
    cert = card_cert(p.image, 0x000A)
    assert cert.not_valid_after_utc < AT
    assert dt.date.fromisoformat(status["card_expires"]) < AT.date()
    # not revoked: the OCSP/CRL view stays good; expiry is the verifier's date check
    assert wf.store.certificate_status("auth", cert.serial_number, AT).status == "good"


def test_suspended(personas, wf):
    p = personas["suspended"]
    status = wf.status(p.id, at=AT)
    assert status["state"] == "suspended"
    serials = {int(c["serial"], 16) for c in status["certificates"]}
    crl = build_crl(wf.pki.auth_ca, wf.store, at=AT, crl_number=1)
    assert card_cert(p.image, 0x000A).serial_number in {e.serial_number for e in crl} & serials
    assert {c["status"] for c in status["certificates"]} == {"hold"}                # FLOW-SUSP-3


def test_revoked_after_move(personas, wf):
    p = personas["revoked-after-move"]
    on_card = card_cert(p.image, 0x0001, pin=p.pins["sign"])
    state = wf.store.certificate_status("sign", on_card.serial_number, AT)
    assert state.status == "revoked" and state.reason == x509.ReasonFlags.superseded     # MOV-1
    assert wf.store.certificate_status("auth", card_cert(p.image, 0x000A).serial_number, AT).status == "good"
    assert wf.status(p.id, at=AT)["sign_cert"]["status"] == "good"     # the successor waits in the store


@pytest.mark.parametrize("name, setter", [("under15", "legal_representative"), ("guardianship", "holder")])
def test_auth_only_personas(personas, wf, name, setter):
    p = personas[name]
    status = wf.status(p.id, at=AT)
    assert status["sign_cert"] is None and status["auth_cert"]["status"] == "good"          # ELIG-2
    assert p.pins["sign"] is None
    row = wf.store.conn.execute("SELECT pins_set_by FROM deliveries WHERE application_id = ?", (p.id,)).fetchone()
    assert row[0] == setter                                                                  # ELIG-3
    card = Card(p.image)
    card.power_on()
    for apdu in ("00A4040C0AD392F000260100000001", "00A4020C020018", "0020008004" + b"1234".hex()):
        assert card.transmit(bytes.fromhex(apdu))[-2:] == b"\x90\x00"


def test_not_yet_valid(personas, wf):
    p = personas["not-yet-valid"]
    cert = card_cert(p.image, 0x000A)
    assert cert.not_valid_before_utc > AT
    assert wf.store.certificate_status("auth", cert.serial_number, AT).status == "unknown"
    assert wf.store.certificate_status("auth", cert.serial_number, AT + dt.timedelta(days=31)).status == "good"
    assert wf.status(p.id, at=AT)["state"] == "applied"


def test_expired_needs_an_instant_the_test_cas_cover(wf):
    with pytest.raises(Refused, match="TEST CAs start"):
        build_pipeline_persona(wf, "expired", at=dt.datetime(2018, 11, 22, tzinfo=JST))
    with pytest.raises(ValueError, match="unknown persona"):
        build_pipeline_persona(wf, "nobody", at=AT)

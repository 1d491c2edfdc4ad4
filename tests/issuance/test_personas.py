"""Personas and personalisation: each persona's state, the certificates and the signed data on it."""
import datetime as dt
import hashlib
import json

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from mynaemu.card.apps import kenhojo, kenkaku
from mynaemu.card.core import Card
from mynaemu.card.image import CardImage
from mynaemu.issuance.pki.ca import default_test_pki
from mynaemu.issuance.numbering import is_valid_individual_number
from mynaemu.issuance.personas import PERSONAS, build_persona

AID_J = "D392F000260100000001"
AID_H = "D3921000310001010408"
AID_K = "D3921000310001010402"
AT = dt.datetime(2026, 11, 22, 3, 0, tzinfo=dt.timezone.utc)


def session(image):
    card = Card(image)
    card.power_on()

    def tx(h):
        r = card.transmit(bytes.fromhex(h.replace(" ", "")))
        return r[:-2], r[-2:].hex().upper()
    return tx


def read_ef(tx, fid):
    assert tx(f"00A4020C02{fid:04X}")[1] == "9000"
    data, sw = tx("00B00000000000")
    assert sw == "9000"
    return data


@pytest.fixture(scope="module")
def adult():
    return build_persona("adult", seed=7, at=AT)


@pytest.fixture(scope="module")
def child():
    return build_persona("under15", seed=7, at=AT)


def test_adult_identity_is_synthetic_and_numbered(adult):
    _, info = adult
    assert is_valid_individual_number(info.identity.individual_number)   # rules.md §20 M2
    assert info.identity.age_on(info.issued) == PERSONAS["adult"].age
    assert len(info.shogo_b) == 14 and info.shogo_b.endswith(info.security_code)


def test_seeded_persona_is_reproducible(adult):
    again, info = build_persona("adult", seed=7, at=AT)
    assert again.to_json() == adult[0].to_json()
    other, _ = build_persona("adult", seed=8, at=AT)
    assert other.meta["individual_number"] != adult[0].meta["individual_number"]


def test_adult_certificates_chain_to_test_cas(adult):
    image, info = adult
    tx = session(image)
    tx("00A4040C0A" + AID_J)
    pki = default_test_pki()
    auth = x509.load_der_x509_certificate(read_ef(tx, 0x000A))
    auth_ca = x509.load_der_x509_certificate(read_ef(tx, 0x000B))
    assert auth_ca == pki.auth_ca.certificate and "TEST" in auth_ca.subject.rfc4514_string()
    auth.verify_directly_issued_by(auth_ca)
    assert tx("00A4020C020001")[1] == "9000" and tx("00B0000004")[1] == "6982"   # §3.1
    assert tx("0020009B06" + b"ABC123".hex())[1] == "9000"
    sign = x509.load_der_x509_certificate(read_ef(tx, 0x0001))
    sign.verify_directly_issued_by(x509.load_der_x509_certificate(read_ef(tx, 0x0002)))
    assert sign.not_valid_after_utc == auth.not_valid_after_utc                     # VAL-6
    assert auth.serial_number == info.auth_serial and sign.serial_number == info.sign_serial


def test_adult_auth_signature_verifies_with_certificate(adult):
    image, _ = adult
    tx = session(image)
    tx("00A4040C0A" + AID_J)
    auth = x509.load_der_x509_certificate(read_ef(tx, 0x000A))
    tx("00A4020C020018")
    assert tx("0020008004" + b"1234".hex())[1] == "9000"
    tx("00A4020C020017")
    di = bytes.fromhex("3031300d060960864801650304020105000420") + hashlib.sha256(b"nonce").digest()
    sig, sw = tx("802A008033" + di.hex() + "00")
    assert sw == "9000" and len(sig) == 256
    auth.public_key().verify(sig, b"nonce", padding.PKCS1v15(), hashes.SHA256())


def test_kenhojo_integrity_and_kenkaku_face_verify(adult):
    image, info = adult
    tx = session(image)
    tx("00A4040C0A" + AID_H)
    assert tx("0020009104" + b"1234".hex())[1] == "9000"
    efs = {fid: read_ef(tx, fid) for fid in (1, 2, 3, 4)}
    assert kenhojo.parse_my_number(efs[1]) == info.identity.individual_number
    assert kenhojo.verify_integrity(efs[1], efs[2], efs[3], efs[4])
    assert kenhojo.verify_cvc(efs[4], default_test_pki().cvc_issuer.key.public_key())
    b4 = kenhojo.parse_basic4(efs[2])
    assert b4["name"] == info.identity.name and b4["address"] == info.identity.address
    tampered = bytearray(efs[2]); tampered[-1] ^= 1
    assert not kenhojo.verify_integrity(efs[1], bytes(tampered), efs[3], efs[4])
    tx("00A4040C0A" + AID_K)
    assert tx("002000930C" + b"000000000000".hex())[1] == "63C9"      # 照合番号A, 10 tries [U]
    assert tx("002000930C" + info.identity.individual_number.encode().hex())[1] == "9000"
    face = read_ef(tx, 0x0002)
    assert kenkaku.verify_face(face, read_ef(tx, 0x0004))


def test_under15_has_no_signing_certificate(child):
    image, info = child
    assert info.sign_serial is None
    tx = session(image)
    tx("00A4040C0A" + AID_J)
    assert read_ef(tx, 0x0008)[0] != 0x8F and read_ef(tx, 0x0008)[1] == 0x8F     # §3.1 EF 0008
    assert tx("00A4020C020001")[1] == "6A82"
    assert tx("00A4020C02001A")[1] == "6A82"
    assert tx("00A4020C02001B")[1] == "9000" and tx("00200080")[1] == "63C0"   # OpenSC bind needs 63Cn
    assert tx("00A4020C020018")[1] == "9000" and tx("00200080")[1] == "63C3"


@pytest.mark.parametrize("persona,app,fid,expect", [
    ("auth-locked", AID_J, 0x0018, "63C0"),
    ("sign-1-left", AID_J, 0x001B, "63C1"),
    ("kenkaku-b-locked", AID_K, 0x0012, "63C0"),
])
def test_state_personas(persona, app, fid, expect):
    image, _ = build_persona(persona)
    tx = session(image)
    tx("00A4040C0A" + app)
    tx(f"00A4020C02{fid:04X}")
    assert tx("00200080")[1] == expect


def test_auth_locked_refuses_even_the_right_pin():
    image, _ = build_persona("auth-locked")
    tx = session(image)
    tx("00A4040C0A" + AID_J)
    assert tx("0020009804" + b"1234".hex())[1] == "6984"


def test_image_round_trips_through_json(adult, tmp_path):
    image, _ = adult
    path = tmp_path / "c.json"
    image.save(path)
    assert CardImage.load(path).to_json() == image.to_json()
    assert json.loads(path.read_text("utf-8"))["format"] == "mynaemu-card-image"

"""asn1crypto where the project once encoded DER by hand: the JPKI subjectAltName otherName values
(built and parsed) and the public-key bits an OCSP CertID hashes."""
from __future__ import annotations

import datetime as _dt
import hashlib

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from hypothesis import given, settings
from hypothesis import strategies as st

from mynaemu.issuance.pki import ocsp, profiles
from mynaemu.issuance.pki.ca import default_test_pki
from mynaemu.issuance.identity import Identity
from mynaemu.issuance.numbering import individual_number_from_juminhyo_code

AT = _dt.datetime(2026, 7, 1, 12, tzinfo=_dt.timezone.utc)


def _identity(name="見本\u3000花子", address="東京都清瀬市試験町１丁目２番３号　グランド見本マンション１２０３号室"):
    return Identity(name=name, address=address, birth=_dt.date(1990, 4, 1), sex="2",
                    individual_number=individual_number_from_juminhyo_code("12345678901", b"t"),
                    juminhyo_code="12345678901", municipality_code="13221")


@given(st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x9FFF,
                                      blacklist_categories=("Cs", "Cc", "Cf", "Co", "Cn", "Zl", "Zp")),
               min_size=0, max_size=300))
@settings(max_examples=200, deadline=None)
def test_utf8_string_der_matches_the_hand_rule(text):
    raw = text.encode("utf-8")
    n = len(raw)
    length = bytes([n]) if n < 0x80 else bytes([0x80 | ((n.bit_length() + 7) // 8)]) + n.to_bytes(
        (n.bit_length() + 7) // 8, "big")
    assert profiles.utf8_string_der(text) == b"\x0c" + length + raw


def test_signing_certificate_basic4_round_trips():
    identity = _identity()
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert = default_test_pki().ca("sign").issue_sign(key.public_key(), identity, serial=0x0705D990, issue_id="TEST0001",
                                                    not_before=AT, not_after=AT + _dt.timedelta(days=365))
    parsed = profiles.parse_sign_san(cert)
    assert parsed["name"] == identity.name and parsed["address"] == identity.address
    assert parsed["sex"] == "2"
    assert parsed["birth"] == dict(profiles.sign_san_values(identity))[profiles.OID_BIRTH]
    assert len(parsed["name_alt"]) == len(identity.name)


def test_parse_refuses_what_is_not_a_signing_certificate():
    auth = default_test_pki().ca("auth").certificate
    with pytest.raises(ValueError, match="subjectAltName"):
        profiles.parse_sign_san(auth)
    # an otherName whose value is not a UTF8String (an OCTET STRING here)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "TEST")])
    bad = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
           .serial_number(1).not_valid_before(AT).not_valid_after(AT + _dt.timedelta(days=1))
           .add_extension(x509.SubjectAlternativeName([x509.OtherName(profiles.OID_NAME, b"\x04\x01A")]),
                          critical=False)
           .sign(key, __import__("cryptography.hazmat.primitives.hashes", fromlist=["SHA256"]).SHA256()))
    with pytest.raises(ValueError, match="UTF8String"):
        profiles.parse_sign_san(bad)


def test_public_key_bits_are_the_rfc5280_key_id_input():
    for key in (rsa.generate_private_key(public_exponent=65537, key_size=2048),
                ec.generate_private_key(ec.SECP256R1())):
        bits = ocsp.public_key_bits(key.public_key())
        ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())   # SHA-1 of the same bits
        assert hashlib.sha1(bits).digest() == ski.digest
        if isinstance(key, rsa.RSAPrivateKey):
            der = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.PKCS1)
            assert bits == der


def test_card_info_prints_the_basic4_of_the_signing_certificate(tmp_path):
    from click.testing import CliRunner

    from mynaemu.tools.cli import main

    card = tmp_path / "adult.json"
    runner = CliRunner()
    assert runner.invoke(main, ["card", "create", "--persona", "adult", "-o", str(card)]).exit_code == 0
    from mynaemu.card.image import CardImage

    image = CardImage.load(card)
    der = image.application("jpki").efs[0x0001].data
    from mynaemu.card import tlv

    expected = profiles.parse_sign_san(x509.load_der_x509_certificate(tlv.decode_one(der).raw))
    plain = runner.invoke(main, ["card", "info", str(card)])
    assert plain.exit_code == 0 and f"signing certificate 基本4情報: name {expected['name']}" in plain.output
    assert expected["address"] not in plain.output                     # personal data only with --reveal
    revealed = runner.invoke(main, ["card", "info", str(card), "--reveal"])
    assert expected["address"] in revealed.output and expected["birth"] in revealed.output
    import json

    doc = json.loads(runner.invoke(main, ["card", "info", str(card), "--json", "--reveal"]).output)
    assert doc["signing_certificate_basic4"] == {k: expected[k] for k in ("name", "birth", "sex", "address")}
    under15 = tmp_path / "u15.json"
    runner.invoke(main, ["card", "create", "--persona", "under15", "-o", str(under15)])
    doc = json.loads(runner.invoke(main, ["card", "info", str(under15), "--json"]).output)
    assert doc["signing_certificate_basic4"] is None                     # no signing certificate (ELIG-2)

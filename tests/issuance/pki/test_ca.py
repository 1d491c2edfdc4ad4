"""TEST CAs and certificate profiles (card-interface.md §7): every profile point, checked in the DER."""
import datetime as dt
import json
import random

import pytest
from tests.support import REPO
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import ExtensionOID, NameOID, SignatureAlgorithmOID

from mynaemu.issuance.pki import ca as ca_mod
from mynaemu.issuance.pki import profiles
from mynaemu.issuance.pki.ca import CvcIssuer, TestCA, TestPKI, default_test_pki, make_issue_id
from mynaemu.issuance.identity import Identity
from mynaemu.issuance.pki.keys import derive_rng, generate_rsa_key
from mynaemu.issuance.numbering import with_check_digit

from pathlib import Path

UTC = dt.timezone.utc
VECTORS = REPO / "vectors" / "certs"
JPKI = "1.2.392.200149.8.5"

# --- a minimal DER reader, so the tests see the bytes themselves, not a library's view -----


def tlv(data: bytes, pos: int = 0):
    """(tag byte, value bytes, whole TLV bytes, next position) of the DER element at pos."""
    tag = data[pos]
    assert tag & 0x1F != 0x1F, "high tag numbers do not occur in these certificates"
    length = data[pos + 1]
    head = 2
    if length & 0x80:
        count = length & 0x7F
        assert 1 <= count <= 3
        length = int.from_bytes(data[pos + 2 : pos + 2 + count], "big")
        head += count
    end = pos + head + length
    assert end <= len(data)
    return tag, data[pos + head : end], data[pos:end], end


def children(value: bytes):
    out, pos = [], 0
    while pos < len(value):
        tag, val, whole, pos = tlv(value, pos)
        out.append((tag, val, whole))
    return out


def oid_text(value: bytes) -> str:
    first = value[0]
    parts = [first // 40, first % 40]
    n = 0
    for b in value[1:]:
        n = (n << 7) | (b & 0x7F)
        if not b & 0x80:
            parts.append(n)
            n = 0
    return ".".join(map(str, parts))


def tbs_fields(cert: x509.Certificate) -> dict:
    _, tbs, _, _ = tlv(cert.tbs_certificate_bytes)
    items = children(tbs)
    assert items[0][0] == 0xA0  # explicit version
    fields = dict(zip(["version", "serial", "sig", "issuer", "validity", "subject", "spki"], items))
    fields["extensions"] = items[7] if len(items) > 7 else None
    return fields


def name_atvs(name_value: bytes):
    """[(oid, string tag, text)] of an RDNSequence value, in DER order; one ATV per RDN."""
    out = []
    for tag, rdn, _ in children(name_value):
        assert tag == 0x31
        atvs = children(rdn)
        assert len(atvs) == 1
        (oid_t, oid_v, _), (str_t, str_v, _) = children(atvs[0][1])
        assert oid_t == 0x06
        out.append((oid_text(oid_v), str_t, str_v.decode("utf-8")))
    return out


def raw_extensions(cert):
    """[(oid, critical, extnValue bytes)] in certificate order, from the DER."""
    ext_field = tbs_fields(cert)["extensions"]
    assert ext_field[0] == 0xA3
    (_, seq, _), = children(ext_field[1])
    out = []
    for _, ext, _ in children(seq):
        parts = children(ext)
        critical = len(parts) == 3 and parts[1][1] == b"\xff"
        assert parts[-1][0] == 0x04
        out.append((oid_text(parts[0][1]), critical, parts[-1][1]))
    return out


PRINTABLE, UTF8, UTCTIME = 0x13, 0x0C, 0x17
C, O, OU, L, CN = "2.5.4.6", "2.5.4.10", "2.5.4.11", "2.5.4.7", "2.5.4.3"


def all_strings(cert) -> list[str]:
    """Every human-readable string in a certificate's names and extensions."""
    names = [cert.subject, cert.issuer]
    strings = []
    for ext in cert.extensions:
        value = ext.value
        if isinstance(value, x509.SubjectAlternativeName):
            for gn in value:
                if isinstance(gn, x509.DirectoryName):
                    names.append(gn.value)
                elif isinstance(gn, x509.OtherName):
                    strings.append(gn.value[2:].decode("utf-8"))
        if isinstance(value, x509.CRLDistributionPoints):
            for dp in value:
                names += [gn.value for gn in dp.full_name]
    for name in names:
        strings += [attr.value for attr in name]
    return strings


def assert_no_untested_jlis(cert):
    for s in all_strings(cert):
        lowered = s.lower()
        if any(k in lowered for k in ("j-lis", "jpki", "local authority", "地方公共団体情報システム機構", "公的個人認証")):
            assert "TEST" in s, s
    der = cert.public_bytes(serialization.Encoding.DER)
    assert "地方公共団体情報システム機構".encode() not in der
    assert b"Japan Agency for Local Authority" not in der


# --- fixtures --------------------------------------------------------------------------------
NOT_BEFORE = dt.datetime(2025, 1, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def pki() -> TestPKI:
    return default_test_pki()


@pytest.fixture(scope="module")
def ee_key():
    return generate_rsa_key(rng=derive_rng("test_ca", "ee"))


@pytest.fixture(scope="module")
def identity():
    return Identity(
        name="試験　花子",
        address="東京都清瀬市中里５丁目８４２番地",
        birth=dt.date(1980, 2, 17),
        sex="2",
        individual_number=with_check_digit("12345678901"),
        juminhyo_code="98765432109",
        municipality_code="13221",
        prefecture_romaji="Tokyo-to",
        city_romaji="Kiyose-shi",
        name_alt="00100",
    )


@pytest.fixture(scope="module")
def auth_cert(pki, ee_key):
    return pki.auth_ca.issue_auth(
        ee_key.public_key(), serial=0x1234, issue_id="997794E9AGCIEG13221003A",
        not_before=dt.datetime(2026, 3, 1, 9, 30, 15, 123456, tzinfo=dt.timezone(dt.timedelta(hours=9))),
        not_after=dt.datetime(2030, 2, 17, 14, 59, 59, tzinfo=UTC),
    )


@pytest.fixture(scope="module")
def sign_cert(pki, ee_key, identity):
    return pki.sign_ca.issue_sign(
        ee_key.public_key(), identity, serial=(1 << 100) + 5, issue_id="123456ABCDEFGH13221004B",
        not_before=dt.datetime(2026, 3, 1, tzinfo=UTC), not_after=dt.datetime(2030, 2, 17, 14, 59, 59, tzinfo=UTC),
    )


# --- CA certificates (§7.1) ------------------------------------------------------------------
@pytest.mark.parametrize("kind,unit", [("auth", "JPKI for user authentication TEST"), ("sign", "JPKI for digital signature TEST")])
def test_ca_certificate_profile(pki, kind, unit):
    ca = pki.ca(kind)
    cert = ca.certificate
    assert ca.kind == kind
    assert cert.version == x509.Version.v3
    assert cert.signature_algorithm_oid == SignatureAlgorithmOID.RSA_WITH_SHA256
    pub = cert.public_key()
    assert isinstance(pub, rsa.RSAPublicKey) and pub.key_size == 2048 and pub.public_numbers().e == 65537
    # self-signed and the signature verifies under its own key
    assert cert.subject == cert.issuer
    pub.verify(cert.signature, cert.tbs_certificate_bytes, padding.PKCS1v15(), hashes.SHA256())
    fields = tbs_fields(cert)
    expected = [(C, PRINTABLE, "JP"), (O, UTF8, "JPKI-TEST"), (OU, UTF8, unit), (OU, UTF8, "mynaemu TEST CA (not J-LIS)")]
    assert name_atvs(fields["subject"][1]) == expected
    assert name_atvs(fields["issuer"][1]) == expected
    # 2015 .. the end of UTCTime (issuance/pki/ca.py DEFAULT_*), UTCTime
    assert cert.not_valid_before_utc == dt.datetime(2015, 1, 1, tzinfo=UTC)
    assert cert.not_valid_after_utc == dt.datetime(2049, 12, 31, 23, 59, 59, tzinfo=UTC)
    assert [t for t, _, _ in children(fields["validity"][1])] == [UTCTIME, UTCTIME]
    # serial: 8 positive DER octets
    assert fields["serial"][0] == 0x02 and len(fields["serial"][1]) == 8 and fields["serial"][1][0] < 0x80
    # extensions in order, with criticality
    exts = raw_extensions(cert)
    assert [(o, c) for o, c, _ in exts] == [
        ("2.5.29.15", True), ("2.5.29.17", False), ("2.5.29.19", True), ("2.5.29.31", False), ("2.5.29.14", False)]
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert ku.key_cert_sign and ku.crl_sign and not ku.digital_signature and not ku.content_commitment
    assert exts[0][2] == bytes.fromhex("03020106")  # keyCertSign(5) + cRLSign(6)
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    (san,) = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert isinstance(san, x509.DirectoryName)
    alt_unit = "公的個人認証サービス利用者証明用 TEST" if kind == "auth" else "公的個人認証サービス署名用 TEST"
    assert [(a.oid.dotted_string, a.value) for a in san.value] == [
        (C, "JP"), (O, "公的個人認証サービス TEST"), (OU, alt_unit), (OU, "mynaemu TEST 認証局 (J-LIS ではありません)")]
    (dp,) = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    assert dp.full_name == [x509.DirectoryName(cert.subject)] and dp.relative_name is None
    ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert ski == x509.SubjectKeyIdentifier.from_public_key(pub)
    assert_no_untested_jlis(cert)


def test_ca_create_is_reproducible_from_rng_and_validates():
    key = generate_rsa_key(rng=derive_rng("test_ca", "ca-key"))
    a = TestCA.create("auth", key=key, rng=random.Random(5), not_before=dt.datetime(2024, 2, 29, tzinfo=UTC), years=4)
    b = TestCA.create("auth", key=key, rng=random.Random(5), not_before=dt.datetime(2024, 2, 29, tzinfo=UTC), years=4)
    assert a.certificate.public_bytes(serialization.Encoding.DER) == b.certificate.public_bytes(serialization.Encoding.DER)
    assert a.generation == "2026"
    # 29 February plus 4 years is 29 February; plus 1 year is 28 February
    assert a.certificate.not_valid_after_utc == dt.datetime(2028, 2, 28, 23, 59, 59, tzinfo=UTC)
    c = TestCA.create("sign", key=key, not_before=dt.datetime(2024, 2, 29, tzinfo=UTC), years=1)
    assert c.certificate.not_valid_after_utc == dt.datetime(2025, 2, 27, 23, 59, 59, tzinfo=UTC)
    assert c.certificate.serial_number != a.certificate.serial_number
    with pytest.raises(ValueError, match="kind"):
        TestCA.create("root", key=key, not_before=NOT_BEFORE)
    with pytest.raises(ValueError, match="timezone-aware"):
        TestCA.create("auth", key=key, not_before=dt.datetime(2025, 1, 1))
    with pytest.raises(ValueError, match="UTCTime"):
        TestCA.create("auth", key=key, not_before=dt.datetime(2045, 1, 1, tzinfo=UTC), years=10)
    with pytest.raises(ValueError, match="years"):
        TestCA.create("auth", key=key, not_before=NOT_BEFORE, years=0)
    with pytest.raises(ValueError, match="RSA-2048"):
        TestCA.create("auth", key=generate_rsa_key(1024, rng=random.Random(1)), not_before=NOT_BEFORE)
    with pytest.raises(ValueError, match="generation"):
        TestCA.create("auth", key=key, not_before=NOT_BEFORE, generation="v2")
    # a certificate that does not match the key is refused
    with pytest.raises(ValueError, match="does not certify"):
        TestCA("auth", generate_rsa_key(), a.certificate)
    with pytest.raises(ValueError, match="not a sign TEST CA"):
        TestCA("sign", key, a.certificate)


# --- auth end entity (§7.2) -------------------------------------------------------------------
def test_auth_certificate_profile(pki, auth_cert, ee_key):
    cert = auth_cert
    assert cert.version == x509.Version.v3
    assert cert.signature_algorithm_oid == SignatureAlgorithmOID.RSA_WITH_SHA256
    assert cert.public_key() == ee_key.public_key()
    assert cert.issuer == pki.auth_ca.certificate.subject
    fields = tbs_fields(cert)
    assert name_atvs(fields["subject"][1]) == [(C, PRINTABLE, "JP"), (CN, UTF8, "997794E9AGCIEG13221003A")]
    assert cert.serial_number == 0x1234
    # aware JST input -> UTC, microseconds dropped, UTCTime
    assert cert.not_valid_before_utc == dt.datetime(2026, 3, 1, 0, 30, 15, tzinfo=UTC)
    assert cert.not_valid_after_utc == dt.datetime(2030, 2, 17, 14, 59, 59, tzinfo=UTC)
    validity = children(fields["validity"][1])
    assert [t for t, _, _ in validity] == [UTCTIME, UTCTIME]
    assert validity[0][1] == b"260301003015Z"
    exts = raw_extensions(cert)
    assert [(o, c) for o, c, _ in exts] == [
        ("2.5.29.15", True), ("2.5.29.32", False), ("2.5.29.31", False), ("2.5.29.35", False)]
    assert exts[0][2] == bytes.fromhex("03020780")  # digitalSignature only
    policies = cert.extensions.get_extension_for_class(x509.CertificatePolicies).value
    assert [p.policy_identifier.dotted_string for p in policies] == [f"{JPKI}.1.0.30"]
    assert all(p.policy_qualifiers is None for p in policies)
    (dp,) = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    (dn,) = dp.full_name
    assert [(a.oid.dotted_string, a.value) for a in dn.value] == [
        (C, "JP"), (O, "JPKI-TEST"), (OU, "JPKI for user authentication TEST"), (OU, "CRL Distribution Points")]
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == pki.auth_ca.subject_key_identifier.digest
    assert aki.authority_cert_issuer is None and aki.authority_cert_serial_number is None
    # no personal attributes, no EKU, no SAN (decision documented in profiles.py)
    for absent in (ExtensionOID.SUBJECT_ALTERNATIVE_NAME, ExtensionOID.EXTENDED_KEY_USAGE):
        with pytest.raises(x509.ExtensionNotFound):
            cert.extensions.get_extension_for_oid(absent)
    # chain: the CA key verifies the EE signature
    pki.auth_ca.certificate.public_key().verify(
        cert.signature, cert.tbs_certificate_bytes, padding.PKCS1v15(), hashes.SHA256())
    cert.verify_directly_issued_by(pki.auth_ca.certificate)
    with pytest.raises(Exception):
        cert.verify_directly_issued_by(pki.sign_ca.certificate)
    assert_no_untested_jlis(cert)


# --- signing end entity (§7.3) -----------------------------------------------------------------
def test_sign_certificate_profile(pki, sign_cert, identity):
    cert = sign_cert
    assert cert.version == x509.Version.v3
    assert cert.signature_algorithm_oid == SignatureAlgorithmOID.RSA_WITH_SHA256
    fields = tbs_fields(cert)
    assert name_atvs(fields["subject"][1]) == [
        (C, PRINTABLE, "JP"), (L, UTF8, "Tokyo-to"), (L, UTF8, "Kiyose-shi"), (CN, UTF8, "123456ABCDEFGH13221004B")]
    assert name_atvs(fields["issuer"][1])[2] == (OU, UTF8, "JPKI for digital signature TEST")
    assert cert.serial_number == (1 << 100) + 5
    assert [t for t, _, _ in children(fields["validity"][1])] == [UTCTIME, UTCTIME]
    exts = raw_extensions(cert)
    assert [(o, c) for o, c, _ in exts] == [
        ("2.5.29.15", True), ("2.5.29.17", False), ("2.5.29.32", False), ("2.5.29.31", False), ("2.5.29.35", False)]
    assert exts[0][2] == bytes.fromhex("030206C0") == profiles.SIGN_KEY_USAGE_DER
    # subjectAltName: otherName [0] { OID, [0] EXPLICIT UTF8String }, order .1 .4 .3 .5 .2 .6
    (seq_tag, seq, _), = children(exts[1][2])
    assert seq_tag == 0x30
    entries = []
    for tag, other, _ in children(seq):
        assert tag == 0xA0
        (oid_t, oid_v, _), (exp_t, exp_v, _) = children(other)
        assert oid_t == 0x06 and exp_t == 0xA0
        (str_t, str_v, _), = children(exp_v)
        assert str_t == UTF8
        entries.append((oid_text(oid_v), str_v.decode("utf-8")))
    assert entries == [
        (f"{JPKI}.5.1", "試験　花子"),
        (f"{JPKI}.5.4", "319800217"),  # 昭和 = 3, then the Gregorian date
        (f"{JPKI}.5.3", "2"),
        (f"{JPKI}.5.5", "東京都清瀬市中里５丁目８４２番地"),
        (f"{JPKI}.5.2", "00100"),
        (f"{JPKI}.5.6", "0" * len(identity.address)),
    ]
    policies = cert.extensions.get_extension_for_class(x509.CertificatePolicies).value
    assert [p.policy_identifier.dotted_string for p in policies] == [f"{JPKI}.1.0.20"]
    (dp,) = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    assert dp.relative_name is None and dp.reasons is None and dp.crl_issuer is None
    (gn,) = dp.full_name
    dn_der = gn.value.public_bytes()
    _, dn_value, _, _ = tlv(dn_der)
    assert name_atvs(dn_value) == [
        (C, PRINTABLE, "JP"), (O, UTF8, "JPKI-TEST"), (OU, UTF8, "JPKI for digital signature TEST"),
        (OU, UTF8, "CRL Distribution Points"), (OU, UTF8, "Tokyo-to"), (CN, UTF8, "Kiyose-shi")]
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == pki.sign_ca.subject_key_identifier.digest
    pki.sign_ca.certificate.public_key().verify(
        cert.signature, cert.tbs_certificate_bytes, padding.PKCS1v15(), hashes.SHA256())
    cert.verify_directly_issued_by(pki.sign_ca.certificate)
    assert_no_untested_jlis(cert)


def test_sign_birth_uses_era_digit(pki, ee_key, identity):
    import dataclasses

    reiwa = dataclasses.replace(identity, birth=dt.date(2019, 5, 1))
    cert = pki.sign_ca.issue_sign(ee_key.public_key(), reiwa, serial=9, issue_id="X1",
                                  not_before=NOT_BEFORE, not_after=dt.datetime(2026, 1, 1, tzinfo=UTC))
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    birth = [gn.value for gn in san if gn.type_id.dotted_string == f"{JPKI}.5.4"]
    assert birth == [b"\x0c\x09" + b"520190501"]


# --- issuing errors ----------------------------------------------------------------------------
def test_issue_rejects_bad_requests(pki, ee_key, identity):
    pub = ee_key.public_key()
    ok = dict(serial=1, issue_id="ABC123", not_before=NOT_BEFORE, not_after=dt.datetime(2026, 1, 1, tzinfo=UTC))
    with pytest.raises(ValueError, match="auth CA"):
        pki.auth_ca.issue_sign(pub, identity, **ok)
    with pytest.raises(ValueError, match="sign CA"):
        pki.sign_ca.issue_auth(pub, **ok)
    with pytest.raises(ValueError, match="timezone-aware"):
        pki.auth_ca.issue_auth(pub, **{**ok, "not_before": dt.datetime(2025, 6, 1)})
    with pytest.raises(TypeError, match="datetime"):
        pki.auth_ca.issue_auth(pub, **{**ok, "not_after": dt.date(2026, 1, 1)})
    with pytest.raises(ValueError, match="earlier than"):
        pki.auth_ca.issue_auth(pub, **{**ok, "not_after": NOT_BEFORE})
    with pytest.raises(ValueError, match="UTCTime"):
        pki.auth_ca.issue_auth(pub, **{**ok, "not_after": dt.datetime(2050, 6, 1, tzinfo=UTC)})
    short_ca = TestCA.create("auth", not_before=dt.datetime(2026, 1, 1, tzinfo=UTC), years=10)
    with pytest.raises(ValueError, match="outside the CA"):
        short_ca.issue_auth(pub, **{**ok, "not_before": dt.datetime(2026, 6, 1, tzinfo=UTC),
                                    "not_after": dt.datetime(2036, 6, 1, tzinfo=UTC)})
    with pytest.raises(ValueError, match="outside the CA"):
        pki.auth_ca.issue_auth(pub, **{**ok, "not_before": dt.datetime(2014, 12, 31, tzinfo=UTC)})
    for serial in (0, -5, 1 << 159):
        with pytest.raises(ValueError, match="serial"):
            pki.auth_ca.issue_auth(pub, **{**ok, "serial": serial})
    with pytest.raises(TypeError, match="serial"):
        pki.auth_ca.issue_auth(pub, **{**ok, "serial": "1"})
    for bad_id in ("", "abc", "A B", "Ａ1", "A" * 65):
        with pytest.raises(ValueError, match="issue_id"):
            pki.auth_ca.issue_auth(pub, **{**ok, "issue_id": bad_id})
    with pytest.raises(TypeError, match="RSA"):
        pki.auth_ca.issue_auth(ec.generate_private_key(ec.SECP256R1()).public_key(), **ok)
    with pytest.raises(ValueError, match="RSA-2048"):
        pki.auth_ca.issue_auth(generate_rsa_key(1024, rng=random.Random(2)).public_key(), **ok)
    with pytest.raises(TypeError, match="Identity"):
        pki.sign_ca.issue_sign(pub, {"name": "x"}, **ok)
    import dataclasses

    with pytest.raises(ValueError, match="name_alt"):
        pki.sign_ca.issue_sign(pub, dataclasses.replace(identity, name_alt="0"), **ok)
    with pytest.raises(ValueError, match="city"):
        pki.sign_ca.issue_sign(pub, dataclasses.replace(identity, city_romaji=""), **ok)


# --- issue ids ------------------------------------------------------------------------------------
def test_make_issue_id():
    ids = [make_issue_id(random.Random(i), "13221") for i in range(200)]
    for issue_id in ids:
        assert len(issue_id) == 23 and profiles.ISSUE_ID_RE.fullmatch(issue_id)
        assert issue_id[:6].isdigit() and issue_id[14:19] == "13221" and issue_id[19:22].isdigit()
        assert issue_id[22].isalpha()
    assert len(set(ids)) == 200
    assert make_issue_id(random.Random(3), "01100") == make_issue_id(random.Random(3), "01100")
    assert any(c.isalpha() for i in ids for c in i[6:14])
    for bad in ("1322", "132210", "1322a", 13221):
        with pytest.raises(ValueError, match="municipality_code"):
            make_issue_id(random.Random(1), bad)
    with pytest.raises(TypeError):
        make_issue_id(None, "13221")


# --- CVC issuer ---------------------------------------------------------------------------------------
def test_cvc_issuer(pki, ee_key):
    issuer = pki.cvc_issuer
    # §13.1: the TEST CVC CA names itself by a card-form key id in the 6… series
    assert len(issuer.key_id) == 16 and issuer.key_id[:9] == b"6000023\x08\x05"
    assert issuer.key_id_text.startswith("6000023/")
    assert issuer.key.key_size == 2048
    subject_id = b"6000033\x08\x05007" + bytes(4)
    cvc = issuer.issue_cvc(subject_id, ee_key.public_key())
    assert len(cvc) == 568 and cvc[:5] == bytes.fromhex("7F21820233")
    assert cvc[5:10] == bytes.fromhex("5F4E820129")
    body = cvc[10:307]
    assert body[:16] == issuer.key_id and body[16:32] == subject_id
    assert body[32:41] == bytes.fromhex("9003010001 91820100")
    assert int.from_bytes(body[41:], "big") == ee_key.public_key().public_numbers().n
    assert cvc[307:312] == bytes.fromhex("5F37820100")
    issuer.public_key.verify(cvc[312:], body, padding.PKCS1v15(), hashes.SHA256())
    got_id, got_key = issuer.verify_cvc(cvc)
    assert got_id == subject_id and got_key == ee_key.public_key()
    tampered = bytearray(cvc)
    tampered[100] ^= 1
    with pytest.raises(ValueError, match="signature"):
        issuer.verify_cvc(bytes(tampered))
    with pytest.raises(ValueError, match="568"):
        issuer.verify_cvc(cvc[:-1])
    with pytest.raises(ValueError, match="16 bytes"):
        issuer.issue_cvc(b"short", ee_key.public_key())
    with pytest.raises(ValueError, match="6… series"):
        CvcIssuer(issuer.key, b"5000023\x08\x05001" + bytes(4))
    with pytest.raises(ValueError, match="§13.1 form"):
        CvcIssuer(issuer.key, b"TESTCVCA" + bytes(8))
    with pytest.raises(ValueError, match="7 ASCII digits"):
        issuer.issue_cvc(b"TESTCARD" + bytes(range(8)), ee_key.public_key())
    with pytest.raises(ValueError, match="08 05"):
        issuer.issue_cvc(b"6000033\x08\x06007" + bytes(4), ee_key.public_key())
    a = CvcIssuer.create(key=issuer.key, rng=random.Random(4))
    assert a.key_id == CvcIssuer.create(key=issuer.key, rng=random.Random(4)).key_id != issuer.key_id
    with pytest.raises(ValueError, match="another key id"):
        a.verify_cvc(cvc)


# --- the default PKI: vectors, process cache, disk cache ---------------------------------------------
def test_default_pki_reproduces_vectors_byte_for_byte(pki):
    built = ca_mod.build_default_test_pki()  # from scratch, not from any cache
    for name, ca in (("auth_ca.pem", built.auth_ca), ("sign_ca.pem", built.sign_ca)):
        vector = (VECTORS / name).read_bytes()
        assert ca.certificate_pem == vector
        assert pki.ca(ca.kind).certificate_pem == vector
    assert built.cvc_issuer.key_id == pki.cvc_issuer.key_id
    assert built.cvc_issuer.key.private_numbers() == pki.cvc_issuer.key.private_numbers()
    assert built.auth_ca.key.private_numbers() == pki.auth_ca.key.private_numbers()
    assert built.auth_ca.generation == "2015"
    assert default_test_pki() is default_test_pki()


def test_disk_cache_is_used_and_corruption_is_repaired(tmp_path, monkeypatch, pki):
    cache = tmp_path / "sub" / "test-pki.json"
    first = ca_mod.load_or_build_test_pki(cache)
    assert cache.exists()
    assert first.auth_ca.certificate_pem == pki.auth_ca.certificate_pem

    calls = []

    def counting_build():
        # stands in for the ~1 s generation (its reproducibility is tested above)
        calls.append(1)
        return first

    monkeypatch.setattr(ca_mod, "build_default_test_pki", counting_build)
    again = ca_mod.load_or_build_test_pki(cache)
    assert calls == [] and again.to_json() == first.to_json()

    good = cache.read_text()
    doc = json.loads(good)
    mismatched = dict(doc, sign_ca=dict(doc["sign_ca"], key=doc["auth_ca"]["key"]))
    for corrupt in ("", "{not json", good[: len(good) // 2], json.dumps({"format": "other"}),
                    json.dumps(dict(doc, version=doc["version"] + 1)), json.dumps(mismatched),
                    json.dumps(dict(doc, cvc_issuer={"key": doc["cvc_issuer"]["key"], "key_id": "00"}))):
        cache.write_text(corrupt)
        rebuilt = ca_mod.load_or_build_test_pki(cache)
        assert rebuilt.to_json() == first.to_json()
        assert json.loads(cache.read_text()) == doc  # rewritten
    cache.write_bytes(b"\xff\xfe\x00garbage")
    assert ca_mod.load_or_build_test_pki(cache).to_json() == first.to_json()
    assert len(calls) == 8


def test_unwritable_cache_still_returns(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    pki = ca_mod.load_or_build_test_pki(blocker / "cannot" / "test-pki.json")
    assert pki.sign_ca.kind == "sign"


def test_default_cache_location():
    import platformdirs

    path = ca_mod.default_cache_file()
    assert path.parent == Path(platformdirs.user_cache_dir("mynaemu"))
    assert path.name.startswith(f"test-pki-v{ca_mod.PKI_CACHE_VERSION}-") and path.suffix == ".json"
    assert path == ca_mod.default_cache_file()  # stable within one source tree


def test_create_rejects_a_public_key_as_ca_key(ee_key):
    with pytest.raises(TypeError, match="private key"):
        TestCA.create("auth", key=ee_key.public_key(), not_before=NOT_BEFORE)

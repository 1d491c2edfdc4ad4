"""JPKI-shaped TEST certificate profiles: names, OIDs, extensions, validity and issue ids.

This module says WHAT goes into each certificate of the TEST hierarchy (card-interface.md §7);
issuance/pki/ca.py signs. Every name says TEST: nothing here claims to be J-LIS or the real JPKI.

Profiles (spec section, then the decisions we took where the sources leave a point [U]):

- CA (§7.1): self-signed v3, RSA-2048, sha256WithRSAEncryption, 10 years. Subject = issuer
  `C=JP, O=JPKI-TEST, OU=JPKI for user authentication TEST | JPKI for digital signature TEST,
  OU=mynaemu TEST CA (not J-LIS)` (C PrintableString, the rest UTF8String). Extensions, in this
  order: KeyUsage critical keyCertSign+cRLSign; subjectAltName directoryName in the §7.1 style
  (Japanese names, marked TEST); BasicConstraints critical CA:TRUE; CRL Distribution Points with
  fullName directoryName = the CA DN; subjectKeyIdentifier. No AKI (§7.1 lists none).
- Auth end entity (§7.2): subject `C=JP, CN=<issue id>` (DER order C then CN), no personal
  attributes. KeyUsage critical digitalSignature. certificatePolicies with the TEST OID
  1.2.392.200149.8.5.1.0.30: production uses 1.2.392.200149.8.5.1.3.30, and the test
  environment uses the .0. arc for signing (.0.20), so we use .0.30 for auth; this OID is OUR
  choice, not observed. [U] decisions: certificatePolicies non-critical, no CPS qualifier (the
  production URL belongs to J-LIS); CRLDP directoryName `C=JP, O=JPKI-TEST, OU=JPKI for user
  authentication TEST, OU=CRL Distribution Points` (one CRL per auth CA, since the auth
  certificate carries no locality); AKI keyIdentifier; **no extendedKeyUsage** — the sources
  show none, and an absent EKU leaves the key usable for TLS client authentication as well as
  for the login-signature flows relying parties use, while adding one would only narrow it.
- Signing end entity (§7.3): subject `C=JP, L=<prefecture>, L=<city>, CN=<issue id>` (romaji
  localities, UTF8String). KeyUsage critical digitalSignature+nonRepudiation, DER `03 02 06 C0`.
  subjectAltName non-critical: otherName entries `[0] {OID, [0] EXPLICIT UTF8String}` in the
  order .1 name, .4 birth (EYYYYMMDD), .3 sex, .5 address, .2 name-alt flags, .6 address-alt
  flags (OIDs 1.2.392.200149.8.5.5.x). certificatePolicies 1.2.392.200149.8.5.1.0.20 (the
  test-environment OID). [U] decisions: policies non-critical (ZKM's circuit rejects unknown
  critical extensions and a real card passed it), no CPS qualifier. CRLDP fullName directoryName
  `C=JP, O=JPKI-TEST, OU=JPKI for digital signature TEST, OU=CRL Distribution Points,
  OU=<prefecture>, CN=<city>`. AKI keyIdentifier. No SKI, AIA or issuerAltName (§7.3: unknown).
- Validity: timezone-aware datetimes in, converted to UTC and truncated to whole seconds;
  every date must fall in 1950..2049 so it is encoded as UTCTime (§7.3).
- Issue ids (§7.2 test card: `997794E9AGCIEG13221003A`): 23 opaque upper-case alphanumerics,
  6 digits + 8 alphanumerics + the 5-digit 全国地方公共団体コード + 3 digits + 1 letter.
"""
from __future__ import annotations

import datetime as _dt
import random
import re

from asn1crypto import core as asn1_core
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from mynaemu.issuance.identity import Identity, jpki_birth

AUTH = "auth"
SIGN = "sign"
KINDS = (AUTH, SIGN)

# --- OIDs -----------------------------------------------------------------------------------
JPKI_ARC = "1.2.392.200149.8.5"
# certificatePolicies (§7.2, §7.3). Production OIDs are listed for reference only; the TEST
# hierarchy never uses them.
PRODUCTION_AUTH_POLICY = x509.ObjectIdentifier(f"{JPKI_ARC}.1.3.30")
PRODUCTION_SIGN_POLICY = x509.ObjectIdentifier(f"{JPKI_ARC}.1.1.20")
TEST_SIGN_POLICY = x509.ObjectIdentifier(f"{JPKI_ARC}.1.0.20")  # JPKI test environment (§7.3)
TEST_AUTH_POLICY = x509.ObjectIdentifier(f"{JPKI_ARC}.1.0.30")  # our TEST choice, see above
POLICY_OF_KIND = {AUTH: TEST_AUTH_POLICY, SIGN: TEST_SIGN_POLICY}

# subjectAltName otherName type ids of the signing certificate (§7.3 table)
OID_NAME = x509.ObjectIdentifier(f"{JPKI_ARC}.5.1")
OID_NAME_ALT = x509.ObjectIdentifier(f"{JPKI_ARC}.5.2")
OID_SEX = x509.ObjectIdentifier(f"{JPKI_ARC}.5.3")
OID_BIRTH = x509.ObjectIdentifier(f"{JPKI_ARC}.5.4")
OID_ADDRESS = x509.ObjectIdentifier(f"{JPKI_ARC}.5.5")
OID_ADDRESS_ALT = x509.ObjectIdentifier(f"{JPKI_ARC}.5.6")
# The order the entries appear in on the card (§7.3: .1, .4, .3, .5, .2, .6)
SAN_ORDER = (OID_NAME, OID_BIRTH, OID_SEX, OID_ADDRESS, OID_NAME_ALT, OID_ADDRESS_ALT)

# KeyUsage of the signing certificate, the exact DER the sources assert (§7.3)
SIGN_KEY_USAGE_DER = bytes.fromhex("030206C0")

# --- names ----------------------------------------------------------------------------------
ORGANIZATION = "JPKI-TEST"
CA_UNIT = {AUTH: "JPKI for user authentication TEST", SIGN: "JPKI for digital signature TEST"}
CA_OPERATOR_UNIT = "mynaemu TEST CA (not J-LIS)"
CRL_DP_UNIT = "CRL Distribution Points"
# §7.1 subjectAltName style: Japanese service and unit names, here marked TEST, and the
# operator named as mynaemu instead of 地方公共団体情報システム機構.
CA_ALT_ORGANIZATION = "公的個人認証サービス TEST"
CA_ALT_UNIT = {AUTH: "公的個人認証サービス利用者証明用 TEST", SIGN: "公的個人認証サービス署名用 TEST"}
CA_ALT_OPERATOR_UNIT = "mynaemu TEST 認証局 (J-LIS ではありません)"


def _kind(kind: str) -> str:
    if kind not in KINDS:
        raise ValueError(f"CA kind must be 'auth' or 'sign', got {kind!r}")
    return kind


def _text(value, what: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a str, got {type(value).__name__}")
    if not value or value != value.strip():
        raise ValueError(f"{what} must be non-empty without surrounding spaces, got {value!r}")
    return value


def _attr(oid, value: str) -> x509.NameAttribute:
    # cryptography encodes countryName as PrintableString and every other attribute here as
    # UTF8String by default, which is exactly the §7.1/§7.3 typing; tests check the DER.
    return x509.NameAttribute(oid, value)


def ca_name(kind: str) -> x509.Name:
    """Subject = issuer DN of the TEST CA of `kind` (§7.1 shape)."""
    _kind(kind)
    return x509.Name([
        _attr(NameOID.COUNTRY_NAME, "JP"),
        _attr(NameOID.ORGANIZATION_NAME, ORGANIZATION),
        _attr(NameOID.ORGANIZATIONAL_UNIT_NAME, CA_UNIT[kind]),
        _attr(NameOID.ORGANIZATIONAL_UNIT_NAME, CA_OPERATOR_UNIT),
    ])


def ca_alt_name(kind: str) -> x509.Name:
    """The directoryName in the CA's subjectAltName (§7.1 style, TEST)."""
    _kind(kind)
    return x509.Name([
        _attr(NameOID.COUNTRY_NAME, "JP"),
        _attr(NameOID.ORGANIZATION_NAME, CA_ALT_ORGANIZATION),
        _attr(NameOID.ORGANIZATIONAL_UNIT_NAME, CA_ALT_UNIT[kind]),
        _attr(NameOID.ORGANIZATIONAL_UNIT_NAME, CA_ALT_OPERATOR_UNIT),
    ])


ISSUE_ID_RE = re.compile(r"[0-9A-Z]{1,64}")


def check_issue_id(issue_id: str) -> str:
    """An issue id (the end-entity CN): 1..64 upper-case ASCII letters and digits."""
    if not isinstance(issue_id, str):
        raise TypeError(f"issue_id must be a str, got {type(issue_id).__name__}")
    if not ISSUE_ID_RE.fullmatch(issue_id):
        raise ValueError(f"issue_id must be 1-64 characters of 0-9A-Z, got {issue_id!r}")
    return issue_id


def auth_subject(issue_id: str) -> x509.Name:
    """`C=JP, CN=<issue id>` in this DER order (§7.2)."""
    return x509.Name([
        _attr(NameOID.COUNTRY_NAME, "JP"),
        _attr(NameOID.COMMON_NAME, check_issue_id(issue_id)),
    ])


def sign_subject(prefecture: str, city: str, issue_id: str) -> x509.Name:
    """`C=JP, L=<prefecture>, L=<city>, CN=<issue id>` (§7.3)."""
    return x509.Name([
        _attr(NameOID.COUNTRY_NAME, "JP"),
        _attr(NameOID.LOCALITY_NAME, _text(prefecture, "prefecture")),
        _attr(NameOID.LOCALITY_NAME, _text(city, "city")),
        _attr(NameOID.COMMON_NAME, check_issue_id(issue_id)),
    ])


def crl_dp_name(kind: str, prefecture: str | None = None, city: str | None = None) -> x509.Name:
    """The directoryName an end-entity certificate of `kind` names as its CRL distribution point.

    sign (§7.3): `C=JP, O=JPKI-TEST, OU=JPKI for digital signature TEST, OU=CRL Distribution
    Points, OU=<prefecture>, CN=<city>`. auth ([U], our choice): the same without the locality.
    """
    _kind(kind)
    attrs = [
        _attr(NameOID.COUNTRY_NAME, "JP"),
        _attr(NameOID.ORGANIZATION_NAME, ORGANIZATION),
        _attr(NameOID.ORGANIZATIONAL_UNIT_NAME, CA_UNIT[kind]),
        _attr(NameOID.ORGANIZATIONAL_UNIT_NAME, CRL_DP_UNIT),
    ]
    if kind == SIGN:
        attrs.append(_attr(NameOID.ORGANIZATIONAL_UNIT_NAME, _text(prefecture, "prefecture")))
        attrs.append(_attr(NameOID.COMMON_NAME, _text(city, "city")))
    elif prefecture is not None or city is not None:
        raise ValueError("the auth CRL distribution point has no prefecture or city")
    return x509.Name(attrs)


def _crl_dp(name: x509.Name) -> x509.CRLDistributionPoints:
    # fullName directoryName only, no URL (§7.1, §7.3)
    return x509.CRLDistributionPoints([
        x509.DistributionPoint(
            full_name=[x509.DirectoryName(name)], relative_name=None, reasons=None, crl_issuer=None
        )
    ])


# --- subjectAltName of the signing certificate ----------------------------------------------
def utf8_string_der(text: str) -> bytes:
    """DER of a UTF8String: the value inside each otherName's [0] EXPLICIT (§7.3)."""
    return asn1_core.UTF8String(text).dump()


def sign_san_values(identity: Identity) -> list[tuple[x509.ObjectIdentifier, str]]:
    """(OID, text) pairs of the signing certificate's subjectAltName, in card order (§7.3)."""
    if not isinstance(identity, Identity):
        raise TypeError(f"identity must be an Identity, got {type(identity).__name__}")
    _text(identity.name, "identity.name")
    _text(identity.address, "identity.address")
    values = {
        OID_NAME: identity.name,
        OID_BIRTH: jpki_birth(identity.birth),
        OID_SEX: identity.sex,
        OID_ADDRESS: identity.address,
        OID_NAME_ALT: identity.name_alt_flags,
        OID_ADDRESS_ALT: identity.address_alt_flags,
    }
    if len(values[OID_NAME_ALT]) != len(identity.name):
        raise ValueError("identity.name_alt must have one flag per name character")
    if len(values[OID_ADDRESS_ALT]) != len(identity.address):
        raise ValueError("identity.address_alt must have one flag per address character")
    return [(oid, values[oid]) for oid in SAN_ORDER]


def sign_san(identity: Identity) -> x509.SubjectAlternativeName:
    return x509.SubjectAlternativeName(
        [x509.OtherName(oid, utf8_string_der(text)) for oid, text in sign_san_values(identity)]
    )


SAN_FIELDS = {OID_NAME: "name", OID_BIRTH: "birth", OID_SEX: "sex", OID_ADDRESS: "address",
              OID_NAME_ALT: "name_alt", OID_ADDRESS_ALT: "address_alt"}


def parse_sign_san(certificate: x509.Certificate) -> dict:
    """The 基本4情報 a signing certificate holds (§7.3): {'name', 'birth', 'sex', 'address',
    'name_alt', 'address_alt'} as text, each otherName value parsed as a DER UTF8String.
    ValueError when the certificate has no such subjectAltName or a value is not a UTF8String."""
    try:
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        raise ValueError("the certificate has no subjectAltName (not a signing certificate)") from None
    out = {}
    for other in san.get_values_for_type(x509.OtherName):
        field = SAN_FIELDS.get(other.type_id)
        if field is None:
            continue
        try:
            value = asn1_core.UTF8String.load(other.value, strict=True)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"subjectAltName {field} is not a DER UTF8String: {exc}") from None
        out[field] = value.native
    missing = [f for f in ("name", "birth", "sex", "address") if f not in out]
    if missing:
        raise ValueError(f"the subjectAltName lacks {', '.join(missing)}")
    return out


# --- extensions -----------------------------------------------------------------------------
def _key_usage(**on) -> x509.KeyUsage:
    flags = dict(
        digital_signature=False, content_commitment=False, key_encipherment=False,
        data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
        encipher_only=False, decipher_only=False,
    )
    flags.update(on)
    return x509.KeyUsage(**flags)


def _policies(kind: str) -> x509.CertificatePolicies:
    return x509.CertificatePolicies([x509.PolicyInformation(POLICY_OF_KIND[kind], None)])


Extensions = list[tuple[x509.ExtensionType, bool]]  # (value, critical) in certificate order


def ca_extensions(kind: str, public_key: rsa.RSAPublicKey) -> Extensions:
    _kind(kind)
    return [
        (_key_usage(key_cert_sign=True, crl_sign=True), True),
        (x509.SubjectAlternativeName([x509.DirectoryName(ca_alt_name(kind))]), False),
        (x509.BasicConstraints(ca=True, path_length=None), True),
        (_crl_dp(ca_name(kind)), False),
        (x509.SubjectKeyIdentifier.from_public_key(public_key), False),
    ]


def auth_extensions(issuer_ski: x509.SubjectKeyIdentifier) -> Extensions:
    return [
        (_key_usage(digital_signature=True), True),
        (_policies(AUTH), False),
        (_crl_dp(crl_dp_name(AUTH)), False),
        (x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(issuer_ski), False),
    ]


def sign_extensions(identity: Identity, issuer_ski: x509.SubjectKeyIdentifier) -> Extensions:
    return [
        (_key_usage(digital_signature=True, content_commitment=True), True),
        (sign_san(identity), False),
        (_policies(SIGN), False),
        (_crl_dp(crl_dp_name(SIGN, identity.prefecture_romaji, identity.city_romaji)), False),
        (x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(issuer_ski), False),
    ]


# --- validity and serials -------------------------------------------------------------------
UTCTIME_FIRST = _dt.datetime(1950, 1, 1, tzinfo=_dt.timezone.utc)
UTCTIME_END = _dt.datetime(2050, 1, 1, tzinfo=_dt.timezone.utc)  # exclusive


def utc_time(value: _dt.datetime, what: str) -> _dt.datetime:
    """`value` as an aware UTC datetime truncated to whole seconds, inside the UTCTime range.

    Naive datetimes are refused: a certificate time must not depend on the host's time zone.
    """
    if not isinstance(value, _dt.datetime):
        raise TypeError(f"{what} must be a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware (e.g. tzinfo=datetime.timezone.utc)")
    value = value.astimezone(_dt.timezone.utc).replace(microsecond=0)
    if not UTCTIME_FIRST <= value < UTCTIME_END:
        raise ValueError(f"{what} {value.isoformat()} is outside 1950-2049, which UTCTime can encode")
    return value


def add_years(start: _dt.datetime, years: int) -> _dt.datetime:
    """`start` moved by whole calendar years; 29 February becomes 28 February."""
    if not isinstance(years, int) or isinstance(years, bool) or years < 1:
        raise ValueError(f"years must be a positive int, got {years!r}")
    try:
        return start.replace(year=start.year + years)
    except ValueError:
        return start.replace(year=start.year + years, day=28)


def ca_validity(not_before: _dt.datetime, years: int) -> tuple[_dt.datetime, _dt.datetime]:
    """(not_before, not_after) of a CA: `years` calendar years less one second, so the last
    valid second is the day before the anniversary, like 2015-10-20..2025-10-19 (§7.1)."""
    start = utc_time(not_before, "not_before")
    end = add_years(start, years) - _dt.timedelta(seconds=1)
    return start, utc_time(end, "not_after")


def check_serial(serial: int) -> int:
    """A certificate serial: a positive int of at most 20 octets in DER (RFC 5280 4.1.2.2)."""
    if not isinstance(serial, int) or isinstance(serial, bool):
        raise TypeError(f"serial must be an int, got {type(serial).__name__}")
    if serial <= 0 or serial.bit_length() > 159:
        raise ValueError(f"serial must be positive and fit 20 DER octets, got {serial}")
    return serial


def _below(rng: random.Random, n: int) -> int:
    # rejection sampling on getrandbits only, so the stream is the same on every CPython
    k = n.bit_length()
    while True:
        r = rng.getrandbits(k)
        if r < n:
            return r


# Real JPKI certificates carry 4-octet serials (e.g. 0705D990 on an end-entity certificate,
# 06D18006 on the 2023 auth CA; spec §7.1, §13.3). Serials are drawn from the values whose
# DER INTEGER is exactly 4 octets with a non-zero first octet: 01000000 .. 7FFFFFFF.
SERIAL_MIN = 0x01000000
SERIAL_MAX = 0x7FFFFFFF


def random_serial(rng: random.Random) -> int:
    """An end-entity serial: random, exactly 4 DER octets (SERIAL_MIN .. SERIAL_MAX, §13.3)."""
    return SERIAL_MIN + _below(rng, SERIAL_MAX - SERIAL_MIN + 1)


def random_ca_serial(rng: random.Random) -> int:
    """A TEST CA certificate's serial: random, exactly 8 DER octets (top bit clear, next set).
    Left as it was: the CA profile is outside the §13.3 end-entity change."""
    return rng.getrandbits(63) | (1 << 62)


_DIGITS = "0123456789"
_ALNUM = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def make_issue_id(rng: random.Random, municipality_code: str) -> str:
    """An opaque 23-character issue id embedding the 5-digit municipality code (§7.2)."""
    if not isinstance(rng, random.Random):
        raise TypeError(f"rng must be a random.Random, got {type(rng).__name__}")
    if not (isinstance(municipality_code, str) and len(municipality_code) == 5
            and all("0" <= c <= "9" for c in municipality_code)):
        raise ValueError(f"municipality_code must be 5 ASCII digits, got {municipality_code!r}")

    def pick(alphabet: str, count: int) -> str:
        return "".join(alphabet[_below(rng, len(alphabet))] for _ in range(count))

    return pick(_DIGITS, 6) + pick(_ALNUM, 8) + municipality_code + pick(_DIGITS, 3) + pick(_LETTERS, 1)

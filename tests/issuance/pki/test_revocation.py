"""Revocation state with history, per-CA CRLs and their verification (issuance/pki/revocation.py)."""
import datetime as dt

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID, SignatureAlgorithmOID

from mynaemu.issuance.pki.ca import TestCA
from mynaemu.issuance.pki.revocation import (
    CertStatus, CrlError, CrlPublisher, MemoryRevocationSource, RevocationSource, RevokedEntry, build_crl,
    crl_der, crl_pem, load_crl, status_from_crl, verify_crl,
)

UTC = dt.timezone.utc
T0 = dt.datetime(2026, 4, 1, 9, 0, 0, tzinfo=UTC)
H = dt.timedelta(hours=1)
R = x509.ReasonFlags


def _key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def auth_ca():
    return TestCA.create("auth", key=_key(), not_before=T0 - dt.timedelta(days=365))


@pytest.fixture(scope="module")
def sign_ca():
    return TestCA.create("sign", key=_key(), not_before=T0 - dt.timedelta(days=365))


@pytest.fixture(scope="module")
def ee_key():
    return _key()


def _auth_cert(ca, ee_key, serial):
    return ca.issue_auth(ee_key.public_key(), serial=serial, not_before=T0 - dt.timedelta(days=1),
                         not_after=T0 + dt.timedelta(days=1000), issue_id=f"TESTISSUE{serial:X}")


def _source():
    src = MemoryRevocationSource()
    for serial in (0x10, 0x11, 0x12, 0x13):
        src.add_issued("auth", serial, T0 + dt.timedelta(days=1000), at=T0 - dt.timedelta(days=1))
    src.add_issued("sign", 0x10, T0 + dt.timedelta(days=1000), at=T0 - dt.timedelta(days=1))
    return src


# --- the source -----------------------------------------------------------------------------
def test_memory_source_implements_the_protocol():
    assert isinstance(MemoryRevocationSource(), RevocationSource)


def test_history_answers_as_of_each_instant():
    src = _source()
    src.hold("auth", 0x10, at=T0 + H)
    src.release("auth", 0x10, at=T0 + 3 * H)
    src.revoke("auth", 0x10, R.superseded, at=T0 + 5 * H)
    not_after = T0 + dt.timedelta(days=1000)
    assert src.certificate_status("auth", 0x10, T0 - dt.timedelta(days=2)) == CertStatus("unknown")
    assert src.certificate_status("auth", 0x10, T0) == CertStatus("good", not_after=not_after)
    assert src.certificate_status("auth", 0x10, T0 + 2 * H) == CertStatus(
        "hold", T0 + H, R.certificate_hold, not_after)
    assert src.certificate_status("auth", 0x10, T0 + 4 * H).status == "good"
    assert src.certificate_status("auth", 0x10, T0 + 6 * H) == CertStatus(
        "revoked", T0 + 5 * H, R.superseded, not_after)
    # the same serial at the other CA is a different certificate
    assert src.certificate_status("sign", 0x10, T0 + 6 * H).status == "good"
    assert src.certificate_status("sign", 0x99, T0).status == "unknown"


def test_revoked_certificates_lists_holds_and_revocations_sorted():
    src = _source()
    src.revoke("auth", 0x13, R.key_compromise, at=T0 + H)
    src.hold("auth", 0x11, at=T0 + H)
    src.hold("sign", 0x10, at=T0 + H)
    assert src.revoked_certificates("auth", T0) == []
    assert src.revoked_certificates("auth", T0 + 2 * H) == [
        RevokedEntry(0x11, T0 + H, R.certificate_hold),
        RevokedEntry(0x13, T0 + H, R.key_compromise),
    ]
    assert src.revoked_certificates("sign", T0 + 2 * H) == [RevokedEntry(0x10, T0 + H, R.certificate_hold)]


def test_held_then_revoked_carries_the_revocation():
    src = _source()
    src.hold("auth", 0x12, at=T0 + H)
    src.revoke("auth", 0x12, R.cessation_of_operation, at=T0 + 2 * H)
    assert src.revoked_certificates("auth", T0 + 3 * H) == [
        RevokedEntry(0x12, T0 + 2 * H, R.cessation_of_operation)]


def test_instants_are_utc_whole_seconds():
    src = MemoryRevocationSource()
    jst = dt.timezone(dt.timedelta(hours=9))
    src.add_issued("auth", 5, dt.datetime(2030, 1, 1, tzinfo=jst), at=T0)
    src.hold("auth", 5, at=(T0 + H).astimezone(jst).replace(microsecond=700000))
    state = src.certificate_status("auth", 5, T0 + 2 * H)
    assert state.revoked_at == T0 + H and state.revoked_at.tzinfo == UTC
    assert state.not_after == dt.datetime(2029, 12, 31, 15, tzinfo=UTC)


@pytest.mark.parametrize("action, message", [
    (lambda s: s.release("auth", 0x10, at=T0), "it is good"),
    (lambda s: s.hold("auth", 0x99, at=T0), "never issued"),
    (lambda s: s.revoke("auth", 0x10, R.certificate_hold, at=T0), "use hold"),
    (lambda s: s.revoke("auth", 0x10, R.remove_from_crl, at=T0), "not a revocation reason"),
    (lambda s: s.revoke("auth", 0x10, "superseded", at=T0), "ReasonFlags"),
    (lambda s: s.hold("auth", 0x10, at=dt.datetime(2026, 4, 1)), "timezone-aware"),
    (lambda s: s.hold("auth", 0x10, at=T0 - dt.timedelta(days=2)), "time order"),
    (lambda s: s.add_issued("auth", 0x10, T0, at=T0), "already issued"),
    (lambda s: s.add_issued("card", 1, T0, at=T0), "ca_kind"),
    (lambda s: s.add_issued("auth", 0, T0, at=T0), "positive"),
])
def test_bad_transitions_and_arguments_are_refused(action, message):
    with pytest.raises((ValueError, TypeError, KeyError), match=message):
        action(_source())


def test_revoked_is_final_and_a_hold_is_not_repeated():
    src = _source()
    src.hold("auth", 0x10, at=T0)
    with pytest.raises(ValueError, match="it is hold"):
        src.hold("auth", 0x10, at=T0 + H)
    src.revoke("auth", 0x10, R.key_compromise, at=T0 + H)
    for action in (lambda: src.release("auth", 0x10, at=T0 + 2 * H),
                   lambda: src.hold("auth", 0x10, at=T0 + 2 * H),
                   lambda: src.revoke("auth", 0x10, R.superseded, at=T0 + 2 * H)):
        with pytest.raises(ValueError, match="it is revoked"):
            action()


@pytest.mark.parametrize("kwargs", [
    dict(status="bad"),
    dict(status="good", revoked_at=T0),
    dict(status="revoked", revoked_at=T0),
    dict(status="revoked", revoked_at=T0, reason=R.certificate_hold),
    dict(status="hold", revoked_at=T0, reason=R.superseded),
])
def test_cert_status_invariants(kwargs):
    with pytest.raises(ValueError):
        CertStatus(**kwargs)


# --- CRLs -----------------------------------------------------------------------------------
def _entries(crl):
    out = {}
    for entry in crl:
        try:
            reason = entry.extensions.get_extension_for_class(x509.CRLReason).value.reason
        except x509.ExtensionNotFound:
            reason = None
        out[entry.serial_number] = (entry.revocation_date_utc, reason)
    return out


def test_hold_then_release_on_the_crl(auth_ca):
    src = _source()
    src.hold("auth", 0x10, at=T0 + H)
    src.release("auth", 0x10, at=T0 + 3 * H)
    held = build_crl(auth_ca, src, at=T0 + 2 * H, crl_number=1)
    assert _entries(held) == {0x10: (T0 + H, R.certificate_hold)}
    released = build_crl(auth_ca, src, at=T0 + 4 * H, crl_number=2)
    assert _entries(released) == {}
    # history: the CRL of the held period can be rebuilt after the release
    assert crl_der(build_crl(auth_ca, src, at=T0 + 2 * H, crl_number=1)) == crl_der(held)


def test_revocation_reasons_on_the_crl(auth_ca):
    src = _source()
    src.revoke("auth", 0x10, R.superseded, at=T0 + H)
    src.revoke("auth", 0x11, R.affiliation_changed, at=T0 + H)
    src.revoke("auth", 0x12, R.unspecified, at=T0 + H)
    crl = build_crl(auth_ca, src, at=T0 + 2 * H, crl_number=7)
    # unspecified is carried as the absence of a reason code (RFC 5280 §5.3.1)
    assert _entries(crl) == {0x10: (T0 + H, R.superseded), 0x11: (T0 + H, R.affiliation_changed),
                             0x12: (T0 + H, None)}


def test_crl_fields_extensions_and_signature(auth_ca):
    src = _source()
    src.hold("auth", 0x11, at=T0)
    crl = build_crl(auth_ca, src, at=T0 + dt.timedelta(minutes=1, microseconds=5), crl_number=42,
                    next_update_after=dt.timedelta(hours=6))
    assert crl.issuer == auth_ca.certificate.subject
    assert crl.last_update_utc == T0 + dt.timedelta(minutes=1)
    assert crl.next_update_utc == T0 + dt.timedelta(hours=6, minutes=1)
    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 42
    aki = crl.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier)
    assert not aki.critical
    assert aki.value.key_identifier == auth_ca.certificate.extensions.get_extension_for_class(
        x509.SubjectKeyIdentifier).value.digest
    assert crl.signature_algorithm_oid == SignatureAlgorithmOID.RSA_WITH_SHA256
    assert crl.is_signature_valid(auth_ca.certificate.public_key())
    auth_ca.certificate.public_key().verify(crl.signature, crl.tbs_certlist_bytes, padding.PKCS1v15(),
                                            hashes.SHA256())
    with pytest.raises(InvalidSignature):
        auth_ca.certificate.public_key().verify(crl.signature, crl.tbs_certlist_bytes + b"x",
                                                padding.PKCS1v15(), hashes.SHA256())


def test_each_ca_gets_its_own_crl(auth_ca, sign_ca):
    src = _source()
    src.revoke("sign", 0x10, R.superseded, at=T0)  # the signing certificate replaced at 異動 (MOV-1)
    assert _entries(build_crl(auth_ca, src, at=T0 + H, crl_number=1)) == {}
    sign_crl = build_crl(sign_ca, src, at=T0 + H, crl_number=1)
    assert _entries(sign_crl) == {0x10: (T0, R.superseded)}
    assert sign_crl.is_signature_valid(sign_ca.certificate.public_key())
    assert not sign_crl.is_signature_valid(auth_ca.certificate.public_key())


def test_pem_der_round_trip(auth_ca):
    src = _source()
    src.hold("auth", 0x10, at=T0)
    crl = build_crl(auth_ca, src, at=T0 + H, crl_number=3)
    assert crl_pem(crl).startswith(b"-----BEGIN X509 CRL-----")
    assert crl_der(load_crl(crl_pem(crl))) == crl_der(crl)
    assert crl_der(load_crl(crl_der(crl))) == crl_der(crl)
    with pytest.raises(CrlError, match="not a CRL"):
        load_crl(b"\x30\x03\x02\x01\x01")


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(crl_number=-1), ValueError, "non-negative"),
    (dict(crl_number=1 << 160), ValueError, "20 octets"),
    (dict(crl_number="1"), TypeError, "int"),
    (dict(crl_number=1, next_update_after=dt.timedelta(0)), ValueError, "positive"),
    (dict(crl_number=1, at=dt.datetime(2026, 4, 1)), ValueError, "timezone-aware"),
])
def test_build_crl_refuses_bad_arguments(auth_ca, kwargs, error, message):
    kwargs.setdefault("at", T0)
    with pytest.raises(error, match=message):
        build_crl(auth_ca, _source(), **kwargs)


class _BadSource:
    def __init__(self, entries):
        self.entries = entries

    def certificate_status(self, ca_kind, serial, at):
        raise AssertionError("not used by build_crl")

    def revoked_certificates(self, ca_kind, at):
        return self.entries


@pytest.mark.parametrize("entries, message", [
    ([RevokedEntry(5, T0 + H, R.superseded)], "after the CRL instant"),
    ([RevokedEntry(5, T0, R.superseded), RevokedEntry(5, T0, R.superseded)], "twice"),
    ([RevokedEntry(5, T0, R.remove_from_crl)], "removeFromCRL"),
    ([(5, T0, R.superseded)], "RevokedEntry"),
])
def test_build_crl_refuses_inconsistent_sources(auth_ca, entries, message):
    with pytest.raises((ValueError, TypeError), match=message):
        build_crl(auth_ca, _BadSource(entries), at=T0, crl_number=1)


def _plain_ca(kind, *, crl_sign=True, name=None):
    key = _key()
    name = name or x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "OTHER TEST CA")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(T0 - H).not_valid_after(T0 + dt.timedelta(days=9))
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, crl_sign, False, False),
                           critical=True)
            .sign(key, hashes.SHA256()))

    class CA:
        pass

    ca = CA()
    ca.kind, ca.certificate, ca.key = kind, cert, key
    return ca


def test_build_crl_checks_the_ca(auth_ca):
    with pytest.raises(ValueError, match="cRLSign"):
        build_crl(_plain_ca("auth", crl_sign=False), _source(), at=T0, crl_number=1)
    mismatched = _plain_ca("auth")
    mismatched.key = auth_ca.key
    with pytest.raises(ValueError, match="does not match"):
        build_crl(mismatched, _source(), at=T0, crl_number=1)
    with pytest.raises(TypeError, match="no .kind"):
        build_crl(object(), _source(), at=T0, crl_number=1)


# --- verification and use of a CRL ----------------------------------------------------------
def test_verify_crl(auth_ca, sign_ca):
    src = _source()
    crl = build_crl(auth_ca, src, at=T0, crl_number=1)
    verify_crl(crl, auth_ca.certificate, at=T0 + H)
    with pytest.raises(CrlError, match="issuer"):
        verify_crl(crl, sign_ca.certificate, at=T0 + H)
    with pytest.raises(CrlError, match="stale"):
        verify_crl(crl, auth_ca.certificate, at=T0 + dt.timedelta(hours=25))
    with pytest.raises(CrlError, match="future"):
        verify_crl(crl, auth_ca.certificate, at=T0 - H)
    # same issuer name, another key (a CA generation shares its DN, §7.1): the signature fails
    impostor = TestCA.create("auth", key=_key(), not_before=T0 - dt.timedelta(days=365))
    forged = build_crl(impostor, src, at=T0, crl_number=2)
    with pytest.raises(CrlError, match="signature"):
        verify_crl(forged, auth_ca.certificate, at=T0 + H)


def test_status_from_crl(auth_ca, ee_key):
    src = _source()
    src.hold("auth", 0x10, at=T0)
    src.revoke("auth", 0x11, R.key_compromise, at=T0)
    src.revoke("auth", 0x12, R.unspecified, at=T0)
    crl = build_crl(auth_ca, src, at=T0 + H, crl_number=1)
    statuses = {s: status_from_crl(crl, _auth_cert(auth_ca, ee_key, s)) for s in (0x10, 0x11, 0x12, 0x13)}
    not_after = T0 + dt.timedelta(days=1000)
    assert statuses[0x10] == CertStatus("hold", T0, R.certificate_hold, not_after)
    assert statuses[0x11] == CertStatus("revoked", T0, R.key_compromise, not_after)
    assert statuses[0x12] == CertStatus("revoked", T0, R.unspecified, not_after)
    assert statuses[0x13] == CertStatus("good", not_after=not_after)
    assert [s.usable for s in statuses.values()] == [False, False, False, True]


# --- the serving cache ----------------------------------------------------------------------
def test_publisher_reuses_until_change_and_numbers_increase(auth_ca, sign_ca):
    src = _source()
    pub = CrlPublisher({"auth": auth_ca, "sign": sign_ca}, src)
    first = pub.current("auth", T0)
    assert pub.current("auth", T0 + H) is first  # unchanged and young: the same CRL
    src.hold("auth", 0x10, at=T0 + 2 * H)
    second = pub.current("auth", T0 + 2 * H)
    assert _entries(second) == {0x10: (T0 + 2 * H, R.certificate_hold)}
    n1 = first.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    n2 = second.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    assert n1 == int(T0.timestamp()) and n2 > n1
    aged = pub.current("auth", T0 + 15 * H)  # past half the 24 h validity: reissued
    assert aged is not second and aged.last_update_utc == T0 + 15 * H
    # a clock that goes back still gets a larger number
    back = pub.current("auth", T0)
    assert back.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number > \
        aged.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    with pytest.raises(KeyError):
        pub.current("card", T0)
    with pytest.raises(ValueError, match="expected"):
        CrlPublisher({"sign": auth_ca}, src)

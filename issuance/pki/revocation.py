"""Revocation state of TEST JPKI certificates and the per-CA CRLs built from it.

Three parts:

- The data interface the back office store implements (`RevocationSource`, `CertStatus`,
  `RevokedEntry`): for one CA kind ("auth" | "sign") and one serial, the state **as of an
  instant** — good, on hold (一時保留, FLOW-SUSP-3), revoked (失効, STATE-2) or unknown (the CA
  never issued that serial). Both the CRL builder and the OCSP responder (issuance/pki/ocsp.py) read
  only this interface, so they always agree.
- `MemoryRevocationSource`, an in-memory implementation with history, for tests and the kiosk.
- `build_crl` (one complete CRL per CA, RFC 5280 §5), PEM/DER helpers, `verify_crl` (signature,
  issuer, freshness) and `status_from_crl` for a verifier that falls back to the CRL.

Decisions (the sources leave revocation formats open, rules.md §19 gap 11; the real JPKI
gives revocation data only to authorised verifiers, card-interface.md §7.3):

- A hold is listed with reason certificateHold (RFC 5280 §5.3.1). A release makes the entry
  disappear from every later CRL; that is how RFC 5280 releases a hold on a complete CRL
  (removeFromCRL exists only for delta CRLs, which we do not issue).
- A held certificate that is then revoked is listed with the instant of the revocation and the
  revocation's reason (the hold is superseded, not back-dated).
- Reason unspecified is carried as the absence of a reason code (RFC 5280 §5.3.1 says the code
  SHOULD be absent rather than unspecified).
- Entries stay on the CRL after the certificate expires (RFC 5280 §3.3 only forbids removing
  them before one CRL issued past expiry; keeping them is the simple valid choice).
- One complete CRL per CA with no IssuingDistributionPoint: it covers every certificate of the
  CA, including every per-municipality CRL distribution point name a signing certificate
  carries (§7.3). The kiosk fetches it over HTTP (issuance/pki/ocsp.py), since the certificates
  carry only a directoryName and no URL (§7.1, §7.3).
- All instants are timezone-aware and truncated to whole seconds (CRL times have no fraction).
"""
from __future__ import annotations

import datetime as _dt
import threading
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from mynaemu.issuance.pki.profiles import KINDS, check_serial, utc_time  # check_serial: RFC 5280 §4.1.2.2
from mynaemu.issuance.validate import InputError

GOOD = "good"
HOLD = "hold"
REVOKED = "revoked"
UNKNOWN = "unknown"
STATUSES = (GOOD, HOLD, REVOKED, UNKNOWN)

# Reasons a revocation (失効) may carry. certificateHold is not one: a hold goes through
# hold()/release(). removeFromCRL belongs to delta CRLs only (RFC 5280 §5.3.1).
REVOCATION_REASONS = frozenset({
    x509.ReasonFlags.unspecified,
    x509.ReasonFlags.key_compromise,
    x509.ReasonFlags.ca_compromise,
    x509.ReasonFlags.affiliation_changed,
    x509.ReasonFlags.superseded,  # the signing certificate replaced at 異動 (MOV-1)
    x509.ReasonFlags.cessation_of_operation,  # the card abolished (廃止, FLOW-ABOL-1)
    x509.ReasonFlags.privilege_withdrawn,
    x509.ReasonFlags.aa_compromise,
})

DEFAULT_CRL_VALIDITY = _dt.timedelta(hours=24)
# Tolerated difference between the issuer's clock and the verifier's when checking freshness.
CLOCK_SKEW = _dt.timedelta(minutes=5)


class CrlError(Exception):
    """A CRL that cannot be trusted or used: bad encoding, wrong issuer, bad signature, stale."""


# --- the data interface ---------------------------------------------------------------------
def instant(value: _dt.datetime, what: str = "at") -> _dt.datetime:
    """`value` as an aware UTC datetime truncated to whole seconds (naive is refused)."""
    return utc_time(value, what)


def check_kind(ca_kind: str) -> str:
    if ca_kind not in KINDS:
        raise ValueError(f"ca_kind must be 'auth' or 'sign', got {ca_kind!r}")
    return ca_kind


@dataclass(frozen=True)
class CertStatus:
    """The state of one certificate at one instant.

    status: "good" | "hold" | "revoked" | "unknown" (the CA never issued that serial).
    revoked_at / reason: set exactly when the status is hold (reason certificateHold, revoked_at
    the instant of the hold) or revoked (the revocation's reason). not_after: the certificate's
    expiry when known.
    """

    status: str
    revoked_at: _dt.datetime | None = None
    reason: x509.ReasonFlags | None = None
    not_after: _dt.datetime | None = None

    def __post_init__(self):
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {self.status!r}")
        if self.status in (HOLD, REVOKED):
            if self.revoked_at is None or self.reason is None:
                raise ValueError(f"a {self.status} status needs revoked_at and reason")
            if (self.status == HOLD) != (self.reason == x509.ReasonFlags.certificate_hold):
                raise ValueError("reason certificateHold goes with status 'hold' and only with it")
        elif self.revoked_at is not None or self.reason is not None:
            raise ValueError(f"a {self.status} status has no revoked_at or reason")

    @property
    def usable(self) -> bool:
        """True only for "good": a held, revoked or unknown certificate must be refused (CVS-16)."""
        return self.status == GOOD


@dataclass(frozen=True)
class RevokedEntry:
    """One CRL entry: a certificate on hold (reason certificateHold) or revoked, as of an instant."""

    serial: int
    revoked_at: _dt.datetime
    reason: x509.ReasonFlags


@runtime_checkable
class RevocationSource(Protocol):
    """What the CRL builder and the OCSP responder need from the back office store.

    Both answers are "as of `at`": events after `at` are invisible, so a CRL or an OCSP answer
    for a past instant can be rebuilt exactly.
    """

    def certificate_status(self, ca_kind: str, serial: int, at: _dt.datetime) -> CertStatus: ...

    def revoked_certificates(self, ca_kind: str, at: _dt.datetime) -> list[RevokedEntry]: ...


# --- in-memory implementation ---------------------------------------------------------------
@dataclass(frozen=True)
class _Event:
    at: _dt.datetime
    action: str  # "issued" | "hold" | "release" | "revoke"
    reason: x509.ReasonFlags | None = None


class MemoryRevocationSource:
    """A `RevocationSource` kept in memory with the full history of every certificate.

    Events for one certificate must be recorded in time order (equal instants allowed, the
    later call wins). Transitions (STATE-2): issued → good; good → hold (一時保留); hold → good
    (解除); good or hold → revoked (失効), which is final.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._certs: dict[tuple[str, int], tuple[_dt.datetime, list[_Event]]] = {}

    def add_issued(self, ca_kind: str, serial: int, not_after: _dt.datetime, *, at: _dt.datetime) -> None:
        key = (check_kind(ca_kind), check_serial(serial))
        not_after = instant(not_after, "not_after")
        at = instant(at)
        with self._lock:
            if key in self._certs:
                raise ValueError(f"the {ca_kind} CA already issued serial {serial:#x}")
            self._certs[key] = (not_after, [_Event(at, "issued")])

    def _append(self, ca_kind: str, serial: int, at: _dt.datetime, action: str,
                reason: x509.ReasonFlags | None = None) -> None:
        key = (check_kind(ca_kind), check_serial(serial))
        at = instant(at)
        with self._lock:
            if key not in self._certs:
                raise KeyError(f"the {ca_kind} CA never issued serial {serial:#x}")
            _, events = self._certs[key]
            last = events[-1]
            if at < last.at:
                raise ValueError(
                    f"{action} at {at.isoformat()} is before the last event ({last.action} at "
                    f"{last.at.isoformat()}) of {ca_kind} serial {serial:#x}: record events in time order")
            state = _fold(events, at).status
            allowed = {"hold": (GOOD,), "release": (HOLD,), "revoke": (GOOD, HOLD)}[action]
            if state not in allowed:
                raise ValueError(f"cannot {action} {ca_kind} serial {serial:#x}: it is {state}")
            events.append(_Event(at, action, reason))

    def hold(self, ca_kind: str, serial: int, *, at: _dt.datetime) -> None:
        """一時保留 (FLOW-SUSP-3): the certificate is suspended from `at`."""
        self._append(ca_kind, serial, at, "hold")

    def release(self, ca_kind: str, serial: int, *, at: _dt.datetime) -> None:
        """一時保留解除 (FLOW-SUSP-3): the certificate is good again from `at`."""
        self._append(ca_kind, serial, at, "release")

    def revoke(self, ca_kind: str, serial: int, reason: x509.ReasonFlags, *, at: _dt.datetime) -> None:
        """失効 (STATE-2) with an RFC 5280 reason, e.g. superseded at 異動 (MOV-1)."""
        if not isinstance(reason, x509.ReasonFlags):
            raise TypeError(f"reason must be an x509.ReasonFlags, got {type(reason).__name__}")
        if reason == x509.ReasonFlags.certificate_hold:
            raise ValueError("use hold() for certificateHold; revoke() is final")
        if reason not in REVOCATION_REASONS:
            raise ValueError(f"{reason.name} is not a revocation reason (RFC 5280 §5.3.1)")
        self._append(ca_kind, serial, at, "revoke", reason)

    def certificate_status(self, ca_kind: str, serial: int, at: _dt.datetime) -> CertStatus:
        key = (check_kind(ca_kind), check_serial(serial))
        at = instant(at)
        with self._lock:
            record = self._certs.get(key)
            if record is None:
                return CertStatus(UNKNOWN)
            not_after, events = record
            return _fold(events, at, not_after)

    def revoked_certificates(self, ca_kind: str, at: _dt.datetime) -> list[RevokedEntry]:
        check_kind(ca_kind)
        at = instant(at)
        with self._lock:
            records = [(serial, events) for (kind, serial), (_, events) in self._certs.items()
                       if kind == ca_kind]
            entries = []
            for serial, events in records:
                state = _fold(events, at)
                if state.status in (HOLD, REVOKED):
                    entries.append(RevokedEntry(serial, state.revoked_at, state.reason))
        return sorted(entries, key=lambda e: e.serial)


def _fold(events: list[_Event], at: _dt.datetime, not_after: _dt.datetime | None = None) -> CertStatus:
    """The state after every event at or before `at`; "unknown" before issuance."""
    state = CertStatus(UNKNOWN)
    for event in events:
        if event.at > at:
            break
        if event.action in ("issued", "release"):
            state = CertStatus(GOOD, not_after=not_after)
        elif event.action == "hold":
            state = CertStatus(HOLD, event.at, x509.ReasonFlags.certificate_hold, not_after)
        else:
            state = CertStatus(REVOKED, event.at, event.reason, not_after)
    return state


# --- CRL ------------------------------------------------------------------------------------
class IssuingCA(Protocol):
    """What `build_crl` needs of a CA (issuance/pki/ca.py TestCA has it)."""

    kind: str
    certificate: x509.Certificate
    key: rsa.RSAPrivateKey


def _public_der(key) -> bytes:
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def check_ca(ca, kind: str | None = None) -> str:
    """The CA's kind, after checking its key matches its certificate and may sign CRLs."""
    for attr in ("kind", "certificate", "key"):
        if not hasattr(ca, attr):
            raise TypeError(f"a CA needs .kind, .certificate and .key; {type(ca).__name__} has no .{attr}")
    check_kind(ca.kind)
    if kind is not None and ca.kind != kind:
        raise ValueError(f"CA of kind {ca.kind!r} given where kind {kind!r} was expected")
    if not isinstance(ca.certificate, x509.Certificate):
        raise TypeError(f"ca.certificate must be an x509.Certificate, got {type(ca.certificate).__name__}")
    if _public_der(ca.key.public_key()) != _public_der(ca.certificate.public_key()):
        raise ValueError(f"the {ca.kind} CA's private key does not match its certificate")
    try:
        usage = ca.certificate.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        usage = None
    if usage is not None and not usage.crl_sign:
        raise ValueError(f"the {ca.kind} CA certificate's KeyUsage lacks cRLSign (RFC 5280 §4.2.1.3)")
    return ca.kind


def _authority_key_identifier(cert: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    try:
        ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    except x509.ExtensionNotFound:
        ski = x509.SubjectKeyIdentifier.from_public_key(cert.public_key())
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)


def build_crl(ca: IssuingCA, source: RevocationSource, *, at: _dt.datetime,
              next_update_after: _dt.timedelta = DEFAULT_CRL_VALIDITY,
              crl_number: int) -> x509.CertificateRevocationList:
    """The complete CRL of `ca` as of `at`: thisUpdate `at`, nextUpdate `at + next_update_after`.

    Every certificate on hold (reason certificateHold) or revoked (its reason) as of `at` is
    listed; CRLNumber and AuthorityKeyIdentifier extensions; sha256WithRSAEncryption.
    """
    kind = check_ca(ca)
    at = instant(at)
    return _sign_crl(ca, kind, source.revoked_certificates(kind, at), at, next_update_after, crl_number)


class CrlWindowError(InputError):
    """A CRL that cannot be issued at that instant (found before its CRL number is spent)."""


def check_crl_window(ca: IssuingCA, at: _dt.datetime,
                     next_update_after: _dt.timedelta = DEFAULT_CRL_VALIDITY) -> _dt.datetime:
    """Refuse, before anything is spent or signed, a CRL whose thisUpdate or nextUpdate falls
    outside what can be issued: the UTCTime range (1950-2049, RFC 5280 §5.1.2.4-5) and the
    issuing CA's own validity (a CRL from a CA past its notAfter, or before its notBefore,
    verifies against nothing). Returns thisUpdate as build_crl will write it."""
    kind = check_ca(ca)
    if not isinstance(at, _dt.datetime) or at.utcoffset() is None:
        raise CrlWindowError("the CRL instant must be a timezone-aware datetime")
    if not isinstance(next_update_after, _dt.timedelta) or next_update_after <= _dt.timedelta(0):
        raise CrlWindowError(f"next_update_after must be a positive timedelta, got {next_update_after!r}")
    cert = ca.certificate
    first, last = cert.not_valid_before_utc, cert.not_valid_after_utc
    try:
        this_update = instant(at, "CRL thisUpdate")
        next_update = instant(this_update + next_update_after, "CRL nextUpdate")
    except (ValueError, OverflowError) as exc:
        raise CrlWindowError(f"{exc}; the CA is valid {first:%Y-%m-%d} .. {last:%Y-%m-%d}") from None
    if this_update < first or next_update > last:
        raise CrlWindowError(f"a CRL at {this_update:%Y-%m-%dT%H:%M:%SZ} (next update "
                             f"{next_update:%Y-%m-%dT%H:%M:%SZ}) falls outside the {kind} CA's validity "
                             f"{first:%Y-%m-%dT%H:%M:%SZ} .. {last:%Y-%m-%dT%H:%M:%SZ}")
    return this_update


def _sign_crl(ca, kind: str, entries, at: _dt.datetime, next_update_after: _dt.timedelta,
              crl_number: int) -> x509.CertificateRevocationList:
    if not isinstance(next_update_after, _dt.timedelta) or next_update_after <= _dt.timedelta(0):
        raise ValueError(f"next_update_after must be a positive timedelta, got {next_update_after!r}")
    next_update = instant(at + next_update_after, "next update")
    if next_update <= at:
        raise ValueError("next_update_after must be at least one second")
    if not isinstance(crl_number, int) or isinstance(crl_number, bool):
        raise TypeError(f"crl_number must be an int, got {type(crl_number).__name__}")
    if crl_number < 0 or crl_number.bit_length() > 159:
        raise ValueError(f"crl_number must be non-negative and fit 20 octets (RFC 5280 §5.2.3), got {crl_number}")

    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca.certificate.subject)
        .last_update(at)
        .next_update(next_update)
        .add_extension(_authority_key_identifier(ca.certificate), critical=False)
        .add_extension(x509.CRLNumber(crl_number), critical=False)
    )
    seen = set()
    for entry in entries:
        if not isinstance(entry, RevokedEntry):
            raise TypeError(f"the source returned {type(entry).__name__}, not a RevokedEntry")
        serial = check_serial(entry.serial)
        if serial in seen:
            raise ValueError(f"the source listed {kind} serial {serial:#x} twice")
        seen.add(serial)
        revoked_at = instant(entry.revoked_at, "revoked_at")
        if revoked_at > at:
            raise ValueError(f"the source listed {kind} serial {serial:#x} revoked after the CRL instant")
        revoked = x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(revoked_at)
        if entry.reason == x509.ReasonFlags.remove_from_crl:
            raise ValueError("removeFromCRL has no place on a complete CRL (RFC 5280 §5.3.1)")
        if entry.reason != x509.ReasonFlags.unspecified:
            revoked = revoked.add_extension(x509.CRLReason(entry.reason), critical=False)
        builder = builder.add_revoked_certificate(revoked.build())
    return builder.sign(ca.key, hashes.SHA256())


def crl_der(crl: x509.CertificateRevocationList) -> bytes:
    return crl.public_bytes(serialization.Encoding.DER)


def crl_pem(crl: x509.CertificateRevocationList) -> bytes:
    return crl.public_bytes(serialization.Encoding.PEM)


def load_crl(data: bytes) -> x509.CertificateRevocationList:
    """A CRL from PEM or DER bytes; CrlError if it is neither."""
    if not isinstance(data, (bytes, bytearray)):
        raise TypeError(f"CRL data must be bytes, got {type(data).__name__}")
    data = bytes(data)
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            return x509.load_pem_x509_crl(data)
        return x509.load_der_x509_crl(data)
    except ValueError as exc:
        raise CrlError(f"not a CRL: {exc}") from None


def verify_signature(public_key, signature: bytes, data: bytes, algorithm) -> None:
    """Raise InvalidSignature unless `signature` over `data` verifies (RSA PKCS#1 v1.5 or ECDSA)."""
    if algorithm is None:
        raise InvalidSignature("no hash algorithm given")
    if isinstance(public_key, rsa.RSAPublicKey):
        public_key.verify(signature, data, padding.PKCS1v15(), algorithm)
    elif isinstance(public_key, ec.EllipticCurvePublicKey):
        public_key.verify(signature, data, ec.ECDSA(algorithm))
    else:
        raise InvalidSignature(f"unsupported issuer key type {type(public_key).__name__}")


def verify_crl(crl: x509.CertificateRevocationList, issuer_cert: x509.Certificate, *,
               at: _dt.datetime, skew: _dt.timedelta = CLOCK_SKEW) -> None:
    """Raise CrlError unless `crl` was issued by `issuer_cert`'s key and is current at `at`."""
    at = instant(at)
    if crl.issuer != issuer_cert.subject:
        raise CrlError("the CRL issuer is not the expected CA")
    if not crl.is_signature_valid(issuer_cert.public_key()):
        raise CrlError("the CRL signature does not verify with the CA public key")
    if crl.last_update_utc > at + skew:
        raise CrlError(f"the CRL is issued in the future ({crl.last_update_utc.isoformat()})")
    if crl.next_update_utc is None:
        raise CrlError("the CRL has no nextUpdate, so its freshness cannot be judged")
    if at > crl.next_update_utc + skew:
        raise CrlError(f"the CRL is stale: nextUpdate {crl.next_update_utc.isoformat()} has passed")


def status_from_crl(crl: x509.CertificateRevocationList, cert: x509.Certificate) -> CertStatus:
    """good / hold / revoked of `cert` by a CRL already checked with `verify_crl`.

    A CRL cannot say "unknown": a serial it does not list is good.
    """
    if crl.issuer != cert.issuer:
        raise ValueError("the certificate was not issued by the CRL's issuer")
    not_after = cert.not_valid_after_utc
    entry = crl.get_revoked_certificate_by_serial_number(cert.serial_number)
    if entry is None:
        return CertStatus(GOOD, not_after=not_after)
    try:
        reason = entry.extensions.get_extension_for_class(x509.CRLReason).value.reason
    except x509.ExtensionNotFound:
        reason = x509.ReasonFlags.unspecified
    status = HOLD if reason == x509.ReasonFlags.certificate_hold else REVOKED
    return CertStatus(status, entry.revocation_date_utc, reason, not_after)


class CrlPublisher:
    """The current CRL of each CA, for serving: rebuilt when the entries change or it ages.

    CRL numbers must increase (RFC 5280 §5.2.3): a new CRL gets max(previous + 1, the POSIX
    seconds of its thisUpdate), so numbers also keep increasing across restarts of the server.
    """

    def __init__(self, cas: dict, source: RevocationSource, *,
                 next_update_after: _dt.timedelta = DEFAULT_CRL_VALIDITY,
                 refresh_after: _dt.timedelta | None = None):
        for kind, ca in cas.items():
            check_ca(ca, kind)
        self.cas = dict(cas)
        self.source = source
        self.next_update_after = next_update_after
        # Reissue well before nextUpdate so a fetched CRL is never nearly stale.
        self.refresh_after = refresh_after if refresh_after is not None else next_update_after / 2
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[_dt.datetime, tuple, int, x509.CertificateRevocationList]] = {}

    def current(self, kind: str, at: _dt.datetime) -> x509.CertificateRevocationList:
        if kind not in self.cas:
            raise KeyError(f"no CA of kind {kind!r} is served")
        at = instant(at)
        entries = tuple(self.source.revoked_certificates(kind, at))
        with self._lock:
            cached = self._cache.get(kind)
            if cached is not None:
                built_at, old_entries, number, crl = cached
                if old_entries == entries and built_at <= at < built_at + self.refresh_after:
                    return crl
                number = max(number + 1, int(at.timestamp()))
            else:
                number = max(0, int(at.timestamp()))
            # Signed from the entries just compared, so the cache key matches the CRL's content.
            crl = _sign_crl(self.cas[kind], kind, entries, at, self.next_update_after, number)
            self._cache[kind] = (at, entries, number, crl)
            return crl


"""The 証明書交付センター (certificate issuing centre) of コンビニ交付, as a service (its HTTP door: centre_http.py).

Roles (CVS-2, CVS-15): kiosk terminal → **centre** → the resident's municipality (its 証明発行
サーバ, issuance/kiosk/municipality.py), with the JPKI centre answering the 有効性の確認 (OCSP, falling
back to its CRL, issuance/pki/ocsp.py). Three methods (CVS-14):

- **新方式 (shin)**: the kiosk sends the card's user-authentication certificate and the card's
  signature over a fresh centre nonce. The centre checks (CVS-16), in this order: the
  certificate parses; it is signed by the TEST JPKI auth CA (chain to the trust anchor, which
  must itself be valid); the signature over the nonce verifies with the certificate's key
  (proof that the card holds the key and that its PIN was verified); the validity dates; the
  JPKI validity service says "good" (OCSP, else the CRL; a hold (一時保留) or a revocation is
  refused). Only then is the request routed to the municipality of residence (CVS-5), which
  finds the resident by the certificate serial (CVS-18) and produces the PDF.
- **変換方式 (henkan)**: the same checks; the centre then converts the certificate to the
  municipality's 利用者ID (利用者IDへの変換, CVS-15) and sends only that, so the municipality's
  existing server works unchanged (CVS-14).
- **現行方式 (genko)**: the kiosk reads the 利用者ID from the card's 条例利用AP behind the
  document's own PIN (AP-8, card/apps/jorei.py) and sends it with the municipality code.

Kiosk ↔ centre authentication (CVS-4 "secure communications"; the mutual authentication of
現行方式, 000:10023-10036). Decision: every kiosk holds a TEST HMAC-SHA256 key registered at the
centre. The kiosk MACs each request (method, path, body); the centre refuses an unknown kiosk or
a bad MAC, and MACs each response together with the request's MAC, so the kiosk knows the answer
comes from the centre and belongs to its own request. Together with the single-use nonce this
stops replays of a captured request.

Nonces: 32 random bytes per session, single use (taken out of the table before anything else is
checked), bound to the kiosk and the method, and valid for `nonce_lifetime` (60 s) of the
centre's clock. A replayed nonce or signature is refused as "challenge-replayed", a late one as
"challenge-expired".

The centre's clock is injectable (every service of a TEST stack shares one, so `--at` moves the
whole stack). Logs name the kiosk, method, document and outcome; never a PIN (none reaches the
centre), a 個人番号, a name, or the certificate serial (JPKI-3).

The audit trail (SEC-8: failed access attempts are logged, naming who acted). The centre acts
as `service:centre`: every refusal of a well-formed request, from the challenge on (signature,
chain, dates, validity, the card's state, the routing, and what the municipality refused), is a
`refused` record with the kiosk as terminal, the reason code as reason and, when the presented
certificate is one the store issued (every byte), that card's application id as target. A
document issued is recorded by its municipality (municipality.py). Decision: a request that is
malformed (`bad-request`: a field missing or of the wrong type, bad base64) is not audited: it
names no person and proves no attempt on anyone's card, and auditing it would let any kiosk
grow the trail at will; nor is a request whose kiosk fails authentication (centre_http.py logs
it): its kiosk id is unproven. `trail` is the store's (store.StoreCentreTrail) over a home or a
--db, records.MemoryCentreTrail for an in-process stack.

Refusals carry a reason from REASONS; each reason belongs to one class (issuance/kiosk/wire.py,
the contract the kiosk terminal shares). This module is the centre as a service, apart from its
doors: the HTTP door is centre_http.py, the residents it asks about are residents.py, its keys
are keyfiles.py, and services.py wires it to the municipalities and the JPKI validity service.
"""
from __future__ import annotations

import base64
import binascii
import dataclasses
import datetime as _dt
import logging
import secrets
import threading
import time
from typing import Callable

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from mynaemu.issuance import validate
from mynaemu.issuance.clock import JST, utc_now
from mynaemu.issuance.kiosk.documents import DOCUMENTS
from mynaemu.issuance.kiosk.residents import ResidentDirectory
from mynaemu.issuance.kiosk.wire import METHODS, NONCE_BYTES, SERVICE_NAME, Refusal, check_kiosk_key
from mynaemu.issuance.pki import ocsp as _ocsp
from mynaemu.issuance.pki import revocation as rv

log = logging.getLogger(__name__)

DEFAULT_NONCE_LIFETIME = _dt.timedelta(seconds=60)
DEFAULT_VALIDITY_TIMEOUT = 2.0


# --- the centre -----------------------------------------------------------------------------
@dataclasses.dataclass
class _Session:
    kiosk_id: str
    method: str
    expires: _dt.datetime


def _b64(value, what: str) -> bytes:
    if not isinstance(value, str):
        raise Refusal("bad-request", f"{what} must be a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise Refusal("bad-request", f"{what} is not valid base64") from None


def _iso(t: _dt.datetime) -> str:
    return t.astimezone(JST).isoformat(timespec="seconds")


class Centre:
    """証明書交付センター: sessions (nonces), certificate verification (CVS-16), routing (CVS-5).

    trust_anchor: the TEST JPKI auth CA certificate. ocsp_url / crl_url: the JPKI validity
    service (either may be None; with neither, every JPKI request is refused as
    validity-unavailable). municipalities: 団体コード -> MunicipalityServer.
    kiosk_keys: kiosk id -> HMAC key (used by the HTTP layer).
    """

    def __init__(self, *, trust_anchor: x509.Certificate, directory: ResidentDirectory,
                 municipalities: dict, kiosk_keys: dict, clock: Callable[[], _dt.datetime] = utc_now,
                 ocsp_url: str | None = None, crl_url: str | None = None,
                 nonce_lifetime: _dt.timedelta = DEFAULT_NONCE_LIFETIME,
                 validity_timeout: float = DEFAULT_VALIDITY_TIMEOUT, challenges=None, trail):
        if not isinstance(trust_anchor, x509.Certificate):
            raise TypeError("trust_anchor must be an x509.Certificate")
        if not isinstance(directory, ResidentDirectory):
            raise TypeError("directory must implement ResidentDirectory")
        if not callable(getattr(trail, "refused", None)):
            raise TypeError("trail must record the centre's refusals (store.StoreCentreTrail or "
                            "records.MemoryCentreTrail)")
        self.trust_anchor = trust_anchor
        self.directory = directory
        self.trail = trail   # SEC-8: the refusals, under service:centre
        self.municipalities = dict(municipalities)
        self.kiosk_keys = {str(k): check_kiosk_key(v) for k, v in kiosk_keys.items()}
        self.clock = clock
        self.ocsp_url = ocsp_url
        self.crl_url = crl_url
        self.nonce_lifetime = nonce_lifetime
        self.validity_timeout = validity_timeout
        # One kept-alive link to the validity service for every check (bench P4).
        self._ocsp = _ocsp.OcspClient(ocsp_url, timeout=validity_timeout) if ocsp_url else None
        self._lock = threading.Lock()
        self._sessions: dict[bytes, _Session] = {}
        # Worker processes (issuance/http/prefork.py) share no dict: they get MACed challenges spent
        # in the store instead (issuance/kiosk/challenges.py); None: the dict above.
        self.challenges = challenges

    def close(self) -> None:
        """Close the idle link to the validity service (it reopens on the next check)."""
        if self._ocsp is not None:
            self._ocsp.close()

    def now(self) -> _dt.datetime:
        return rv.instant(self.clock(), "clock()")

    def health(self) -> dict:
        """What the centre says about itself to anyone (unauthenticated): its name and time."""
        return {"service": SERVICE_NAME, "time": _iso(self.clock())}

    # -- sessions ---------------------------------------------------------------------------
    def open_session(self, kiosk_id: str, method: str) -> dict:
        """A fresh single-use nonce for this kiosk and method."""
        if method not in METHODS:
            raise Refusal("bad-request", f"method must be one of {', '.join(METHODS)}")
        now = self.clock()
        if self.challenges is not None:
            nonce = self.challenges.open(kiosk_id, method, now + self.nonce_lifetime)
            return {"nonce": base64.b64encode(nonce).decode("ascii"),
                    "expires_at": _iso(now + self.nonce_lifetime), "centre_time": _iso(now)}
        nonce = secrets.token_bytes(NONCE_BYTES)
        with self._lock:
            # Drop expired sessions so an idle kiosk cannot grow the table without bound. The
            # table is in opening order, so expiries rise along it: drop from the front and stop
            # at the first live one (scanning the whole table made every open cost O(sessions):
            # ~1 ms at 10,000, which a busy centre holds within its 60 s lifetime). Should the
            # clock step back, a few expired ones wait behind a live one; _take_session still
            # refuses them.
            while self._sessions:
                oldest = next(iter(self._sessions))
                if self._sessions[oldest].expires >= now:
                    break
                del self._sessions[oldest]
            self._sessions[nonce] = _Session(kiosk_id, method, now + self.nonce_lifetime)
        return {"nonce": base64.b64encode(nonce).decode("ascii"),
                "expires_at": _iso(now + self.nonce_lifetime), "centre_time": _iso(now)}

    def _take_session(self, nonce: bytes, kiosk_id: str, method: str) -> None:
        if self.challenges is not None:
            return self.challenges.take(nonce, kiosk_id, method, self.clock(), self.nonce_lifetime)
        with self._lock:
            session = self._sessions.pop(nonce, None)  # single use, whatever happens next
        if session is None:
            raise Refusal("challenge-replayed", "the challenge is unknown or was already used (replay)")
        if session.kiosk_id != kiosk_id or session.method != method:
            raise Refusal("challenge-replayed", "the challenge was issued to another kiosk or method")
        if self.clock() > session.expires:
            raise Refusal("challenge-expired", "the challenge expired before the card answered "
                                               f"(lifetime {self.nonce_lifetime.total_seconds():.0f} s)")

    # -- CVS-16 -------------------------------------------------------------------------------
    def verify_certificate(self, cert_der: bytes, signature: bytes, nonce: bytes,
                           checks: list) -> x509.Certificate:
        """The checked certificate, or Refusal naming the first check that failed."""
        now = self.now()
        try:
            cert = x509.load_der_x509_certificate(cert_der)
            public_key = cert.public_key()
            cert.not_valid_after_utc  # noqa: B018  (forces the validity to parse)
        except (ValueError, TypeError):
            raise Refusal("cert-invalid", "the user-authentication certificate is truncated or "
                                          "malformed") from None
        checks.append({"check": "certificate", "result": "parsed (DER X.509)"})
        anchor = self.trust_anchor
        try:
            if cert.issuer != anchor.subject:
                raise ValueError("issuer name differs")
            cert.verify_directly_issued_by(anchor)
        except (ValueError, TypeError, InvalidSignature):
            raise Refusal("chain-invalid", "the certificate was not issued by the TEST JPKI "
                                           "user-authentication CA") from None
        if not anchor.not_valid_before_utc <= now <= anchor.not_valid_after_utc:
            raise Refusal("chain-invalid", "the TEST JPKI user-authentication CA certificate is "
                                           "not valid now")
        checks.append({"check": "chain", "result": "issued by the TEST JPKI auth CA"})
        if not isinstance(public_key, rsa.RSAPublicKey):
            raise Refusal("cert-invalid", "the certificate does not hold an RSA key")
        try:
            public_key.verify(signature, nonce, padding.PKCS1v15(), hashes.SHA256())
        except (InvalidSignature, ValueError):
            raise Refusal("signature-invalid", "the card's signature over the challenge does not "
                                               "verify with its certificate (key mismatch)") from None
        checks.append({"check": "signature", "result": "card signed the centre's challenge"})
        if now < cert.not_valid_before_utc:
            raise Refusal("cert-not-yet-valid", "the certificate is not yet valid (from "
                                                f"{_iso(cert.not_valid_before_utc)})")
        if now > cert.not_valid_after_utc:
            raise Refusal("cert-expired", f"the certificate expired on {_iso(cert.not_valid_after_utc)}")
        checks.append({"check": "dates", "result": f"valid until {_iso(cert.not_valid_after_utc)}"})
        status, source = self._validity(cert, now)
        checks.append({"check": "validity", "result": status.status, "source": source})
        if status.status == rv.HOLD:
            raise Refusal("cert-hold", "the certificate is on hold (一時保留): the card is suspended",
                          source=source)
        if status.status == rv.REVOKED:
            raise Refusal("cert-revoked", "the certificate is revoked (失効)", source=source)
        if status.status != rv.GOOD:
            raise Refusal("cert-unknown", "the CA does not know this certificate", source=source)
        return cert

    def _validity(self, cert: x509.Certificate, now: _dt.datetime):
        """(CertStatus, "ocsp"|"crl"): OCSP first, the CRL when OCSP gives no trustworthy answer."""
        problems = []
        if self._ocsp is not None:
            try:
                return self._ocsp.check(cert, self.trust_anchor, at=now), "ocsp"
            except _ocsp.OcspUnavailable as exc:
                problems.append(f"OCSP: {exc}")
                log.warning("OCSP unavailable, falling back to the CRL: %s", exc)
        if self.crl_url:
            try:
                crl = _ocsp.fetch_crl(self.crl_url, self.trust_anchor, at=now, timeout=self.validity_timeout)
                return rv.status_from_crl(crl, cert), "crl"
            except rv.CrlError as exc:
                problems.append(f"CRL: {exc}")
        raise Refusal("validity-unavailable", "the JPKI validity service cannot be reached ("
                      + ("; ".join(problems) or "no OCSP or CRL configured") + ")")

    # -- the transaction ----------------------------------------------------------------------
    def issue(self, kiosk_id: str, request: dict) -> dict:
        """Verify and route one request; the answer dict, or Refusal (audited unless the request
        is malformed, see the module's docstring)."""
        try:
            # the kiosk id becomes the audit's terminal: one line, printable ASCII (SEC-8)
            validate.ascii_token(kiosk_id, "terminal")
        except validate.InputError as exc:
            raise Refusal("bad-request", f"kiosk id: {exc}") from None
        try:
            return self._issue(kiosk_id, request)
        except Refusal as refusal:
            if refusal.reason != "bad-request":
                self._audit_refusal(kiosk_id, request, refusal)
            raise

    def _audit_refusal(self, kiosk_id: str, request: dict, refusal: Refusal) -> None:
        detail = {"method": request.get("method"), "document": request.get("document")}
        serial = der = None
        if request.get("method") in ("shin", "henkan"):
            try:
                der = base64.b64decode(request.get("certificate"), validate=True)
                serial = x509.load_der_x509_certificate(der).serial_number
            except (binascii.Error, ValueError, TypeError):
                serial = der = None   # not a certificate: no card to name
        else:
            code = request.get("municipality_code")
            if isinstance(code, str) and len(code) == 5 and code.isascii() and code.isdigit():
                detail["municipality"] = code
        try:
            self.trail.refused(at=self.now(), kiosk_id=kiosk_id, reason=refusal.reason, detail=detail,
                               auth_serial=serial, auth_der=der)
        except Exception:  # noqa: BLE001 — the refusal stands whether or not the trail took it
            log.exception("could not audit the refusal kiosk=%s reason=%s", kiosk_id, refusal.reason)

    def _issue(self, kiosk_id: str, request: dict) -> dict:
        t0 = time.perf_counter()
        if not isinstance(request, dict):
            raise Refusal("bad-request", "the request must be a JSON object")
        method = request.get("method")
        document = request.get("document")
        with_number = request.get("with_number", False)
        if method not in METHODS:
            raise Refusal("bad-request", f"method must be one of {', '.join(METHODS)}")
        if document not in DOCUMENTS:
            raise Refusal("bad-request", f"document must be one of {', '.join(DOCUMENTS)}")
        if not isinstance(with_number, bool):
            raise Refusal("bad-request", "with_number must be true or false")
        if with_number and document != "juminhyo":
            raise Refusal("bad-request", "the 個人番号 can be printed only on a 住民票 (NUM-13)")
        with_code = request.get("with_code", False)
        if not isinstance(with_code, bool) or (with_code and document != "juminhyo"):
            raise Refusal("bad-request", "with_code (the 住民票コード) is true or false, and only for a 住民票")
        nonce = _b64(request.get("nonce"), "nonce")
        self._take_session(nonce, kiosk_id, method)
        checks = [{"check": "challenge", "result": "fresh, single use"}]
        if method in ("shin", "henkan"):
            cert = self.verify_certificate(_b64(request.get("certificate"), "certificate"),
                                           _b64(request.get("signature"), "signature"), nonce, checks)
            t_verified = time.perf_counter()
            resident = self.directory.resident_for_certificate(cert)  # byte for byte, not the serial
            if resident is None:
                raise Refusal("resident-unknown", "no resident is registered for this certificate")
            muni = self._municipality(resident.municipality_code)
            if method == "shin":
                checks.append({"check": "route", "result": f"municipality {muni.code} by certificate"})
                produced = muni.produce_for_certificate(cert, document, with_number=with_number, with_code=with_code,
                                                        at=self.now(), method=method, kiosk_id=kiosk_id)
            else:
                if not resident.user_id:
                    raise Refusal("resident-unknown", "the resident has no 利用者ID for 変換方式")
                checks.append({"check": "convert", "result": "certificate converted to the 利用者ID"})
                checks.append({"check": "route", "result": f"municipality {muni.code} by 利用者ID"})
                produced = muni.produce_for_user_id(resident.user_id, document, with_number=with_number, with_code=with_code,
                                                    at=self.now(), method=method, kiosk_id=kiosk_id)
        else:
            user_id = request.get("user_id")
            code = request.get("municipality_code")
            card_serial = request.get("card_serial")  # the card the 条例利用AP is on (jorei DF63)
            if not isinstance(user_id, str) or not isinstance(code, str):
                raise Refusal("bad-request", "現行方式 needs user_id and municipality_code")
            if card_serial is not None and not (isinstance(card_serial, str) and card_serial.isascii()
                                                and card_serial.isdigit() and len(card_serial) == 15):
                raise Refusal("bad-request", "card_serial must be 15 digits")
            t_verified = time.perf_counter()
            muni = self._municipality(code)
            checks.append({"check": "route", "result": f"municipality {muni.code} by 利用者ID"})
            produced = muni.produce_for_user_id(user_id, document, with_number=with_number, with_code=with_code,
                                                at=self.now(), method=method, card_serial=card_serial,
                                                kiosk_id=kiosk_id)
        log.info("issued kiosk=%s method=%s document=%s municipality=%s", kiosk_id, method, document, muni.code)
        return {
            "status": "issued",
            "document": document,
            "method": method,
            "municipality": {"code": muni.code, "name": muni.name},
            "pdf": base64.b64encode(produced.pdf).decode("ascii"),
            "fee": produced.fee,
            "verification_code": produced.verification_code,
            "key_id": produced.key_id,
            "issued_at": produced.issued_at,
            "serial": produced.serial,
            "checks": checks,
            "timing": {"verify_s": t_verified - t0, "render_s": produced.render_seconds,
                       "total_s": time.perf_counter() - t0},
        }

    def _municipality(self, code: str):
        muni = self.municipalities.get(code)
        if muni is None:
            raise Refusal("method-unavailable", f"municipality {code} does not offer コンビニ交付")
        return muni


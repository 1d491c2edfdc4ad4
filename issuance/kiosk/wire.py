"""The contract between the kiosk terminal and the 証明書交付センター: what both sides import.

The kiosk (tools/terminal/kiosk.py) and the centre (issuance/kiosk/centre.py and its HTTP door,
centre_http.py) agree here, and nowhere else, on:

- the refusals: each reason (``REASONS``) belongs to one class (``RefusalClass``), and a refused
  transaction is a ``Refusal`` on either side of the wire. The class is a fact of the domain; its
  number is the ``code`` field of a refusal on the wire. What a class becomes at a door is the
  door's: the exit code is the CLI's (tools/cli/kiosk.py EXIT_CODES), the HTTP status the centre's
  HTTP door's (centre_http.HTTP_STATUS);
- the authentication of kiosk ↔ centre (CVS-4 "secure communications", the mutual authentication
  of 現行方式, 000:10023-10036): every request is MACed with the kiosk's TEST HMAC-SHA256 key
  (method, path, body) and every answer with the same key, bound to the request's MAC
  (``request_mac``, ``response_mac``);
- the paths, headers and JSON field names of requests and answers;
- the service hours (CVS-6), which the kiosk checks before it touches a card and the municipality
  again before it issues.

Nothing here does I/O or holds state: the module is the vocabulary of the conversation.
"""
from __future__ import annotations

import datetime as _dt
import enum
import hashlib
import hmac

from mynaemu.issuance.clock import JST

METHODS = ("shin", "henkan", "genko")   # 新方式, 変換方式, 現行方式 (CVS-14)
DEFAULT_KIOSK_ID = "TEST-KIOSK-0001"
SERVICE_NAME = "mynaemu-TEST-certificate-centre"
NONCE_BYTES = 32                        # a session's single-use challenge
MIN_KEY_BYTES = 16                      # a kiosk's HMAC key


# --- refusal reasons and their classes ----------------------------------------------------------
class RefusalClass(enum.IntEnum):
    """What kind of refusal a reason is. The value is the class's number on the wire (the `code`
    field of a refused answer), which kiosks read: it never changes."""

    PIN_WRONG = 3             # the card and its PIN (decided at the kiosk)
    PIN_BLOCKED = 4
    CERT_NOT_GOOD = 5         # 有効性の確認 (CVS-16): revoked, on hold, unknown
    CERT_DATES = 6            # expired, not yet valid
    CERT_INVALID = 7          # certificate, chain or card signature
    VALIDITY_UNAVAILABLE = 8  # OCSP and CRL both unreachable
    CARD = 9                  # the card went away or answered nonsense (kiosk)
    OUTSIDE_HOURS = 10        # CVS-6
    RESIDENT_UNKNOWN = 11     # the municipality does not know the person
    CHALLENGE = 12            # nonce handling
    AUTHENTICATION = 13       # kiosk <-> centre authentication
    CENTRE = 14               # the centre itself: unreachable, protocol error
    FEE_UNPAID = 15           # FEE-4: no payment, no print
    NOT_OFFERED = 16          # the document or method is not offered for this person / municipality


REASONS = {
    "pin-wrong": RefusalClass.PIN_WRONG,
    "pin-blocked": RefusalClass.PIN_BLOCKED,
    "pin-last-try": RefusalClass.PIN_BLOCKED,
    "cert-hold": RefusalClass.CERT_NOT_GOOD,
    "cert-revoked": RefusalClass.CERT_NOT_GOOD,
    "cert-unknown": RefusalClass.CERT_NOT_GOOD,
    "cert-expired": RefusalClass.CERT_DATES,
    "cert-not-yet-valid": RefusalClass.CERT_DATES,
    "cert-invalid": RefusalClass.CERT_INVALID,
    "chain-invalid": RefusalClass.CERT_INVALID,
    "signature-invalid": RefusalClass.CERT_INVALID,
    "validity-unavailable": RefusalClass.VALIDITY_UNAVAILABLE,
    "card-removed": RefusalClass.CARD,
    "card-error": RefusalClass.CARD,
    "outside-hours": RefusalClass.OUTSIDE_HOURS,
    "resident-unknown": RefusalClass.RESIDENT_UNKNOWN,
    "challenge-replayed": RefusalClass.CHALLENGE,
    "challenge-expired": RefusalClass.CHALLENGE,
    "kiosk-auth": RefusalClass.AUTHENTICATION,
    "centre-auth": RefusalClass.AUTHENTICATION,
    "centre-unavailable": RefusalClass.CENTRE,
    "bad-request": RefusalClass.CENTRE,
    "fee-unpaid": RefusalClass.FEE_UNPAID,
    "document-unavailable": RefusalClass.NOT_OFFERED,
    "method-unavailable": RefusalClass.NOT_OFFERED,
}

# The fields every refused answer has; anything else in it is a detail (e.g. tries_left, source).
REFUSAL_FIELDS = ("status", "reason", "code", "message")


class Refusal(Exception):
    """A refused transaction: `reason` (a key of REASONS), a one-line message, extra details."""

    def __init__(self, reason: str, message: str, **details):
        if reason not in REASONS:
            raise ValueError(f"unknown refusal reason {reason!r}")
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.details = details

    @property
    def refusal_class(self) -> RefusalClass:
        return REASONS[self.reason]

    @property
    def code(self) -> RefusalClass:
        """The class, as the number the wire's `code` field carries."""
        return self.refusal_class

    def to_json(self) -> dict:
        return {"status": "refused", "reason": self.reason, "code": int(self.code),
                "message": self.message, **self.details}

    @classmethod
    def from_json(cls, doc) -> Refusal | None:
        """The Refusal a refused answer carries; None when `doc` names no known reason."""
        reason = doc.get("reason") if isinstance(doc, dict) else None
        if not isinstance(reason, str) or reason not in REASONS:   # (a list is unhashable)
            return None
        extra = {k: v for k, v in doc.items() if k not in REFUSAL_FIELDS}
        return cls(reason, str(doc.get("message", reason)), **extra)


# --- paths, headers and fields ------------------------------------------------------------------
HEALTH_PATH = "/v1/health"     # GET, unauthenticated
SESSION_PATH = "/v1/session"   # POST: a fresh challenge
ISSUE_PATH = "/v1/issue"       # POST: verify, route, produce

KIOSK_ID_HEADER = "X-Kiosk-Id"
KIOSK_MAC_HEADER = "X-Kiosk-Mac"      # hex HMAC of the request (request_mac)
CENTRE_MAC_HEADER = "X-Centre-Mac"    # hex HMAC of the answer (response_mac)

# The JSON fields each POST route takes and their types (a present one of another type: 400
# before the centre sees the request), and the ones it requires.
ROUTE_FIELDS = {
    SESSION_PATH: ({"method": str}, ("method",)),
    ISSUE_PATH: ({"method": str, "document": str, "with_number": bool, "nonce": str, "certificate": str,
                  "signature": str, "user_id": str, "municipality_code": str}, ("method", "document", "nonce")),
}
# Every field a kiosk may send. 新方式/変換方式 add certificate + signature; 現行方式 adds what
# the 条例利用AP holds (user_id, municipality_code, card_serial; card/apps/jorei.py).
SESSION_REQUEST_FIELDS = ("kiosk_id", "method")
ISSUE_REQUEST_FIELDS = ("kiosk_id", "method", "document", "with_number", "with_code", "nonce",
                        "certificate", "signature", "user_id", "municipality_code", "card_serial")
# The fields of the centre's answers.
HEALTH_FIELDS = ("service", "time")
SESSION_FIELDS = ("nonce", "expires_at", "centre_time")
ISSUED_FIELDS = ("status", "document", "method", "municipality", "pdf", "fee", "verification_code",
                 "key_id", "issued_at", "serial", "checks", "timing")


# --- kiosk authentication -----------------------------------------------------------------------
REQUEST_DOMAIN = b"mynaemu-kiosk-request-v1\n"
RESPONSE_DOMAIN = b"mynaemu-centre-response-v1\n"


def request_mac(key: bytes, method: str, path: str, body: bytes) -> bytes:
    """HMAC-SHA256 of a kiosk request (HTTP method, path, body) with the kiosk's key."""
    return hmac.new(key, REQUEST_DOMAIN + f"{method} {path}\n".encode("ascii") + body,
                    hashlib.sha256).digest()


def response_mac(key: bytes, req_mac: bytes, status: int, body: bytes) -> bytes:
    """HMAC-SHA256 of the centre's answer, bound to the request it answers."""
    return hmac.new(key, RESPONSE_DOMAIN + req_mac + f"\n{status}\n".encode("ascii") + body,
                    hashlib.sha256).digest()


def check_kiosk_key(key) -> bytes:
    if not isinstance(key, (bytes, bytearray)) or len(key) < MIN_KEY_BYTES:
        raise ValueError("a kiosk key is at least 16 bytes")
    return bytes(key)


# --- service hours (CVS-6) ----------------------------------------------------------------------
SERVICE_OPENS = _dt.time(6, 30)    # CVS-6
SERVICE_CLOSES = _dt.time(23, 0)   # CVS-6


def within_service_hours(at: _dt.datetime, opens: _dt.time = SERVICE_OPENS,
                         closes: _dt.time = SERVICE_CLOSES) -> bool:
    """Whether `at` (aware) falls in [opens, closes) in Japan time (CVS-6)."""
    if at.tzinfo is None:
        raise ValueError("instants must be timezone-aware")
    local = at.astimezone(JST).time()
    return opens <= local < closes

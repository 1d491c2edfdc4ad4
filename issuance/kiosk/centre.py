"""The 証明書交付センター (certificate issuing centre) of コンビニ交付, and its loopback HTTP service.

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

Refusals carry a reason from REASONS; each reason belongs to one class with its own exit code,
which the kiosk CLI uses (tools/cli/kiosk.py documents them).
"""
from __future__ import annotations

import base64
import binascii
import dataclasses
import datetime as _dt
import hashlib
import hmac
import json
import logging
import random
import secrets
import threading
import time
from typing import Callable, Protocol, runtime_checkable

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from mynaemu.issuance.pki import ocsp as _ocsp
from mynaemu.issuance.pki import revocation as rv
from mynaemu.issuance.kiosk.documents import DOCUMENTS
from mynaemu.issuance.identity import Identity
from mynaemu.issuance.http.body import BadBody, check_fields, json_object
from mynaemu.issuance.http.keepalive import KeepAliveHandler, KeepAliveServer
from mynaemu.issuance.numbering import individual_number_from_juminhyo_code
from mynaemu.issuance.policy import JST

log = logging.getLogger(__name__)

METHODS = ("shin", "henkan", "genko")
SERVICE_NAME = "mynaemu-TEST-certificate-centre"
NONCE_BYTES = 32
DEFAULT_NONCE_LIFETIME = _dt.timedelta(seconds=60)
DEFAULT_VALIDITY_TIMEOUT = 2.0
MAX_BODY = 256 * 1024
DEFAULT_KIOSK_ID = "TEST-KIOSK-0001"

# --- refusal reasons and their classes (exit codes of `mynaemu kiosk issue`) ----------------
REASONS = {
    # the card and its PIN (decided at the kiosk)
    "pin-wrong": 3,
    "pin-blocked": 4,
    "pin-last-try": 4,
    # 有効性の確認 (CVS-16)
    "cert-hold": 5,
    "cert-revoked": 5,
    "cert-unknown": 5,
    "cert-expired": 6,
    "cert-not-yet-valid": 6,
    "cert-invalid": 7,
    "chain-invalid": 7,
    "signature-invalid": 7,
    "validity-unavailable": 8,
    # the card went away or answered nonsense (kiosk)
    "card-removed": 9,
    "card-error": 9,
    # CVS-6
    "outside-hours": 10,
    # the municipality does not know the person
    "resident-unknown": 11,
    # nonce handling
    "challenge-replayed": 12,
    "challenge-expired": 12,
    # kiosk <-> centre authentication
    "kiosk-auth": 13,
    "centre-auth": 13,
    # the centre itself
    "centre-unavailable": 14,
    "bad-request": 14,
    # FEE-4: no payment, no print
    "fee-unpaid": 15,
    # the service is not offered for this person / municipality
    "document-unavailable": 16,
    "method-unavailable": 16,
}
EXIT_CLASSES = {
    3: "PIN wrong (tries left shown)",
    4: "PIN blocked, or at its last try without --last-try (the kiosk never sends it)",
    5: "certificate revoked, on hold (一時保留) or unknown to the CA; card suspended (一時停止) or out of service",
    6: "certificate or card expired, or certificate not yet valid",
    7: "certificate, chain or card signature invalid (other CA, key mismatch, truncated)",
    8: "validity service unreachable (OCSP and CRL both)",
    9: "card removed or card communication failed",
    10: "outside service hours (6:30-23:00, CVS-6)",
    11: "resident unknown to the municipality",
    12: "challenge replayed or expired",
    13: "kiosk/centre authentication failed",
    14: "centre unreachable or protocol error",
    15: "fee not paid (nothing printed, FEE-4)",
    16: "document or method not offered for this resident",
}
HTTP_STATUS = {3: 403, 4: 403, 5: 403, 6: 403, 7: 403, 8: 503, 9: 400, 10: 403, 11: 404, 12: 409,
               13: 401, 14: 400, 15: 402, 16: 403}


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
    def code(self) -> int:
        return REASONS[self.reason]

    def to_json(self) -> dict:
        return {"status": "refused", "reason": self.reason, "code": self.code,
                "message": self.message, **self.details}


# --- clocks ---------------------------------------------------------------------------------
def utc_now() -> _dt.datetime:
    return _dt.datetime.now(_dt.timezone.utc)


class SettableClock:
    """A clock that starts at `start` and runs in real time from there; `advance` jumps ahead.

    Shared by every service of a TEST stack so that `--at` moves kiosk, centre and OCSP together.
    """

    def __init__(self, start: _dt.datetime | None = None):
        start = start or utc_now()
        if start.tzinfo is None:
            raise ValueError("the clock's start must be timezone-aware")
        self._start = start
        self._t0 = time.monotonic()
        self._offset = _dt.timedelta(0)
        self._lock = threading.Lock()

    def __call__(self) -> _dt.datetime:
        with self._lock:
            return self._start + _dt.timedelta(seconds=time.monotonic() - self._t0) + self._offset

    def advance(self, delta: _dt.timedelta | float) -> None:
        if not isinstance(delta, _dt.timedelta):
            delta = _dt.timedelta(seconds=delta)
        with self._lock:
            self._offset += delta


# --- residents (住民票 data, synthetic) ------------------------------------------------------
HONSEKI_PLACEHOLDER = "（記載省略：TEST データには本籍・筆頭者がありません）"


@dataclasses.dataclass(frozen=True)
class HouseholdMember:
    name: str
    birth: _dt.date
    sex: str
    relation: str                 # 続柄: 世帯主, 妻, 夫, 子, ...
    became_resident: _dt.date     # 住民となった日
    individual_number: str
    remarks: str = ""
    # DATA-6 (発行用住民票ファイル): 住定日, 届出日, 従前の住所, and the member's 住民票コード
    address_since: _dt.date | None = None   # 住所を定めた日 (None: the same as became_resident)
    notified_on: _dt.date | None = None     # 届出日 (None: not recorded, e.g. a birth)
    previous_address: str = ""              # 前住所 ("" for a birth in the municipality)
    juminhyo_code: str = ""


@dataclasses.dataclass(frozen=True)
class SealRegistration:
    """印鑑登録 (a municipal ordinance matter, not in the seeds; synthetic)."""

    number: str
    registered_on: _dt.date
    seal_text: str


@dataclasses.dataclass(frozen=True)
class Resident:
    """What the municipality's 住民基本台帳, 印鑑 and 税 systems know about one person (synthetic).

    household lists every member of the person's household, the person included; `self_index`
    says which one is the person. salary_income is the yearly salary the tax record derives from.
    """

    juminhyo_code: str
    name: str
    birth: _dt.date
    sex: str
    address: str
    individual_number: str
    municipality_code: str
    household: tuple
    self_index: int
    head_of_household: str
    honseki: str = HONSEKI_PLACEHOLDER
    seal: SealRegistration | None = None
    salary_income: int = 0
    user_id: str | None = None
    status: str = "resident"      # resident | removed | deceased (M10)
    # The state of the card this request came with (kiosk_trust.CardStatus); None when the
    # directory keeps no cards (the in-memory one), in which case only the JPKI checks apply.
    card: object | None = None

    def age_on(self, day: _dt.date) -> int:
        years = day.year - self.birth.year
        if (day.month, day.day) < (self.birth.month, self.birth.day):
            years -= 1
        return years


_GIVEN = {"1": ["一郎", "次郎", "健一", "大輔", "翔太"], "2": ["花子", "洋子", "真由美", "結衣", "葵"]}
SEAL_MIN_AGE = 15  # decision: 印鑑登録 needs age 15 (municipal 印鑑条例 practice, outside the seeds)


def _rng_for(*parts: str) -> random.Random:
    digest = hashlib.sha256("/".join(("mynaemu-resident-v1",) + parts).encode("utf-8")).digest()
    return random.Random(int.from_bytes(digest[:16], "big"))


def _birthday(birth: _dt.date, years: int) -> _dt.date:
    """The `years`-th birthday; a 29 February birth has it on 1 March in common years."""
    try:
        return birth.replace(year=birth.year + years)
    except ValueError:
        return _dt.date(birth.year + years, 3, 1)


def _member_code(juminhyo_code: str, index: int) -> str:
    # A household member's synthetic 住民票コード (11 digits).
    digest = hashlib.sha256(f"mynaemu-household/{juminhyo_code}/{index}".encode()).hexdigest()
    return f"{int(digest[:16], 16) % 10**11:011d}"


def _member_number(juminhyo_code: str, index: int) -> str:
    # A valid 個人番号 from the member's 住民票コード (rules.md §20 M2).
    return individual_number_from_juminhyo_code(_member_code(juminhyo_code, index),
                                                b"mynaemu TEST household numbering")


# Synthetic former addresses (前住所) for members who moved in; every one is fictional.
_PREVIOUS_ADDRESSES = ("埼玉県TEST市見本町二丁目５番８号", "神奈川県TEST市試験台１丁目１２番３号",
                       "千葉県TEST市架空町３丁目４番２０号", "東京都TEST区模擬町四丁目７番１号")


def _given_name(rng: random.Random, sex: str, taken: set) -> str:
    """A given name from the synthetic list that nobody in the household has yet."""
    names = _GIVEN[sex]
    first = names.index(rng.choice(names))
    for i in range(len(names)):
        candidate = names[(first + i) % len(names)]
        if candidate not in taken:
            return candidate
    return names[first]


def _with_moves(members: list, identity: Identity, on: _dt.date) -> tuple:
    """Each member's 住定日, 届出日, 前住所 and 住民票コード (DATA-6), from its own seed so the
    household drawn before stays the same."""
    rng = _rng_for(identity.juminhyo_code, "moves")
    out = []
    for index, m in enumerate(members):
        code = identity.juminhyo_code if m.individual_number == identity.individual_number \
            else _member_code(identity.juminhyo_code, index + 1)
        born_here = m.became_resident == m.birth
        since = m.became_resident if rng.random() < 0.7 else min(on, m.became_resident + _dt.timedelta(
            days=rng.randrange(30, 900)))
        previous = "" if born_here and since == m.became_resident else rng.choice(_PREVIOUS_ADDRESSES)
        notified = None if born_here and not previous else since + _dt.timedelta(days=rng.randrange(0, 14))
        out.append(dataclasses.replace(m, address_since=since, notified_on=min(notified, on) if notified else None,
                                       previous_address=previous, juminhyo_code=code))
    return tuple(out)


def synthesize_resident(identity: Identity, *, on: _dt.date, user_id: str | None = None,
                        status: str = "resident") -> Resident:
    """The municipality's records of `identity`'s holder: household, seal registration, salary.

    Deterministic in the 住民票コード: the same person always gets the same household.
    Under-15s live in a parent's household; adults head their own, sometimes with a spouse and
    a child. Only synthetic names (the holder's family name plus invented given names).
    """
    rng = _rng_for(identity.juminhyo_code)
    family = identity.name.split("\u3000")[0]
    age = identity.age_on(on)
    became = max(identity.birth, on - _dt.timedelta(days=rng.randrange(200, 4000)))
    me_rel = "世帯主"
    members = []
    taken = {identity.name.split("\u3000")[-1]}   # distinct given names in one household
    if age < 18:
        psex = rng.choice(["1", "2"])
        pbirth = identity.birth - _dt.timedelta(days=365 * rng.randrange(25, 40) + rng.randrange(365))
        given = _given_name(rng, psex, taken)
        taken.add(given)
        members.append(HouseholdMember(f"{family}\u3000{given}", pbirth, psex,
                                       "世帯主", became, _member_number(identity.juminhyo_code, 1)))
        me_rel = "子"
    me = HouseholdMember(identity.name, identity.birth, identity.sex, me_rel, became,
                         identity.individual_number)
    members.append(me)
    self_index = len(members) - 1
    if age >= 25 and rng.random() < 0.6:
        ssex = "2" if identity.sex == "1" else "1"
        sbirth = identity.birth + _dt.timedelta(days=rng.randrange(-1500, 1500))
        given = _given_name(rng, ssex, taken)
        taken.add(given)
        members.append(HouseholdMember(f"{family}\u3000{given}", sbirth, ssex,
                                       "妻" if ssex == "2" else "夫", became,
                                       _member_number(identity.juminhyo_code, 2)))
        if age >= 30 and rng.random() < 0.7:
            csex = rng.choice(["1", "2"])
            cbirth = on - _dt.timedelta(days=365 * rng.randrange(1, min(age - 22, 17)) + rng.randrange(365))
            given = _given_name(rng, csex, taken)
            taken.add(given)
            members.append(HouseholdMember(f"{family}\u3000{given}", cbirth, csex, "子",
                                           max(cbirth, became), _member_number(identity.juminhyo_code, 3)))
    head = members[0].name
    seal = None
    if age >= SEAL_MIN_AGE:
        seal = SealRegistration(f"{rng.randrange(10**6):06d}",
                                max(became, _birthday(identity.birth, SEAL_MIN_AGE)), family)
    salary = 0 if age < 18 else rng.randrange(180, 900) * 10_000
    return Resident(juminhyo_code=identity.juminhyo_code, name=identity.name, birth=identity.birth,
                    sex=identity.sex, address=identity.address,
                    individual_number=identity.individual_number,
                    municipality_code=identity.municipality_code,
                    household=_with_moves(members, identity, on),
                    self_index=self_index, head_of_household=head, seal=seal, salary_income=salary,
                    user_id=user_id, status=status)


@runtime_checkable
class ResidentDirectory(Protocol):
    """How the centre and the municipalities find a person (CVS-18: by 利用者ID or by the
    user-authentication certificate). None when nobody matches. A directory that records the
    issued certificates finds the person by the certificate's serial and then requires the
    presented certificate to equal the recorded one (kiosk_trust.issued_auth_certificate):
    a serial alone proves nothing."""

    def resident_for_certificate(self, certificate) -> Resident | None: ...

    def resident_for_user_id(self, user_id: str, card_serial: str | None = None) -> Resident | None: ...


class MemoryResidentDirectory:
    """A ResidentDirectory kept in memory (tests, benches).

    Registered with ``auth_certificates`` it matches a presented certificate byte for byte;
    registered with bare ``auth_serials`` (unit tests of the municipality) it matches the serial
    alone and relies on the centre's chain check, so it is no model of a store (StoreDirectory).
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._by_serial: dict[int, Resident] = {}
        self._der: dict[int, bytes] = {}
        self._by_user_id: dict[str, Resident] = {}

    def add(self, resident: Resident, *, auth_serials=(), auth_certificates=()) -> Resident:
        from cryptography.hazmat.primitives.serialization import Encoding

        with self._lock:
            for serial in auth_serials:
                self._by_serial[int(serial)] = resident
            for cert in auth_certificates:
                self._by_serial[cert.serial_number] = resident
                self._der[cert.serial_number] = cert.public_bytes(Encoding.DER)
            if resident.user_id:
                self._by_user_id[resident.user_id] = resident
        return resident

    def resident_for_certificate(self, certificate) -> Resident | None:
        """`certificate`: an x509.Certificate (or, for serial-only entries, its serial)."""
        from cryptography.hazmat.primitives.serialization import Encoding

        serial = certificate if isinstance(certificate, int) else certificate.serial_number
        with self._lock:
            resident, der = self._by_serial.get(serial), self._der.get(serial)
        if der is not None and (isinstance(certificate, int) or not hmac.compare_digest(
                der, certificate.public_bytes(Encoding.DER))):
            raise Refusal("cert-invalid", "the certificate is not the one issued for its serial number "
                                          "(another key or issuer)")
        return resident

    def resident_for_user_id(self, user_id: str, card_serial: str | None = None) -> Resident | None:
        """card_serial is ignored: this directory keeps no cards."""
        with self._lock:
            return self._by_user_id.get(user_id)


# --- kiosk authentication -------------------------------------------------------------------
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
    if not isinstance(key, (bytes, bytearray)) or len(key) < 16:
        raise ValueError("a kiosk key is at least 16 bytes")
    return bytes(key)


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
                 validity_timeout: float = DEFAULT_VALIDITY_TIMEOUT, challenges=None):
        if not isinstance(trust_anchor, x509.Certificate):
            raise TypeError("trust_anchor must be an x509.Certificate")
        if not isinstance(directory, ResidentDirectory):
            raise TypeError("directory must implement ResidentDirectory")
        self.trust_anchor = trust_anchor
        self.directory = directory
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
        """Verify and route one request; the answer dict, or Refusal."""
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
                                                        at=self.now(), method=method)
            else:
                if not resident.user_id:
                    raise Refusal("resident-unknown", "the resident has no 利用者ID for 変換方式")
                checks.append({"check": "convert", "result": "certificate converted to the 利用者ID"})
                checks.append({"check": "route", "result": f"municipality {muni.code} by 利用者ID"})
                produced = muni.produce_for_user_id(resident.user_id, document, with_number=with_number, with_code=with_code,
                                                    at=self.now(), method=method)
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
                                                at=self.now(), method=method, card_serial=card_serial)
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


# --- HTTP -----------------------------------------------------------------------------------
# The JSON fields each POST route takes and their types (anything else in them: 400 before the
# centre sees the request), and the ones it requires.
_ROUTE_FIELDS = {
    "/v1/session": ({"method": str}, ("method",)),
    "/v1/issue": ({"method": str, "document": str, "with_number": bool, "nonce": str, "certificate": str,
                   "signature": str, "user_id": str, "municipality_code": str}, ("method", "document", "nonce")),
}


class CentreHTTPServer(KeepAliveServer):
    """The centre on loopback (bounded worker pool, request deadline, strict bodies:
    issuance/http/keepalive.py); `shutdown()` stops the loop, closes the socket and ends every
    kept-alive connection, so a stopped centre answers nothing more."""

    def __init__(self, address, centre: Centre, **options):
        self.centre = centre
        super().__init__(address, _CentreHandler, **options)


class _CentreHandler(KeepAliveHandler):
    # HTTP/1.1 keeps a kiosk's connection open across its requests (issuance/http/keepalive.py): a
    # new connection and server thread per request dominated the decision time (bench P4).
    server: CentreHTTPServer
    server_version = "mynaemu-TEST-centre/1"
    _outcome = "-"

    def _reply(self, status: int, doc: dict, key: bytes | None, req_mac: bytes) -> None:
        body = json.dumps(doc, ensure_ascii=False).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        if self.close_connection:
            self.send_header("Connection", "close")   # e.g. after an unread body: no reuse
        if key is not None:
            self.send_header("X-Centre-Mac", response_mac(key, req_mac, status, body).hex())
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path != "/v1/health":
            self._outcome = "not found"
            return self._reply(404, {"status": "error", "message": "not found"}, None, b"")
        self._outcome = "health"
        now = self.server.centre.clock()
        self._reply(200, {"service": SERVICE_NAME, "time": _iso(now)}, None, b"")

    def refuse(self, status: int, reason: str) -> None:
        # The base's refusals (framing, deadline, stdlib errors) in the centre's JSON format;
        # unMACed: they come before the kiosk is known.
        self._outcome = f"http {status}"
        self.log_refusal("%d %s", status, reason)
        kind = "centre-unavailable" if status in (500, 503) else "bad-request"   # 501, 505: the client's
        self._reply(status, Refusal(kind, reason).to_json(), None, b"")

    def do_POST(self):
        body = self.read_body(MAX_BODY)   # 400/411/413 (issuance/http/keepalive.py) when it is not one
        if body is None:
            return
        kiosk_id = self.headers.get("X-Kiosk-Id", "")
        key = self.server.centre.kiosk_keys.get(kiosk_id)
        try:
            given = bytes.fromhex(self.headers.get("X-Kiosk-Mac", ""))
        except ValueError:
            given = b""
        if key is None or not hmac.compare_digest(given, request_mac(key, "POST", self.path, body)):
            self._outcome = "kiosk-auth"
            log.warning("refused an unauthenticated request from kiosk %r", kiosk_id[:40])
            return self._reply(401, Refusal("kiosk-auth", "the kiosk is unknown or its MAC is wrong").to_json(),
                               None, b"")
        centre = self.server.centre
        try:
            doc = json_object(body)
            fields = _ROUTE_FIELDS.get(self.path)
            if fields is None:
                self._outcome = "not found"
                return self._reply(404, {"status": "error", "message": "not found"}, key, given)
            check_fields(doc, fields[0], required=fields[1])
            if self.path == "/v1/session":
                answer = centre.open_session(kiosk_id, doc["method"])
            else:
                answer = centre.issue(kiosk_id, doc)
        except BadBody as exc:
            self._outcome = "bad body"
            return self._reply(400, Refusal("bad-request", str(exc)).to_json(), key, given)
        except Refusal as refusal:
            self._outcome = refusal.reason
            log.info("refused kiosk=%s reason=%s", kiosk_id, refusal.reason)
            return self._reply(HTTP_STATUS[refusal.code], refusal.to_json(), key, given)
        except Exception:  # a bug must not leave the kiosk hanging: answer, and log it
            log.exception("centre internal error")
            self._outcome = "internal error"
            return self._reply(500, {"status": "error", "message": "internal error"}, key, given)
        self._outcome = answer.get("status", "ok")
        self._reply(200, answer, key, given)

    def log_request(self, code="-", size="-"):
        log.info("%s %s %s %s %s", self.client_address[0], self.command, self.path, code, self._outcome)



def serve_centre(centre: Centre, host: str = "127.0.0.1", port: int = 0, **options):
    """Start the centre's HTTP service in a daemon thread: (server, thread, url). `options`
    (max_workers, max_pending, request_deadline, idle_timeout) go to KeepAliveServer."""
    server = CentreHTTPServer((host, port), centre, **options)
    thread = threading.Thread(target=server.serve_forever, name="mynaemu-centre", daemon=True)
    thread.start()
    bound_host, bound_port = server.server_address[:2]
    return server, thread, f"http://{bound_host}:{bound_port}"


# --- a whole TEST stack ---------------------------------------------------------------------
@dataclasses.dataclass
class Services:
    """The centre and the JPKI validity service (OCSP + CRL) running on loopback."""

    centre: Centre
    centre_url: str
    ocsp_url: str | None
    crl_url: str | None
    _servers: list = dataclasses.field(default_factory=list, repr=False)
    _threads: list = dataclasses.field(default_factory=list, repr=False)

    def stop(self) -> None:
        """Stop every server this stack started and wait for their threads; idempotent."""
        servers, self._servers = self._servers, []
        for server in servers:
            server.shutdown()
        threads, self._threads = self._threads, []
        for thread in threads:
            thread.join(5)
        self.centre.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def start_validity_service(pki, source: rv.RevocationSource, clock: Callable[[], _dt.datetime],
                           host: str = "127.0.0.1", **options):
    """The JPKI validity service: OCSP responder + CRLs of both TEST CAs. (server, thread, url).
    `options` go to KeepAliveServer (e.g. `listener`, issuance/http/prefork.py)."""
    responder = _ocsp.OcspResponder({"auth": pki.auth_ca, "sign": pki.sign_ca}, source, clock)
    return _ocsp.serve_ocsp(responder, host, **options)


def start_services(*, pki, source: rv.RevocationSource, directory: ResidentDirectory,
                   municipalities: dict, kiosk_keys: dict, clock: Callable[[], _dt.datetime] = utc_now,
                   host: str = "127.0.0.1", ocsp_url: str | None = None, crl_url: str | None = None,
                   validity: bool = True, centre_port: int = 0, listeners: dict | None = None,
                   **centre_kwargs) -> Services:
    """Start the validity service (unless `validity` is False) and the centre on loopback.

    ocsp_url / crl_url override where the centre looks (tests point one at a dead port).
    listeners: {"centre": socket, "validity": socket} already listening (a worker process of
    issuance/http/prefork.py) instead of binding host and port.
    """
    listeners = listeners or {}
    servers, threads = [], []
    try:
        own_url = None
        if validity:
            server, thread, own_url = start_validity_service(
                pki, source, clock, host, **({"listener": listeners["validity"]} if "validity" in listeners else {}))
            servers.append(server)
            threads.append(thread)
        o_url = ocsp_url if ocsp_url is not None else own_url
        c_url = crl_url if crl_url is not None else (_ocsp.crl_url(own_url, "auth") if own_url else None)
        centre = Centre(trust_anchor=pki.auth_ca.certificate, directory=directory,
                        municipalities=municipalities, kiosk_keys=kiosk_keys, clock=clock,
                        ocsp_url=o_url, crl_url=c_url, **centre_kwargs)
        server, thread, url = serve_centre(
            centre, host, centre_port, **({"listener": listeners["centre"]} if "centre" in listeners else {}))
        servers.append(server)
        threads.append(thread)
    except BaseException:
        for server in servers:
            server.shutdown()
        raise
    return Services(centre, url, o_url, c_url, servers, threads)


# --- the issuing store as the centre's back office ------------------------------------------
def _kiosk_folder(home):
    from pathlib import Path

    from mynaemu.issuance.private_files import private_dir

    return private_dir(Path(home) / "kiosk", tighten=True)  # 0700, its keys 0600


def _secret_file(path, nbytes: int = 32) -> bytes:
    """A random secret kept in `path` (hex, mode 0600), created on first use, never replaced."""
    from mynaemu.issuance.private_files import create_once

    if not path.exists():
        # first writer wins; a concurrent process reads the winner's secret
        create_once(path, (secrets.token_hex(nbytes) + "\n").encode("ascii"))
    try:
        value = bytes.fromhex(path.read_text().strip())
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: not a usable secret: {exc}") from None
    if len(value) < 16:
        raise ValueError(f"{path}: secret too short")
    return value


def load_or_create_kiosk_key(home, kiosk_id: str = DEFAULT_KIOSK_ID) -> bytes:
    """The TEST HMAC key shared by the kiosk `kiosk_id` and the centre, under `<home>/kiosk/`."""
    if not kiosk_id.replace("-", "").isalnum():
        raise ValueError(f"kiosk id {kiosk_id!r} must be letters, digits and '-'")
    return _secret_file(_kiosk_folder(home) / f"kiosk-{kiosk_id}.key")


USER_ID_DOMAIN = b"mynaemu-user-id-v1/"


def derive_user_id(secret: bytes, municipality_code: str, juminhyo_code: str) -> str:
    """The municipality's 利用者ID of a resident: a keyed function of the 住民票コード.

    Decision: the store has no 利用者ID column, so the ID is derived (HMAC-SHA256 with a secret
    of the deployment, 16 characters 0-9 A-Z); it reveals nothing about the 住民票コード.
    """
    from mynaemu.card.apps import jorei

    digest = hmac.new(secret, USER_ID_DOMAIN + f"{municipality_code}/{juminhyo_code}".encode("ascii"),
                      hashlib.sha256).digest()
    n = int.from_bytes(digest, "big")
    out = []
    for _ in range(jorei.USER_ID_LENGTH):
        n, r = divmod(n, len(jorei.USER_ID_ALPHABET))
        out.append(jorei.USER_ID_ALPHABET[r])
    return "".join(out)


class StoreDirectory:
    """ResidentDirectory over the issuing store: the SQLite file under `home`, or the
    PostgreSQL database at `db` (a postgresql:// URL; the same schema, issuance/store/__init__.py).

    Thread-safe like store.StoreRevocationSource: each question opens its own short read
    connection. The store has no query for "the person of an auth certificate" nor a 利用者ID,
    so the SQL lives here: certificates → cards → persons, and the 利用者ID is derived
    (derive_user_id) from a secret under `<home>/kiosk/` (with PostgreSQL too: the home keeps
    the kiosk's keys and secrets). The resident's household, seal registration and salary are
    synthesized deterministically from the person (synthesize_resident): the store keeps no
    住民票 beyond the 基本4情報.
    """

    def __init__(self, home, *, db: str | None = None):
        from pathlib import Path

        from mynaemu.issuance.store import StoreError, store_location

        self.home = Path(home)
        self.path = store_location(self.home, db)
        if db is None and not self.path.exists():
            raise StoreError(f"{self.path}: no issuing store here")
        self.user_id_secret = _secret_file(_kiosk_folder(self.home) / "user-id.secret")

    def _query(self, fn):
        from mynaemu.issuance.store import Store

        store = Store(self.path, migrate=False)
        try:
            return fn(store)
        finally:
            store.close()

    def _resident(self, store, person, card=None) -> Resident:
        from mynaemu.issuance.kiosk import trust as kiosk_trust
        from mynaemu.issuance.store import parse_iso

        if card is None:  # by 利用者ID (現行方式, 変換方式): the person's newest delivered card
            card = kiosk_trust.newest_delivered_card(store, person["id"])

        identity = Identity(
            name=person["name"], address=person["address"], birth=_dt.date.fromisoformat(person["birth"]),
            sex=person["sex"], individual_number=store.individual_number(person["id"]),
            juminhyo_code=person["juminhyo_code"], municipality_code=person["municipality_code"],
            prefecture_romaji=person["prefecture_romaji"], city_romaji=person["city_romaji"])
        return dataclasses.replace(synthesize_resident(
            identity, on=parse_iso(person["created_at"]).astimezone(JST).date(),
            user_id=derive_user_id(self.user_id_secret, person["municipality_code"], person["juminhyo_code"]),
            status=person["resident_status"]), card=card)

    def resident_for_certificate(self, certificate) -> Resident | None:
        """The holder of the card the store issued `certificate` (an x509.Certificate) to, with
        that card's state; None for an unknown serial; Refusal("cert-invalid") when the store
        issued a different certificate under that serial (kiosk_trust)."""
        from mynaemu.issuance.kiosk import trust as kiosk_trust

        def run(store):
            app_id = kiosk_trust.issued_auth_certificate(store, certificate)
            if app_id is None:
                return None
            person = store.person_of_card(app_id)
            return self._resident(store, person, kiosk_trust.card_status(store, app_id))
        return self._query(run)

    def resident_for_user_id(self, user_id: str, card_serial: str | None = None) -> Resident | None:
        """The person with this 利用者ID, with the state of the card `card_serial` (the card the
        条例利用AP was written on, which must be theirs) or else of their newest delivered card."""
        from mynaemu.issuance.kiosk import trust as kiosk_trust

        if not isinstance(user_id, str):
            return None

        def run(store):
            for person in store.all_persons():
                if hmac.compare_digest(derive_user_id(self.user_id_secret, person["municipality_code"],
                                                      person["juminhyo_code"]), user_id):
                    card = (None if card_serial is None
                            else kiosk_trust.card_of_person_by_serial(store, person["id"], card_serial))
                    return self._resident(store, person, card)
            return None
        return self._query(run)

    def municipality_codes(self) -> list[str]:
        return self._query(lambda store: store.municipality_codes())


def services_from_home(home, *, db: str | None = None, clock: Callable[[], _dt.datetime] = utc_now,
                       host: str = "127.0.0.1", pki=None, **kwargs) -> Services:
    """The whole TEST stack over the issuing store under `home` (or the PostgreSQL store at
    `db`): the JPKI validity service answering from the store, and the centre with one
    証明発行サーバ per municipality of the store (each signing as its mayor with a TEST LGPKI
    certificate under `<home>/kiosk/lgpki/`), trusting the home's kiosk key."""
    from mynaemu.issuance.kiosk.municipality import MunicipalityServer, load_or_create_signer
    from mynaemu.issuance.store import Store, StoreRevocationSource
    from mynaemu.issuance.store.pki import store_pki

    directory = StoreDirectory(home, db=db)
    if pki is None:
        with Store(directory.path) as store:
            pki = store_pki(store)  # the store's own CAs, never the built-in seeded ones
    source = StoreRevocationSource(directory.path)
    codes = directory.municipality_codes() or ["13221"]
    municipalities = {code: MunicipalityServer(code, load_or_create_signer(home, code), directory) for code in codes}
    return start_services(pki=pki, source=source, directory=directory,
                          municipalities=municipalities,
                          kiosk_keys={DEFAULT_KIOSK_ID: load_or_create_kiosk_key(home)}, clock=clock,
                          host=host, **kwargs)

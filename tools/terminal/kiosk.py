"""The kiosk terminal (キオスク端末) of コンビニ交付: drives the card and talks to the centre.

One transaction (CVS-2 steps (1)-(7), CVS-14 methods):

- 新方式 / 変換方式: open a session at the 証明書交付センター (a fresh nonce); SELECT the JPKI-AP;
  read the 利用者証明用電子証明書 (EF 000A, no PIN, spec §3.1); ask the PIN's tries left (retry
  query, §4.2); VERIFY the 4-digit PIN (0018); have the card sign a SHA-256 DigestInfo of the
  nonce with the auth key (SELECT 0017, `80 2A 00 80`, §5.1); send certificate + signature to
  the centre, which verifies them (CVS-16) and routes the request to the municipality.
- 現行方式: SELECT the 条例利用AP (card/apps/jorei.py), read which documents are registered,
  VERIFY the PIN **of the document asked for** (AP-8), read the 利用者ID and send it.

Then (CVS-2 (5)-(7), FEE-4): the PDF and its anti-forgery data arrive; the kiosk checks the
tamper evidence with the municipality's public key when it knows it; the fee is collected
(`pay`); only then is the document handed over ("printed"). Nothing is printed unpaid.

The kiosk never locks a card by itself (decision, documented in the CLI help):
- it checks service hours (CVS-6) before touching the card;
- it asks the tries left (retry query, no PIN sent) before VERIFY and never sends a PIN to a
  blocked PIN (`pin-blocked`);
- with one try left it sends the PIN only when the holder confirmed (`last_try=True`, CLI
  `--last-try`); otherwise it refuses (`pin-last-try`) so a slip cannot lock the card;
- it sends at most one VERIFY per transaction and never retries on its own;
- a PIN that is not 4 digits is refused before it reaches the card.
At the end it selects the ISD (spec §2.1: MYNASIGN does so to clear the JPKI security status),
and the card goes back to the holder (取り忘れ対策, CVS-4).

Every refusal is a `Refusal` with one reason and its class: the kiosk and the centre speak the
wire contract of issuance/kiosk/wire.py (reasons, MACs, paths, fields), nothing of the centre's own.
"""
from __future__ import annotations

import base64
import dataclasses
import datetime as _dt
import hashlib
import hmac
import http.client
import json
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Callable

from mynaemu.card.apps import jorei
from mynaemu.issuance.clock import JST, utc_now
from mynaemu.issuance.kiosk import documents
from mynaemu.issuance.http.client import KeepAliveClient
from mynaemu.issuance.kiosk.wire import (
    CENTRE_MAC_HEADER, DEFAULT_KIOSK_ID, HEALTH_PATH, ISSUE_PATH, KIOSK_ID_HEADER, KIOSK_MAC_HEADER,
    METHODS, SERVICE_CLOSES, SERVICE_OPENS, SESSION_PATH, Refusal, request_mac, response_mac,
    within_service_hours,
)
from mynaemu.tools.terminal.client import (
    CardClient, CardDataError, CardError, JPKI_CERTS, JPKI_KEYS, JPKI_PINS, NotFound, PinBlocked,
    PinIncorrect, TransportError,
)

# RFC 8017 §9.2 note 1: the DER prefix of a SHA-256 DigestInfo (what OpenSC sends, spec §5.1).
SHA256_DIGEST_INFO = bytes.fromhex("3031300d060960864801650304020105000420")
AUTH_PIN_RE = re.compile(r"[0-9]{4}")
HTTP_TIMEOUT = 10.0
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def digest_info(data: bytes) -> bytes:
    """The SHA-256 DigestInfo of `data`: what the card signs with scheme P1=00 (spec §5.1)."""
    return SHA256_DIGEST_INFO + hashlib.sha256(data).digest()


# -- the centre, over HTTP ---------------------------------------------------------------------

class CentreClient:
    """The kiosk's authenticated HTTP link to the centre (MAC on every request and answer).

    Requests go over kept-alive HTTP/1.1 connections with Nagle off (issuance/http/keepalive.py):
    one TCP connection serves a whole transaction, and the next ones. close() closes the idle
    connections.
    """

    def __init__(self, url: str, kiosk_id: str = DEFAULT_KIOSK_ID, key: bytes = b"", *,
                 timeout: float = HTTP_TIMEOUT):
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise ValueError(f"the centre URL must be http(s), got {url!r}")
        if len(key) < 16:
            raise ValueError("the kiosk key must be at least 16 bytes")
        self._http = KeepAliveClient(url, timeout=timeout)
        self.url = self._http.url
        self.kiosk_id = kiosk_id
        self.key = bytes(key)
        self.timeout = timeout

    def close(self) -> None:
        """Close the kept-alive connections (the client stays usable: new ones open on demand)."""
        self._http.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def health(self) -> dict:
        """GET /v1/health (unauthenticated); Refusal('centre-unavailable') when unreachable."""
        try:
            with _NO_PROXY.open(self.url + HEALTH_PATH, timeout=min(self.timeout, 3)) as answer:
                return json.loads(answer.read(65536).decode("utf-8"))
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise Refusal("centre-unavailable", f"the centre at {self.url} does not answer: "
                                                f"{_one_line(exc)}") from None

    def _post(self, path: str, doc: dict) -> dict:
        body = json.dumps(doc, ensure_ascii=False, sort_keys=True).encode("utf-8")
        mac = request_mac(self.key, "POST", path, body)
        headers = {"Content-Type": "application/json", KIOSK_ID_HEADER: self.kiosk_id, KIOSK_MAC_HEADER: mac.hex()}
        try:
            status, headers, payload = self._http.exchange("POST", path, body, headers)
        except (OSError, http.client.HTTPException) as exc:
            raise Refusal("centre-unavailable", f"the centre at {self.url} cannot be reached: "
                                                f"{_one_line(exc)}") from None
        given = headers.get(CENTRE_MAC_HEADER, "") if headers is not None else ""
        try:
            given_bytes = bytes.fromhex(given)
        except ValueError:
            given_bytes = b""
        if not hmac.compare_digest(given_bytes, response_mac(self.key, mac, status, payload)):
            if status == 401:
                raise Refusal("kiosk-auth", "the centre does not accept this kiosk's key (HTTP 401)")
            raise Refusal("centre-auth", f"the answer (HTTP {status}) is not authenticated by the centre")
        try:
            answer_doc = json.loads(payload.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise Refusal("bad-request", f"the centre answered HTTP {status} without JSON") from None
        if status == 200:
            return answer_doc
        refusal = Refusal.from_json(answer_doc)
        if refusal is not None:
            raise refusal
        raise Refusal("bad-request", f"the centre answered HTTP {status}: "
                                     f"{answer_doc.get('message', '?') if isinstance(answer_doc, dict) else '?'}")

    def open_session(self, method: str) -> dict:
        return self._post(SESSION_PATH, {"kiosk_id": self.kiosk_id, "method": method})

    def issue(self, request: dict) -> dict:
        return self._post(ISSUE_PATH, request)


def _one_line(exc) -> str:
    reason = getattr(exc, "reason", None)
    text = str(reason if reason is not None else exc)
    return " ".join(text.split()) or type(exc).__name__


# -- the transaction ---------------------------------------------------------------------------

@dataclasses.dataclass
class KioskResult:
    document: str
    method: str
    pdf: bytes
    fee: int
    verification_code: str
    issued_at: str
    serial: str
    municipality: dict
    checks: list
    tamper_checked: bool
    timing: dict
    narration: list

    def summary(self) -> dict:
        """A JSON-able summary without the PDF (and without any personal data)."""
        return {"status": "issued", "document": self.document, "method": self.method, "fee": self.fee,
                "verification_code": self.verification_code, "issued_at": self.issued_at,
                "serial": self.serial, "municipality": self.municipality, "checks": self.checks,
                "tamper_checked": self.tamper_checked, "timing": self.timing}


class Kiosk:
    """A kiosk terminal bound to one centre.

    clock: the kiosk's clock (CVS-6 hours). trust_roots: the TEST LGPKI root certificates the
    PDFs' PAdES signatures must chain to (empty: the PDF is printed unchecked, and it says so). narrate(actor, text): called for each step
    (the demo prints it). on_step(step): a hook called before each card step (tests use it
    to pull the card out mid-transaction).
    """

    def __init__(self, centre: CentreClient, *, clock: Callable[[], _dt.datetime] = utc_now,
                 trust_roots=(), narrate: Callable[[str, str], None] | None = None,
                 on_step: Callable[[str], None] | None = None):
        self.centre = centre
        self.clock = clock
        self.trust_roots = tuple(trust_roots)
        self._narrate = narrate
        self._on_step = on_step
        self._log: list = []

    def _say(self, actor: str, text: str) -> None:
        self._log.append((actor, text))
        if self._narrate is not None:
            self._narrate(actor, text)

    def _step(self, name: str) -> None:
        if self._on_step is not None:
            self._on_step(name)

    def issue(self, client: CardClient, *, pin: str, document: str, method: str = "shin",
              with_number: bool = False, last_try: bool = False, with_code: bool = False,
              pay: Callable[[int], bool] | None = None) -> KioskResult:
        """Run one transaction; the KioskResult, or Refusal with one reason."""
        if method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}")
        if document not in documents.DOCUMENTS:
            raise ValueError(f"document must be one of {', '.join(documents.DOCUMENTS)}")
        if not isinstance(pin, str) or AUTH_PIN_RE.fullmatch(pin) is None:
            # Checked before anything reaches the card: a malformed PIN would cost a try.
            raise ValueError("the PIN must be 4 digits")
        if with_number and document != "juminhyo":
            raise ValueError("the 個人番号 can be printed only on a 住民票 (NUM-13)")
        if with_code and document != "juminhyo":
            raise ValueError("the 住民票コード can be printed only on a 住民票")
        self._log = []
        t0 = time.perf_counter()
        now = self.clock()
        if not within_service_hours(now):
            raise Refusal("outside-hours", f"コンビニ交付 runs from {SERVICE_OPENS:%H:%M} to "
                                           f"{SERVICE_CLOSES:%H:%M} (CVS-6); it is "
                                           f"{now.astimezone(JST):%H:%M} JST")
        self._say("kiosk", f"{documents.TITLES[document]} by {documents.METHOD_LABELS[method]} at "
                           f"{now.astimezone(JST):%Y-%m-%d %H:%M} JST (service hours "
                           f"{SERVICE_OPENS:%H:%M}-{SERVICE_CLOSES:%H:%M}, CVS-6)")
        session = self.centre.open_session(method)
        nonce = base64.b64decode(session["nonce"])
        self._say("centre", f"session opened at {self.centre.url}: fresh {len(nonce)}-byte challenge, "
                            f"single use, valid until {session['expires_at']}")
        request = {"kiosk_id": self.centre.kiosk_id, "method": method, "document": document,
                   "with_number": bool(with_number), "nonce": session["nonce"]}
        if with_code:  # 住民票コード printed on request only (DATA-6)
            request["with_code"] = True
        try:
            if method == "genko":
                request.update(self._card_genko(client, pin, document, last_try))
            else:
                request.update(self._card_jpki(client, pin, nonce, last_try))
        finally:
            self._release(client)
        t_card = time.perf_counter()
        answer = self.centre.issue(request)
        t_answer = time.perf_counter()
        render_s = float(answer.get("timing", {}).get("render_s", 0.0))
        for check in answer.get("checks", []):
            source = f" (answered by {check['source'].upper()})" if check.get("source") else ""
            self._say("centre", f"{check['check']}: {check['result']}{source}")
        muni = answer["municipality"]
        pdf = base64.b64decode(answer["pdf"])
        self._say(f"municipality {muni['code']}",
                  f"{documents.TITLES[document]} produced as a {len(pdf) // 1024} kB PDF "
                  f"(検証コード {answer['verification_code']}, rendered in {render_s * 1000:.0f} ms)")
        tamper_checked = self._check_pdf(pdf, answer)
        fee = int(answer["fee"])
        paid = True if pay is None else bool(pay(fee))
        if not paid:
            raise Refusal("fee-unpaid", f"the fee of {fee} yen was not paid: nothing is printed (FEE-4)")
        self._say("kiosk", f"fee {fee} yen paid (FEE-4: after the data arrived, before printing)")
        timing = {"card_s": t_card - t0, "decision_s": (t_answer - t0) - render_s, "render_s": render_s,
                  "total_s": time.perf_counter() - t0}
        return KioskResult(document=document, method=method, pdf=pdf, fee=fee,
                           verification_code=answer["verification_code"], issued_at=answer["issued_at"],
                           serial=answer["serial"], municipality=muni, checks=answer.get("checks", []),
                           tamper_checked=tamper_checked, timing=timing, narration=list(self._log))

    # -- card steps ---------------------------------------------------------------------------
    def _guard_pin(self, client: CardClient, fid: int, what: str, last_try: bool) -> None:
        tries = client.tries_left(fid)
        self._say("card", f"{what} ({fid:04X}): {tries} tries left (retry query, no PIN sent)")
        if tries == 0:
            raise Refusal("pin-blocked", f"the {what} is blocked; the kiosk will not send a PIN "
                                         "(unblock it at the municipal counter)", tries_left=0)
        if tries == 1 and not last_try:
            raise Refusal("pin-last-try", f"the {what} has 1 try left; a wrong PIN would lock the card. "
                                          "Re-run with --last-try to use it", tries_left=1)

    def _verify(self, client: CardClient, fid: int, pin: str, what: str) -> None:
        try:
            client.verify(fid, pin)
        except PinIncorrect as exc:
            raise Refusal("pin-wrong", f"wrong {what}: {exc.tries_left} "
                                       f"{'try' if exc.tries_left == 1 else 'tries'} left",
                          tries_left=exc.tries_left) from None
        except PinBlocked:
            raise Refusal("pin-blocked", f"wrong {what}: it is now blocked", tries_left=0) from None
        self._say("card", f"VERIFY {fid:04X}: {what} accepted")

    def _card_jpki(self, client: CardClient, pin: str, nonce: bytes, last_try: bool) -> dict:
        with _card_errors():
            self._step("select")
            try:
                client.select_ap("jpki")
            except NotFound:
                raise Refusal("card-error", "the card has no JPKI-AP: not an Individual Number Card") from None
            self._say("card", "SELECT 公的個人認証AP (JPKI-AP, D392F000260100000001)")
            self._step("read-certificate")
            try:
                cert_der = client.read_certificate("auth")
            except (CardDataError, CardError) as exc:
                if isinstance(exc, (PinIncorrect, PinBlocked)):
                    raise
                raise Refusal("cert-invalid", "the user-authentication certificate on the card is "
                                              f"truncated or unreadable ({exc})") from None
            self._say("card", f"READ 利用者証明用電子証明書 (EF {JPKI_CERTS['auth']:04X}, "
                              f"{len(cert_der)} bytes, no PIN needed)")
            self._step("tries-left")
            self._guard_pin(client, JPKI_PINS["auth"], "利用者証明用暗証番号", last_try)
            self._step("verify")
            self._verify(client, JPKI_PINS["auth"], pin, "利用者証明用暗証番号")
            self._step("sign")
            signature = client.sign(JPKI_KEYS["auth"], digest_info(nonce))
            self._say("card", f"COMPUTE DIGITAL SIGNATURE 80 2A 00 80 with key {JPKI_KEYS['auth']:04X} over "
                              f"the SHA-256 DigestInfo of the challenge ({len(signature)}-byte signature)")
        return {"certificate": base64.b64encode(cert_der).decode("ascii"),
                "signature": base64.b64encode(signature).decode("ascii")}

    def _card_genko(self, client: CardClient, pin: str, document: str, last_try: bool) -> dict:
        with _card_errors():
            self._step("select")
            try:
                client.select_ap(jorei.AID)
            except NotFound:
                raise Refusal("method-unavailable", "the card has no 条例利用AP: 現行方式 needs it "
                                                    "(use 新方式)") from None
            self._say("card", f"SELECT 条例利用AP (証明書等自動交付AP, {jorei.AID.hex().upper()}, TEST AID)")
            self._step("read-documents")
            try:
                registered = jorei.parse_documents(client.read_binary(jorei.EF_DOCUMENTS))
            except ValueError as exc:
                raise Refusal("card-error", f"the 条例利用AP's document list is malformed: {exc}") from None
            fid = registered.get(document)
            if fid is None:
                raise Refusal("document-unavailable", f"no PIN is registered on the card for "
                                                      f"{documents.TITLES[document]} (AP-8)")
            label = jorei.DOCUMENT_PINS[document][2]
            self._step("tries-left")
            self._guard_pin(client, fid, label, last_try)
            self._step("verify")
            self._verify(client, fid, pin, label)
            self._step("read-user-id")
            try:
                ident = jorei.parse_user_id(client.read_object(jorei.EF_USER_ID))
            except (ValueError, CardDataError) as exc:
                raise Refusal("card-error", f"the 利用者ID on the card is malformed: {exc}") from None
            self._say("card", f"READ 利用者ID (EF {jorei.EF_USER_ID:04X}) of municipality "
                              f"{ident['municipality_code']}")
        return ident

    def _release(self, client: CardClient) -> None:
        """Clear the card's security status (spec §2.1, §4.5) and hand the card back (CVS-4)."""
        try:
            client.select_ap("isd")
        except (CardError, TransportError, OSError, RuntimeError):
            return  # the card is gone already: nothing to clear
        self._say("card", "SELECT ISD: security status cleared; please take your card (取り忘れ対策)")

    def _check_pdf(self, pdf: bytes, answer: dict) -> bool:
        if not self.trust_roots:
            self._say("kiosk", "tamper evidence not checked here: this kiosk trusts no TEST LGPKI root")
            return False
        try:
            verified = documents.check_pdf(pdf, self.trust_roots)
        except documents.TamperError as exc:
            raise Refusal("centre-auth", f"the document failed its tamper check: {exc}") from None
        if verified.verification_code != answer["verification_code"]:
            raise Refusal("centre-auth", "the document's 検証コード differs from the centre's answer")
        self._say("kiosk", f"anti-forgery data checked: PAdES signature by "
                           f"{verified.signer.subject.rfc4514_string()} (TEST LGPKI, CVS-3)")
        return True


class _card_errors:
    """Map a card that went away or misbehaved to one refusal class (exit code 9)."""

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc is None or isinstance(exc, Refusal):
            return False
        from mynaemu.card.core import CardNotPowered

        if isinstance(exc, (TransportError, CardNotPowered)):
            raise Refusal("card-removed", f"the card was removed or stopped answering: {exc}") from None
        if isinstance(exc, (PinIncorrect, PinBlocked)):
            return False
        if isinstance(exc, CardError):
            raise Refusal("card-error", f"the card refused a command: {exc}") from None
        if isinstance(exc, CardDataError):
            raise Refusal("card-error", f"the card returned malformed data: {exc}") from None
        return False

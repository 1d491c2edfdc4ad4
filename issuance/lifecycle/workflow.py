"""The issuance workflow: the card and certificate state machine of rules.md §9-§10 over the store.

States of a card (STATE-1; the CLI ID is the application id on the form's QR, FLOW-3/FLOW-4):

    applied 申請 ──receive──▶ received 受付 ──generate──▶ issued 発行済 ──(交付通知書)──▶
    awaiting_delivery 交付待ち ──deliver──▶ active 交付済/有効 ◀──resume── suspended 一時停止
    active ──suspend──▶ suspended;  active|suspended ──abolish / reissue / (renewal delivered)──▶
    abolished 廃止 ──collect──▶ collected 回収 ──destroy──▶ destroyed 廃棄
    any state before destroyed ──revoke (death, 消除, number change: M10)──▶ revoked 失効 ──collect──▶ …

`generate` runs 受付 (when still applied), 鍵ペア生成 + 証明書発行 (JPKI-4, FLOW-1 step 6),
personalisation (step 7) and the 交付通知書 (step 8) in one transaction per card. An active or
suspended card past its expiry day counts as abolished (VAL-12) and is reported as "expired".

Certificates (STATE-2) live in the store with their event history: issued → hold ↔ released →
revoked (final). A suspension holds every certificate on the card (STATE-3 item 3); 異動 revokes
the signing certificate as superseded and issues a new one ending with the user-authentication
certificate (MOV-1, VAL-6, VAL-10); a certificate renewal in its window counts from the old
expiry (VAL-4, D7); a card renewal is a new application (FLOW-RENEW-1) whose card counts from
the old card's expiry (VAL-3) and whose delivery abolishes and collects the old card.

Every operation takes the instant `at` (a settable clock), runs in one store transaction (BEGIN
IMMEDIATE on SQLite; on PostgreSQL the holder's and the card's rows locked first, see store.py)
and writes one audit record (SEC-8). A refused step raises a WorkflowError whose
message names the rule or the current state; the transaction is rolled back, so the store is
unchanged, and the refusal itself is audited in a transaction of its own (SEC-8 asks for failed
attempts too). Operations on one card must not go back in time (the card's last change).

Decisions on points the seeds leave open ([U], rules.md §19) are marked "Decision:" below.
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import random
import re
import secrets
import time
from typing import Callable

from cryptography import x509

from mynaemu.card.image import CardImage, PinEF
from mynaemu.card.limits import LimitError, check_address

from mynaemu.issuance.lifecycle import cardwrite
from mynaemu.issuance import policy, validate
from mynaemu.issuance.pki.ca import TestPKI
from mynaemu.issuance.identity import Identity
from mynaemu.issuance.pki.keys import generate_rsa_key, load_private_key_pem, private_key_pem
from mynaemu.issuance.personalise import KEYS_PER_CARD, CardKeys, CardRequest, personalise
from mynaemu.issuance.pki.profiles import make_issue_id
from mynaemu.issuance.store import Store, StoreConflict, check_form_id, iso, parse_iso

__all__ = [
    "STATE_LABELS", "LIVE_STATES", "WorkflowError", "IllegalState", "Refused", "NotFound", "BadInput",
    "Basic4", "ProxyHandover", "PROXY_CONDITIONS", "PROXY_RELATIONS", "PROXY_DOCUMENTS", "check_proxy",
    "Workflow", "GenerateResult", "RenewResult", "KEY_ROLES", "KEYS_PER_CARD",
    "AUTH_PIN_PATTERN", "SIGN_PIN_PATTERN", "FOUR_DIGIT_PIN_PATTERN", "carry_pins",
]

STATE_LABELS = {
    "applied": "申請", "received": "受付", "issued": "発行済", "awaiting_delivery": "交付待ち",
    "active": "交付済/有効", "suspended": "一時停止", "abolished": "廃止", "collected": "回収",
    "destroyed": "廃棄", "revoked": "失効", "expired": "有効期限切れ (廃止扱い, VAL-12)",
    "not_yet_applied": "未申請 (as of the instant asked)",
}
PENDING_STATES = ("applied", "received", "issued", "awaiting_delivery")
IN_SERVICE = ("active", "suspended")
LIVE_STATES = PENDING_STATES + IN_SERVICE

KEY_ROLES = tuple(f.name for f in dataclasses.fields(CardKeys))

# A transaction PostgreSQL aborted (StoreConflict) is run again this many times.
_CONFLICT_RETRIES = 5

# PIN formats (AP-3, AP-4, AP-5, AP-6; the card apps enforce the same patterns)
AUTH_PIN_PATTERN = r"[0-9]{4}"
FOUR_DIGIT_PIN_PATTERN = r"[0-9]{4}"
SIGN_PIN_PATTERN = r"[A-Z0-9]{6,16}"

# Revocation reasons (RFC 5280 names) per ground. Decision: the seeds give no mapping.
REISSUE_REASONS = {"lost": "keyCompromise", "damaged": "cessationOfOperation",
                   "expired": "cessationOfOperation"}
REVOKE_REASONS = {  # M10 失効 grounds
    "death": "cessationOfOperation",
    "removed": "affiliationChanged",       # 住民票の消除 (moving abroad etc.)
    "number-change": "superseded",        # NUM-7: the card shows the old number
}
ABOLISH_REASONS = {"holder-request": "cessationOfOperation", "other": "cessationOfOperation"}


# ---------------------------------------------------------------------------------------------
# errors
# ---------------------------------------------------------------------------------------------

# The refusals live in the leaf module issuance/errors.py (a kind each, no exit code: the CLI
# maps kinds to exit codes); imported here so workflow.Refused etc. keep working.
from mynaemu.issuance.errors import BadInput, IllegalState, NotFound, Refused, WorkflowError  # noqa: E402,F401


def _valid(check, *args, **kwargs):
    """Run a validate.py check; its InputError becomes this module's BadInput."""
    try:
        return check(*args, **kwargs)
    except validate.InputError as exc:
        raise BadInput(str(exc)) from None


# ---------------------------------------------------------------------------------------------
# inputs
# ---------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Basic4:
    """基本4情報 as a caller gives them on the phone (FLOW-SUSP-3, DATA-1)."""

    name: str
    birth: _dt.date
    sex: str
    address: str


# FLOW-PROXY-3: principal's condition -> {relation of the proxy -> extra documents}
BASE_PROXY_DOCS = ("letter-of-authority", "proxy-photo-id", "principal-photo-id")  # FLOW-PROXY-2, -3
PROXY_CONDITIONS = {
    "homebound-with-household": {"household-member": ("household-proof", "cannot-go-out-proof")},
    "homebound-alone": {
        "relative": ("cannot-go-out-proof", "family-relationship-proof"),
        "care-worker": ("cannot-go-out-proof", "care-contract", "care-employment-proof"),
    },
    "facility-resident": {
        "relative": ("facility-residence-proof", "family-relationship-proof", "municipality-approval"),
        "facility-staff": ("facility-residence-proof", "facility-employment-proof", "municipality-approval"),
    },
    # FLOW-PROXY-4: merely busy is never a ground.
    "busy": {},
}
PROXY_RELATIONS = ("household-member", "relative", "care-worker", "facility-staff", "neighbour", "agent")
PROXY_DOCUMENTS = (
    "letter-of-authority",        # 委任状 (FLOW-PROXY-2)
    "proxy-photo-id",             # 代理人の顔写真付き本人確認書類
    "principal-photo-id",         # 本人の顔写真付き本人確認書類
    "household-proof",            # 同一世帯であることの確認
    "cannot-go-out-proof",        # 外出困難の証明 (診断書, 障害者手帳)
    "family-relationship-proof",  # 親族関係の証明 (戸籍謄本等)
    "care-contract",              # 介護契約書の原本
    "care-employment-proof",      # 介護事業者の在職証明
    "facility-residence-proof",   # 施設入所の証明
    "facility-employment-proof",  # 施設職員であることの証明
    "municipality-approval",      # 市町村が適当と認めること
)


@dataclasses.dataclass(frozen=True)
class ProxyHandover:
    """A 任意代理人 collecting the card (FLOW-PROXY-1..6).

    condition: the principal's situation (a PROXY_CONDITIONS key); relation: the proxy's
    relation to the principal; documents: what was shown (PROXY_DOCUMENTS); notice_id: the
    交付通知書 the proxy brought (FLOW-PROXY-2); seal_certificate_issued: the issue date of the
    principal's 印鑑登録証明書 when shown (FLOW-PROXY-6).
    """

    condition: str
    relation: str
    documents: frozenset = frozenset()
    notice_id: str | None = None
    seal_certificate_issued: _dt.date | None = None

    def to_json(self) -> dict:
        return {"condition": self.condition, "relation": self.relation, "documents": sorted(self.documents),
                "notice_id": self.notice_id,
                "seal_certificate_issued": self.seal_certificate_issued.isoformat()
                if self.seal_certificate_issued else None}


def check_proxy(proxy: ProxyHandover, *, has_sign_cert: bool, today: _dt.date, notice_id: str) -> policy.Decision:
    """May this proxy collect the card today? FLOW-PROXY-1..6 in order."""
    if proxy.condition not in PROXY_CONDITIONS:
        raise BadInput(f"unknown proxy condition {validate.shown(proxy.condition)}; "
                       f"one of {', '.join(PROXY_CONDITIONS)}")
    if proxy.relation not in PROXY_RELATIONS:
        raise BadInput(f"unknown proxy relation {validate.shown(proxy.relation)}; "
                       f"one of {', '.join(PROXY_RELATIONS)}")
    unknown = sorted(set(proxy.documents) - set(PROXY_DOCUMENTS))
    if unknown:
        raise BadInput(f"unknown proxy document(s) {', '.join(map(validate.shown, unknown))}; "
                       f"known: {', '.join(PROXY_DOCUMENTS)}")
    allowed = PROXY_CONDITIONS[proxy.condition]
    if not allowed:
        return policy.Decision(False, "FLOW-PROXY-4: a principal who is merely busy cannot send a proxy; "
                                      "the holder must come to the counter", "busy")
    if proxy.relation not in allowed:
        return policy.Decision(False, f"FLOW-PROXY-3: for {proxy.condition} the proxy must be "
                                      f"{' or '.join(allowed)}, not {proxy.relation}", "relation")
    if proxy.notice_id is None or _norm(proxy.notice_id) != notice_id:
        return policy.Decision(False, "FLOW-PROXY-2: the proxy must bring this card's 交付通知書 "
                                      "(notice id missing or not this card's)", "notice")
    missing = [d for d in BASE_PROXY_DOCS + allowed[proxy.relation] if d not in proxy.documents]
    if missing:
        return policy.Decision(False, f"FLOW-PROXY-3: missing document(s): {', '.join(missing)}", "documents")
    if has_sign_cert:
        issued = proxy.seal_certificate_issued
        if issued is None:
            return policy.Decision(False, "FLOW-PROXY-6: the card holds a signing certificate; the proxy "
                                          "must show the principal's 印鑑登録証明書 issued within 3 months",
                                   "seal_missing")
        oldest = policy.add_months(today, -3)
        if issued > today:
            return policy.Decision(False, f"FLOW-PROXY-6: 印鑑登録証明書 dated {issued.isoformat()} is after "
                                          f"today {today.isoformat()}", "seal_future")
        if issued < oldest:
            return policy.Decision(False, f"FLOW-PROXY-6: 印鑑登録証明書 issued {issued.isoformat()} is older "
                                          f"than 3 months (needs {oldest.isoformat()} or later)", "seal_old")
        return policy.Decision(True, "FLOW-PROXY-3/6: proxy accepted with a current 印鑑登録証明書", "ok")
    return policy.Decision(True, "FLOW-PROXY-5: auth-only card, proxy accepted", "ok")


def _norm(text: str) -> str:
    return text.replace("-", "").replace(" ", "").upper()


# ---------------------------------------------------------------------------------------------
# results
# ---------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class GenerateResult:
    id: str
    notice_id: str
    card_expires: _dt.date
    auth_serial: int
    sign_serial: int | None
    sign_decision: str


@dataclasses.dataclass(frozen=True)
class RenewResult:
    kind: str                 # "card" (a new application) or "certificates" (same card)
    id: str                   # the new application id (card) or the same id (certificates)
    replaces: str
    reason: str
    image: CardImage | None = None


# ---------------------------------------------------------------------------------------------
# PIN carry-over when the counter rewrites a card
# ---------------------------------------------------------------------------------------------

def carry_pins(old: CardImage, new: CardImage, *, sign_pin: str | None = None) -> CardImage:
    """Copy the holder's PIN values and retry counters from the presented card into the rewritten
    one, so rewriting the chip at the counter (MOV-2) does not reset what the holder set.

    Settable PINs (change method other than "none") keep value and counter; fixed ones (照合番号,
    blocked placeholders) keep the counter when their value is unchanged. A signing password the
    old card did not have (a first signing certificate) comes from `sign_pin`.
    """
    secrets_pins = dict(old.meta.get("secrets", {}).get("pins", {}))
    for app in new.applications:
        try:
            old_app = old.application(app.name)
        except KeyError:
            old_app = None
        for fid, ef in app.efs.items():
            if not isinstance(ef, PinEF):
                continue
            before = old_app.efs.get(fid) if old_app is not None else None
            if not isinstance(before, PinEF):
                before = None
            if ef.change == "none":
                if before is not None and before.value == ef.value:
                    ef.remaining = min(before.remaining, ef.max_tries)
                continue
            if before is not None and before.change != "none" and before.value:
                ef.value = before.value
                ef.remaining = min(before.remaining, ef.max_tries)
            elif app.name == "jpki" and sign_pin is not None:
                ef.value = sign_pin.encode("ascii")
                ef.remaining = ef.max_tries
                secrets_pins["sign"] = sign_pin
            else:
                raise BadInput(f"the rewritten card needs a value for {app.name} PIN {fid:04X} "
                               "(a new signing password: --sign-pin)")
    new.meta.setdefault("secrets", {})["pins"] = secrets_pins
    return new


def _transport_pins(with_sign: bool) -> dict:
    # The chip leaves the factory with random PINs nobody knows; the real ones are registered
    # at the counter (ACT-1, FLOW-1 step 10).
    rnd = secrets.SystemRandom()
    digits = lambda: "".join(rnd.choice("0123456789") for _ in range(4))  # noqa: E731
    pins = {"auth": digits(), "kenhojo": digits(), "juki": digits(), "sign": None}
    if with_sign:
        pins["sign"] = "".join(rnd.choice("ABCDEFGHJKLMNPQRSTUVWXYZ23456789") for _ in range(12))
    return pins


def _check_pin(value, pattern: str, what: str) -> str:
    if not isinstance(value, str) or re.fullmatch(pattern, value) is None:
        raise BadInput(f"{what} must match {pattern}")
    return value


# ---------------------------------------------------------------------------------------------
# the workflow
# ---------------------------------------------------------------------------------------------

def _aware(at) -> _dt.datetime:
    _valid(validate.instant, at, "at")  # aware, 1950 .. 2099 (docs/input-limits.md)
    return at.astimezone(_dt.timezone.utc).replace(microsecond=0).astimezone(_dt.timezone.utc).replace(microsecond=0)


def _jst(text_or_dt) -> str:
    value = parse_iso(text_or_dt) if isinstance(text_or_dt, str) else text_or_dt
    return value.astimezone(policy.JST).isoformat()


class Workflow:
    """The back office operations over one Store.

    pki: the TEST CAs (default: the store's own, store_pki.py; pass one only in tests that never
    show their cards to the store's OCSP responder or centre). operator / terminal: who is at the keyboard
    (SEC-4, SEC-8). key_factory: makes one RSA-2048 private key (tests pass a pool to save time);
    card_keys: makes a CardKeys(with_sign=...) for generate (default: from key_factory).
    """

    def __init__(self, store: Store, *, pki: TestPKI | None = None, operator: str = "system",
                 terminal: str = "system", key_factory: Callable[[], object] | None = None,
                 card_keys: Callable[[bool], CardKeys] | None = None):
        self.store = store
        self._pki = pki
        # one line each: a newline here would forge an audit record (SEC-8)
        self.operator = _valid(validate.audit_id, operator, "operator")
        self.terminal = _valid(validate.audit_id, terminal, "terminal")
        self.key_factory = key_factory or (lambda: generate_rsa_key(2048))
        self.card_keys = card_keys or self._default_card_keys
        self._audit_id: int | None = None
        self._audit_note: dict = {}
        self._staged: list = []  # card files staged in this transaction (cardwrite.py)

    @property
    def pki(self) -> TestPKI:
        if self._pki is not None:
            return self._pki
        from mynaemu.issuance.store.pki import store_pki

        return store_pki(self.store)  # cached by the store once committed

    @property
    def rules(self) -> policy.RuleSet:
        return self.store.rules

    def _default_card_keys(self, with_sign: bool) -> CardKeys:
        gen = self.key_factory
        return CardKeys(auth=gen(), sign=gen() if with_sign else None, kenhojo_signer=gen(),
                        kenhojo_card=gen(), kenhojo_session=gen(), kenkaku_signer=gen(),
                        kenkaku_card=gen(), common=gen())

    # --- the transaction + audit frame ------------------------------------------------------
    def _run(self, operation: str, target: str | None, at: _dt.datetime, body, *, reason: str | None = None):
        at = _aware(at)
        cardwrite.complete_pending(self.store)  # a card write a killed process committed
        for attempt in range(_CONFLICT_RETRIES + 1):
            try:
                return self._run_once(operation, target, at, body, reason)
            except StoreConflict:
                # PostgreSQL aborted the transaction (a deadlock): nothing was written; run it again
                if attempt == _CONFLICT_RETRIES:
                    raise
                time.sleep(random.uniform(0, 0.02 * 2 ** attempt))

    def _run_once(self, operation: str, target: str | None, at: _dt.datetime, body, reason: str | None):
        self._audit_note = {}
        self._staged = []
        committed = False
        try:
            with self.store.transaction():
                self._audit_id = self.store.audit(at=at, operator=self.operator, terminal=self.terminal,
                                                  operation=operation, target=target, outcome="ok",
                                                  reason=reason)
                result = body(at)
                if self._audit_note:
                    self.store.set_audit_detail(self._audit_id, self._audit_note)
                if self._staged:
                    cardwrite.fault("before-commit")
            committed = True
        except WorkflowError as exc:
            self._audit_id = None
            self.store.audit(at=at, operator=self.operator, terminal=self.terminal, operation=operation,
                             target=target, outcome="refused", reason=str(exc))
            raise
        except validate.InputError as exc:
            self._audit_id = None
            self.store.audit(at=at, operator=self.operator, terminal=self.terminal, operation=operation,
                             target=target, outcome="refused", reason=str(exc))
            raise BadInput(str(exc)) from None
        except StoreConflict:
            raise  # nothing was written; _run runs the step again
        except ValueError as exc:
            # e.g. a TEST CA refusing a validity outside its own: a refusal, not a crash
            self._audit_id = None
            self.store.audit(at=at, operator=self.operator, terminal=self.terminal, operation=operation,
                             target=target, outcome="error", reason=str(exc))
            raise Refused(str(exc)) from None
        except Exception as exc:
            # Anything else is a failure SEC-8 wants on record too: the step, its target and
            # who ran it, with only the exception's class (its text may hold a PIN or 個人番号).
            self._audit_id = None
            self._audit_failure(at, operation, target, exc)
            raise
        finally:
            self._audit_id = None
            if not committed:
                cardwrite.discard(self._staged)
        # commit, then publish: the card file appears only after the store committed (cardwrite.py)
        cardwrite.publish(self.store, self._staged)
        return result

    def _audit_failure(self, at, operation: str, target: str | None, exc: Exception) -> None:
        try:
            self.store.audit(at=at, operator=self.operator, terminal=self.terminal, operation=operation,
                             target=target, outcome="error", reason=f"unexpected {type(exc).__name__}")
        except Exception:  # noqa: BLE001 — the store itself failing (busy, gone): the original error wins
            pass

    def _publish(self, app_id: str, operation: str, image: CardImage, path, at: _dt.datetime) -> None:
        self._staged.append(cardwrite.stage(self.store, app_id=app_id, operation=operation, image=image,
                                            target=path, at=at, audit_id=self._audit_id))

    def _note(self, **items) -> None:
        self._audit_note.update(items)

    # --- loading ------------------------------------------------------------------------------
    def _load(self, app_id: str):
        _valid(validate.form_id_text, app_id)
        try:
            app_id = check_form_id(app_id)
        except (ValueError, TypeError) as exc:
            raise BadInput(str(exc)) from None
        self.store.lock_card(app_id)  # PostgreSQL: the holder's and the card's rows, until commit
        card = self.store.card(app_id)
        if card is None:
            raise NotFound(f"no application {app_id} in this store")
        application = self.store.application(app_id)
        person = self.store.person(card["person_id"])
        return app_id, application, card, person

    def _identity(self, person, *, address: str | None = None, address_alt: str | None = None) -> Identity:
        return Identity(
            name=person["name"], address=address or person["address"],
            birth=_dt.date.fromisoformat(person["birth"]), sex=person["sex"],
            individual_number=self.store.individual_number(person["id"]),
            juminhyo_code=person["juminhyo_code"], municipality_code=person["municipality_code"],
            prefecture_romaji=person["prefecture_romaji"], city_romaji=person["city_romaji"],
            name_kana=person["name_kana"], name_alt=person["name_alt"],
            address_alt=address_alt if address is not None else person["address_alt"])

    @staticmethod
    def _birth(person) -> _dt.date:
        return _dt.date.fromisoformat(person["birth"])

    def _effective_state(self, card, at: _dt.datetime) -> str:
        # VAL-12: an expired card already counts as abolished.
        if card["state"] in IN_SERVICE and card["expires"] and policy.expired(
                _dt.date.fromisoformat(card["expires"]), at):
            return "expired"
        return card["state"]

    def _require(self, app_id: str, card, at: _dt.datetime, allowed: tuple, operation: str) -> str:
        state = self._effective_state(card, at)
        if state not in allowed:
            hint = ""
            if state == "expired":
                hint = f" (VAL-12: the card expired on {card['expires']} and counts as abolished)"
            raise IllegalState(f"{operation} refused: card {app_id} is {state} ({STATE_LABELS[state]}){hint}; "
                               f"{operation} needs {' or '.join(allowed)}")
        return state

    def _check_clock(self, app_id: str, at: _dt.datetime) -> None:
        last = self.store.last_change_at(app_id)
        if last is not None and iso(at) < last:
            raise Refused(f"clock: card {app_id} last changed at {_jst(last)}; an operation at "
                          f"{_jst(at)} would rewrite its history")

    def _resident(self, person) -> None:
        if person["resident_status"] != "resident":
            raise Refused(f"M10: the resident record is {person['resident_status']}; no card work is possible")

    def _state(self, app_id: str, to_state: str, at: _dt.datetime, operation: str) -> None:
        self.store.set_card_state(app_id, to_state, at=at, operation=operation, audit_id=self._audit_id)

    # --- certificates -----------------------------------------------------------------------
    def _live_certs(self, app_id: str) -> list:
        return self.store.certificates_of(app_id, include_revoked=False)

    def _revoke_certs(self, app_id: str, at: _dt.datetime, reason: str, kinds=("auth", "sign")) -> list[int]:
        done = []
        for row in self._live_certs(app_id):
            if row["ca_kind"] in kinds:
                self.store.cert_event(row["id"], "revoked", at=at, reason=reason, audit_id=self._audit_id)
                done.append(row["serial"])
        return done

    def _issue_cert(self, app_id: str, kind: str, key, identity: Identity, at: _dt.datetime,
                    not_after_day: _dt.date):
        serial = self.store.new_cert_serial(kind)
        issue_id = make_issue_id(random.SystemRandom(), identity.municipality_code)
        not_after = policy.expiry_instant(not_after_day)  # D5: end of the expiry day, JST
        if kind == "auth":
            cert = self.pki.auth_ca.issue_auth(key.public_key(), serial=serial, not_before=at,
                                               not_after=not_after, issue_id=issue_id)
        else:
            cert = self.pki.sign_ca.issue_sign(key.public_key(), identity, serial=serial, not_before=at,
                                               not_after=not_after, issue_id=issue_id)
        self.store.insert_certificate(app_id, kind, cert, issue_id, at=at, audit_id=self._audit_id)
        return cert

    def _current_cert(self, app_id: str, kind: str, *, live_only: bool = True):
        row = self.store.current_certificate(app_id, kind)
        if row is None or (live_only and row["status"] == "revoked"):
            return None
        return row

    # --- images -------------------------------------------------------------------------------
    def _stored_keys(self, app_id: str) -> CardKeys:
        pems = self.store.keys(app_id)
        missing = [r for r in KEY_ROLES if r != "sign" and r not in pems]
        if missing:
            raise Refused(f"card {app_id} has no keys in the store any more (removed from service)")
        return CardKeys(**{r: _load_key(pems[r]) if r in pems else None for r in KEY_ROLES})

    def _build_image(self, app_id: str, card, person, pins: dict, *, identity: Identity | None = None,
                     keys: CardKeys | None = None) -> CardImage:
        """Personalise the card from what the store holds now (keys, live certificates, identity)."""
        keys = dataclasses.replace(keys) if keys is not None else self._stored_keys(app_id)
        auth_row = self._current_cert(app_id, "auth")
        if auth_row is None:
            raise Refused(f"card {app_id} has no live user-authentication certificate")
        sign_row = self._current_cert(app_id, "sign")
        if sign_row is None:
            keys.sign = None
        load = x509.load_der_x509_certificate
        request = CardRequest(
            identity=identity or self._identity(person), keys=keys, auth_cert=load(auth_row["der"]),
            sign_cert=load(sign_row["der"]) if sign_row is not None else None, pki=self.pki,
            pins={**pins, "sign": pins.get("sign") if sign_row is not None else None},
            card_expiry=_dt.date.fromisoformat(card["expires"]), security_code=card["security_code"],
            card_serial=card["serial"], issued_at=parse_iso(card["personalised_at"]), label=app_id)
        image = personalise(request)
        image.meta["application_id"] = app_id
        return image

    def _store_image(self, app_id: str, card, person, *, identity: Identity | None = None,
                     keys: CardKeys | None = None) -> None:
        if card["delivered_at"]:
            return  # the store keeps no chip image (nor its keys) once the card is handed over
        has_sign = self._current_cert(app_id, "sign") is not None
        image = self._build_image(app_id, card, person, _transport_pins(has_sign), identity=identity, keys=keys)
        self.store.set_card_image(app_id, json.dumps(image.to_json(), ensure_ascii=False))

    def _retire_keys(self, app_id: str) -> None:
        # Decision (store.py): keys leave the store with the card (廃止 / 失効).
        self.store.delete_keys(app_id)
        self.store.set_card_image(app_id, None)

    # =========================================================================================
    # operations
    # =========================================================================================

    def apply(self, *, name: str, birth: _dt.date, sex: str, address: str, at: _dt.datetime,
              guardianship: bool = False, decline_sign: bool = False, name_kana: str = "",
              name_alt: str | None = None, address_alt: str | None = None, alt_confirmed: bool = True,
              municipality_code: str = "13221", prefecture_romaji: str = "Tokyo-to",
              city_romaji: str = "Kiyose-shi") -> str:
        """申請 (FLOW-3): register a returned form; a new person is numbered (NUM-2, NUM-5).

        The applicant has checked the 代替文字 on the pre-printed form (ACT-5); alt_confirmed=False
        records a form returned without that check, which 受付 then refuses.
        """
        at_ = _aware(at)
        name, address = _text(name, "name"), _address(address)
        name_kana = _valid(validate.optional_text, name_kana, "name_kana")
        for what, value in (("prefecture_romaji", prefecture_romaji), ("city_romaji", city_romaji)):
            _valid(validate.ascii_token, value, what, limit=validate.LIMITS["romaji"])
        if not (isinstance(municipality_code, str) and len(municipality_code) == 5 and municipality_code.isascii()
                and municipality_code.isdigit()):
            raise BadInput(f"municipality_code must be 5 ASCII digits, got {validate.shown(municipality_code)}")
        if sex not in ("1", "2", "9"):
            raise BadInput(f"sex must be 1, 2 or 9 (JIS X 0303), got {validate.shown(sex)}")
        if not isinstance(birth, _dt.date) or isinstance(birth, _dt.datetime):
            raise BadInput("birth must be a date")
        today = policy.jst_date(at_)
        if birth > today:
            raise BadInput(f"birth date {birth.isoformat()} is after the application date {today.isoformat()}")
        _valid(validate.check_birth, birth, on=today)  # 明治 onwards, at most 130 years old
        for what, flags, text in (("name_alt", name_alt, name), ("address_alt", address_alt, address)):
            if flags is not None and (len(flags) != len(text) or set(flags) - {"0", "1"}):
                raise BadInput(f"{what} must be one 0/1 flag per character ({len(text)} flags)")

        def body(at):
            # concurrent 申請 of one person must not create two persons or two live cards
            self.store.lock_name(f"basic4 {name}|{birth.isoformat()}|{sex}|{address}")
            person = self.store.find_person_by_basic4(name, birth, sex, address)
            if person is not None:
                self.store.lock_person(person["id"])
                self._resident(person)
                for other in self.store.cards_of_person(person["id"]):
                    state = self._effective_state(other, at)
                    if state in LIVE_STATES:
                        raise Refused(f"STATE-3(8): this person already has card {other['application_id']} "
                                      f"({state} {STATE_LABELS[state]}); use renew or reissue")
                person_id = person["id"]
                if bool(person["guardianship"]) != guardianship:
                    self.store.change_person(person_id, at=at, field="guardianship", value=int(guardianship),
                                             reason="application", audit_id=self._audit_id)
                self._note(person="existing")
            else:
                person_id = self.store.insert_person(
                    juminhyo_code=self.store.new_juminhyo_code(), name=name, name_kana=name_kana,
                    birth=birth, sex=sex, address=address, name_alt=name_alt, address_alt=address_alt,
                    guardianship=guardianship, municipality_code=municipality_code,
                    prefecture_romaji=prefecture_romaji, city_romaji=city_romaji, at=at)
                self.store.assign_individual_number(person_id, at=at, reason=None)  # NUM-5
                self._note(person="new")
            return self._new_application(person_id, at, kind="first", replaces=None,
                                         decline_sign=decline_sign, alt_confirmed=alt_confirmed)

        return self._run("apply", None, at_, body)

    def _new_application(self, person_id: int, at: _dt.datetime, *, kind: str, replaces: str | None,
                         decline_sign: bool, alt_confirmed: bool) -> str:
        app_id = self.store.new_form_id("application")
        self.store.insert_application(app_id, person_id, kind=kind, replaces=replaces, decline_sign=decline_sign,
                                      alt_confirmed=alt_confirmed, at=at, audit_id=self._audit_id)
        self.store.set_audit_target(self._audit_id, app_id)
        self._note(kind=kind, replaces=replaces, decline_sign=decline_sign)
        return app_id

    def _receive(self, app_id: str, application, at: _dt.datetime) -> None:
        if not application["alt_confirmed"]:
            raise Refused("FLOW-3: the applicant has not confirmed the 代替文字 to be used in the certificates")
        self.store.set_received(app_id, at)
        self._state(app_id, "received", at, "receive")

    def receive(self, app_id: str, *, at: _dt.datetime) -> None:
        """受付 (FLOW-1 step 5: 交付申請内容登録)."""
        def body(at):
            app_id_, application, card, person = self._load(app_id)
            self._require(app_id_, card, at, ("applied",), "receive")
            self._check_clock(app_id_, at)
            self._resident(person)
            self._receive(app_id_, application, at)
        return self._run("receive", _target(app_id), at, body)

    # --- generate: keys + certificates + personalisation + 交付通知書 -------------------------
    def _sign_decision(self, application, person, today: _dt.date) -> policy.Decision:
        return policy.signing_cert_eligible(self._birth(person), today,
                                            guardianship=bool(person["guardianship"]),
                                            declined=bool(application["decline_sign"]))

    def generate(self, app_id: str, *, at: _dt.datetime, keys: CardKeys | None = None) -> GenerateResult:
        """鍵ペア生成 + 証明書発行 (JPKI-4), personalisation and 交付通知書 for one application.

        Keys are made before the transaction (seconds of CPU must not hold the write lock);
        pre-made `keys` are used as given (a signing key is dropped when none is eligible).
        """
        at_ = _aware(at)
        # Read outside the transaction to know whether a signing key is needed; re-checked inside.
        app_id_, application, card, person = self._load(app_id)
        self._require(app_id_, card, at_, ("applied", "received"), "generate")
        today = policy.jst_date(at_)
        wants_sign = self._sign_decision(application, person, today).allowed
        if keys is None:
            keys = self.card_keys(wants_sign)
        keys = dataclasses.replace(keys)

        def body(at):
            app_id_, application, card, person = self._load(app_id)
            self._require(app_id_, card, at, ("applied", "received"), "generate")
            self._check_clock(app_id_, at)
            self._resident(person)
            if card["state"] == "applied":
                self._receive(app_id_, application, at)
            return self._generate(app_id_, application, person, keys, at)

        return self._run("generate", _target(app_id), at_, body)

    def _generate(self, app_id: str, application, person, keys: CardKeys, at: _dt.datetime) -> GenerateResult:
        rules = self.rules
        birth = self._birth(person)
        today = policy.jst_date(at)
        applied_on = min(policy.jst_date(parse_iso(application["applied_at"])), today)
        old = self.store.card(application["replaces"]) if application["replaces"] else None
        renewal_of = old_auth_end = None
        if application["kind"] == "renewal" and old is not None:
            renewal_of = _dt.date.fromisoformat(old["expires"])  # VAL-3
            old_auth = self.store.current_certificate(old["application_id"], "auth")
            if old_auth is not None:
                old_auth_end = policy.jst_date(parse_iso(old_auth["not_after"]))  # VAL-4, D7
        # ELIG-4 / VAL-1 / VAL-2 with M1's judged date (D8); a re-issue is a fresh issue (D6).
        start, card_expiry = policy.card_validity(birth, today, rules, renewal_of=renewal_of, applied_on=applied_on)
        _, auth_end = policy.auth_cert_validity(birth, today, card_expiry, rules, renewal_of=old_auth_end)
        sign_ok = self._sign_decision(application, person, today)  # ELIG-2, M9
        if not sign_ok.allowed:
            keys.sign = None
        elif keys.sign is None:
            keys.sign = self.key_factory()
        identity = self._identity(person)
        auth_cert = self._issue_cert(app_id, "auth", keys.auth, identity, at, auth_end)
        sign_cert = None
        if sign_ok.allowed:
            _, sign_end = policy.sign_cert_validity(today, auth_end)  # VAL-6
            sign_cert = self._issue_cert(app_id, "sign", keys.sign, identity, at, sign_end)
        for role in KEY_ROLES:
            key = getattr(keys, role)
            if key is not None:
                self.store.put_key(app_id, role, private_key_pem(key), at)
        cardwrite.record_binding(self.store, app_id, keys.common.public_key(), at)  # the card's own key
        notice_id = self.store.new_form_id("notice")
        self.store.record_personalisation(app_id, serial=self.store.new_card_serial(), starts=start.isoformat(),
                                          expires=card_expiry.isoformat(),
                                          security_code=f"{secrets.randbelow(10000):04d}", notice_id=notice_id,
                                          at=at)
        self._state(app_id, "issued", at, "generate")
        self.store.clear_claim(app_id)  # a batch worker's lease ends with the card it claimed
        card = self.store.card(app_id)
        self._store_image(app_id, card, person, keys=keys)  # FLOW-1 step 7: the chip is written
        self._state(app_id, "awaiting_delivery", at, "notice")  # step 8: 交付通知書 mailed
        self._note(card_expires=card_expiry.isoformat(), sign=sign_ok.reason, rule_set=rules.name)
        return GenerateResult(app_id, notice_id, card_expiry, auth_cert.serial_number,
                              sign_cert.serial_number if sign_cert else None, sign_ok.reason)

    # --- deliver (交付) ------------------------------------------------------------------------
    def deliver(self, app_id: str, *, at: _dt.datetime, pins: dict, identity_check: str,
                pins_set_by: str | None = None, proxy: ProxyHandover | None = None,
                notification_card_collected: bool = True,
                write: Callable[[CardImage], None] | None = None, output=None) -> CardImage:
        """交付 at the counter (FLOW-1 step 10, STATE-3 item 7): identity check recorded, PINs set
        by the holder or, under 15, the legal representative (ELIG-3, D11), a proxy only under
        FLOW-PROXY-1..6. `pins`: auth, kenhojo, juki (default = auth, AP-7), sign (only with a
        signing certificate). `write(image)` runs before the commit: if it fails, nothing changes.
        `output`: the card file, written after the commit (cardwrite.py: commit, then publish).
        The store keeps no private key of the holder once the card is handed over.
        """
        if not isinstance(identity_check, str) or not identity_check.strip():
            raise BadInput("STATE-3(7): handover needs the identity check that was made (identity_check)")
        identity_check = _valid(validate.text, identity_check.strip(), "identity_check")
        if proxy is not None and proxy.notice_id is not None:
            _valid(validate.text, proxy.notice_id, "notice_id")
        if pins_set_by not in (None, "holder", "legal_representative"):
            raise BadInput(f"pins_set_by must be holder or legal_representative, got {validate.shown(pins_set_by)}")
        pins = dict(pins)
        _check_pin(pins.get("auth"), AUTH_PIN_PATTERN, "the user-authentication PIN (4 digits, AP-4)")
        _check_pin(pins.get("kenhojo"), FOUR_DIGIT_PIN_PATTERN, "the 券面事項入力補助 PIN (4 digits, AP-5)")
        pins.setdefault("juki", pins["auth"])
        if pins["juki"] is None:
            pins["juki"] = pins["auth"]
        _check_pin(pins["juki"], FOUR_DIGIT_PIN_PATTERN, "the 住基 PIN (4 digits, AP-6)")

        def body(at):
            app_id_, application, card, person = self._load(app_id)
            self._require(app_id_, card, at, ("awaiting_delivery",), "deliver")
            self._check_clock(app_id_, at)
            self._resident(person)
            today = policy.jst_date(at)
            if policy.expired(_dt.date.fromisoformat(card["expires"]), at):
                raise Refused(f"VAL-12: the card expired on {card['expires']} before it was handed over")
            has_sign = self._current_cert(app_id_, "sign") is not None
            if has_sign:
                _check_pin(pins.get("sign"), SIGN_PIN_PATTERN,
                           "the signing password (6-16 of A-Z and 0-9, AP-3)")
            elif pins.get("sign"):
                self._note(sign_pin="ignored: the card has no signing certificate")
            setter = policy.pin_setter(self._birth(person), today)  # ELIG-3, D11
            if pins_set_by is not None and pins_set_by != setter:
                if setter == "legal_representative":
                    raise Refused(f"ELIG-3: the holder is under 15 on {today.isoformat()}; the legal "
                                  "representative sets the PINs")
                raise Refused(f"ELIG-3: the holder is 15 or over on {today.isoformat()} and sets the PINs")
            if proxy is not None:
                decision = check_proxy(proxy, has_sign_cert=has_sign, today=today, notice_id=card["notice_id"])
                if not decision.allowed:
                    raise Refused(decision.reason)
                self._note(proxy=decision.reason)
            image = self._build_image(app_id_, card, person, {**pins, "sign": pins.get("sign") if has_sign else None})
            # STATE-3(8) / FLOW-RENEW-1 step 8: the old card of a renewal is abolished and collected
            if application["replaces"]:
                self._retire_replaced(application["replaces"], app_id_, at, collect=application["kind"] == "renewal")
            self.store.record_delivery(app_id_, at=at, identity_check=identity_check.strip(), pins_set_by=setter,
                                       proxy_json=json.dumps(proxy.to_json(), ensure_ascii=False) if proxy else None,
                                       notification_card_collected=notification_card_collected)
            self._state(app_id_, "active", at, "deliver")
            self._note(pins_set_by=setter, by_proxy=proxy is not None)
            self.store.delete_keys(app_id_)  # custody ends with the handover (cardwrite.py)
            self.store.set_card_image(app_id_, None)
            if write is not None:
                write(image)
            if output is not None:
                self._publish(app_id_, "deliver", image, output, at)
            return image

        return self._run("deliver", _target(app_id), at, body)

    def _retire_replaced(self, old_id: str, new_id: str, at: _dt.datetime, *, collect: bool) -> None:
        old = self.store.card(old_id)
        if old is None:
            return
        if old["state"] in IN_SERVICE:
            self._revoke_certs(old_id, at, "superseded")
            self._retire_keys(old_id)
            self._state(old_id, "abolished", at, f"replaced by {new_id}")
        if collect and self.store.card(old_id)["state"] == "abolished":
            self._state(old_id, "collected", at, f"handed in for {new_id}")
        self.store.set_replaced_by(old_id, new_id)

    # --- suspension (FLOW-SUSP-3) ---------------------------------------------------------------
    def suspend(self, app_id: str, *, at: _dt.datetime, caller: Basic4 | None = None) -> list[int]:
        """一時停止 + 一時保留 by the call centre. With `caller`, the 基本4情報 the caller gives
        must match the record (FLOW-SUSP-3). Decision: without `caller` the suspension is an
        operator's own act (e.g. on a report received at the municipality) and is audited as such.
        Returns the serials put on hold."""
        if caller is not None:
            _valid(validate.text, caller.name, "caller_name")
            _valid(validate.text, caller.address, "caller_address")
            _valid(validate.check_birth, caller.birth, "caller_birth")
            if not isinstance(caller.sex, str) or len(caller.sex) != 1:
                raise BadInput(f"caller_sex must be one JIS X 0303 digit, got {validate.shown(caller.sex)}")

        def body(at):
            app_id_, application, card, person = self._load(app_id)
            self._require(app_id_, card, at, ("active",), "suspend")
            self._check_clock(app_id_, at)
            if caller is not None:
                wrong = [label for label, given, have in (
                    ("氏名", caller.name, person["name"]), ("生年月日", caller.birth.isoformat(), person["birth"]),
                    ("性別", caller.sex, person["sex"]), ("住所", caller.address, person["address"]))
                    if given != have]
                if wrong:
                    raise Refused(f"FLOW-SUSP-3: the caller's 基本4情報 do not match the record "
                                  f"({', '.join(wrong)}); not suspended")
                self._note(channel="call-centre", identity="basic4 matched")
            else:
                self._note(channel="operator")
            held = []
            for row in self._live_certs(app_id_):  # STATE-3(3): every certificate on the card
                if row["status"] == "good":
                    self.store.cert_event(row["id"], "hold", at=at, reason="certificateHold", audit_id=self._audit_id)
                    held.append(row["serial"])
            self._state(app_id_, "suspended", at, "suspend")
            return held

        return self._run("suspend", _target(app_id), at, body)

    def resume(self, app_id: str, *, at: _dt.datetime, identity_check: str = "counter identity check",
               channel: str = "counter") -> list[int]:
        """解除 (FLOW-SUSP-3): only at the counter, after an identity check, with the 一時停止解除申請書.
        Returns the serials released."""
        if identity_check and isinstance(identity_check, str) and identity_check.strip():
            identity_check = _valid(validate.text, identity_check.strip(), "identity_check")
        if not isinstance(channel, str) or len(channel) > 32:
            raise BadInput(f"channel must be a short text, got {validate.shown(channel)}")

        def body(at):
            app_id_, application, card, person = self._load(app_id)
            if channel != "counter":
                raise Refused(f"FLOW-SUSP-3: release is done only at the counter (channel {channel!r} refused)")
            if not identity_check or not identity_check.strip():
                raise BadInput("FLOW-SUSP-3: release needs an identity check")
            self._require(app_id_, card, at, ("suspended",), "resume")
            self._check_clock(app_id_, at)
            released = []
            for row in self._live_certs(app_id_):
                if row["status"] == "hold":
                    self.store.cert_event(row["id"], "released", at=at, reason=None, audit_id=self._audit_id)
                    released.append(row["serial"])
            self._state(app_id_, "active", at, "resume")
            self._note(identity_check=identity_check.strip())
            return released

        return self._run("resume", _target(app_id), at, body)

    # --- 異動 (MOV-1) ---------------------------------------------------------------------------
    def move(self, app_id: str, *, at: _dt.datetime, address: str, address_alt: str | None = None,
             card_image: CardImage | None = None, sign_key=None, card_path=None) -> dict:
        """異動 (change of address) at the counter (MOV-1, MOV-2, VAL-10).

        The signing certificate (it carries the address) is revoked as superseded and a new one
        is issued that ends with the user-authentication certificate; that one is kept. The store's
        image is re-personalised with the new address; with `card_image` (the card the holder
        presents) the rewritten card, PINs carried over, is returned in result["image"].
        """
        address = _address(address)
        if address_alt is not None and (len(address_alt) != len(address) or set(address_alt) - {"0", "1"}):
            raise BadInput(f"address_alt must be one 0/1 flag per character ({len(address)} flags)")
        new_key = None

        def body(at):
            nonlocal new_key
            app_id_, application, card, person = self._load(app_id)
            self._require(app_id_, card, at, ("active",), "move")
            self._check_clock(app_id_, at)
            self._resident(person)
            self._no_pending_replacement(app_id_, card)
            if card_image is not None:
                cardwrite.check_binding(self.store, app_id_, card_image)
            fresh = {}  # keys made now on the presented card (never stored)
            if address == person["address"]:
                raise BadInput("the new address is the registered one; nothing moves")
            today = policy.jst_date(at)
            self.store.change_person(person["id"], at=at, field="address", value=address, reason="異動",
                                     audit_id=self._audit_id)
            self.store.change_person(person["id"], at=at, field="address_alt", value=address_alt,
                                     reason="異動", audit_id=self._audit_id)
            person = self.store.person(person["id"])
            result = {"id": app_id_, "revoked_sign_serial": None, "sign_serial": None, "image": None}
            old_sign = self._current_cert(app_id_, "sign")
            auth_row = self._current_cert(app_id_, "auth")
            if old_sign is not None:
                self.store.cert_event(old_sign["id"], "revoked", at=at, reason="superseded", audit_id=self._audit_id)
                result["revoked_sign_serial"] = old_sign["serial"]
                self.store.delete_keys(app_id_, ["sign"])
                eligible = self._sign_decision(application, person, today)
                if eligible.allowed and auth_row is not None:
                    auth_end = policy.jst_date(parse_iso(auth_row["not_after"]))
                    _, sign_end = policy.sign_cert_validity(today, auth_end)  # VAL-6, VAL-10
                    key = sign_key or self.key_factory()
                    cert = self._issue_cert(app_id_, "sign", key, self._identity(person), at, sign_end)
                    if card_image is None:  # waits in the store for its card (write-card)
                        self.store.put_key(app_id_, "sign", private_key_pem(key), at)
                    else:
                        fresh["sign"] = key
                    result["sign_serial"] = cert.serial_number
                else:
                    self._note(sign=eligible.reason)
            card = self.store.card(app_id_)
            self._store_image(app_id_, card, person)
            if card_image is not None:
                keys = cardwrite.rewrite_keys(self, app_id_, person, card_image, at, fresh)
                image = self._build_image(app_id_, card, person, _transport_pins(keys.sign is not None), keys=keys)
                result["image"] = carry_pins(card_image, image)
                if card_path is not None:
                    self._publish(app_id_, "move", result["image"], card_path, at)
            self._note(revoked_sign=_hex(result["revoked_sign_serial"]), new_sign=_hex(result["sign_serial"]),
                       card_written=card_image is not None)
            return result

        return self._run("move", _target(app_id), at, body)

    def _no_pending_replacement(self, app_id: str, card) -> None:
        row = self.store.pending_replacement(app_id)
        if row is not None:
            raise IllegalState(f"card {app_id} already has a pending replacement {row[0]} ({row[1]} "
                               f"{STATE_LABELS[row[1]]})")

    def write_card(self, app_id: str, *, at: _dt.datetime, card_image: CardImage,
                   sign_pin: str | None = None, card_path=None) -> CardImage:
        """Rewrite the presented card from the store (e.g. after a 異動 done without the card):
        current certificates, keys and identity; the holder's PINs carried over."""
        if sign_pin is not None:
            _check_pin(sign_pin, SIGN_PIN_PATTERN, "the signing password (6-16 of A-Z and 0-9, AP-3)")

        def body(at):
            app_id_, application, card, person = self._load(app_id)
            self._require(app_id_, card, at, ("active",), "write-card")
            self._check_clock(app_id_, at)
            if card_image.meta.get("application_id") not in (None, app_id_):
                raise Refused(f"the presented card belongs to {card_image.meta.get('application_id')}, "
                              f"not {app_id_}")
            cardwrite.check_binding(self.store, app_id_, card_image)
            keys = cardwrite.rewrite_keys(self, app_id_, person, card_image, at, {})
            image = self._build_image(app_id_, card, person, _transport_pins(keys.sign is not None), keys=keys)
            image = carry_pins(card_image, image, sign_pin=sign_pin)
            if card_path is not None:
                self._publish(app_id_, "write-card", image, card_path, at)
            return image

        return self._run("write-card", _target(app_id), at, body)

    # --- 更新 (VAL-7, FLOW-RENEW-*) -------------------------------------------------------------
    def renew(self, app_id: str, *, at: _dt.datetime, card_image: CardImage | None = None,
              sign_pin: str | None = None, decline_sign: bool | None = None, card_path=None) -> RenewResult:
        """更新 within the window (VAL-7, STATE-3 item 4).

        The card in its window → a renewal application (FLOW-RENEW-1; the new card counts from the
        old expiry, VAL-3). Otherwise the user-authentication certificate in its window → new
        certificates on the same card (VAL-4, D7), new key pairs, old certificates revoked as
        superseded. Otherwise refused with the policy's reason (VAL-7 not yet / VAL-9 expired).
        """
        if sign_pin is not None:
            _check_pin(sign_pin, SIGN_PIN_PATTERN, "the signing password (6-16 of A-Z and 0-9, AP-3)")

        def body(at):
            app_id_, application, card, person = self._load(app_id)
            state = self._effective_state(card, at)
            today = policy.jst_date(at)
            expiry = _dt.date.fromisoformat(card["expires"]) if card["expires"] else None
            if state == "expired":
                raise Refused(policy.renewal_allowed(expiry, today).reason)
            if state == "suspended":
                raise IllegalState(f"renew refused: card {app_id_} is suspended ({STATE_LABELS['suspended']}); "
                                   "release it at the counter first (FLOW-SUSP-3)")
            self._require(app_id_, card, at, ("active",), "renew")
            self._check_clock(app_id_, at)
            self._resident(person)
            self._no_pending_replacement(app_id_, card)
            card_decision = policy.renewal_allowed(expiry, today)
            if card_decision.allowed:
                declined = application["decline_sign"] if decline_sign is None else decline_sign
                new_id = self._new_application(person["id"], at, kind="renewal", replaces=app_id_,
                                               decline_sign=bool(declined), alt_confirmed=True)
                self.store.set_audit_target(self._audit_id, app_id_)
                self._note(renewal=new_id, reason=card_decision.reason)
                return RenewResult("card", new_id, app_id_, card_decision.reason)
            auth_row = self._current_cert(app_id_, "auth")
            auth_end = policy.jst_date(parse_iso(auth_row["not_after"])) if auth_row is not None else None
            cert_decision = policy.renewal_allowed(auth_end, today) if auth_end else None
            if cert_decision is not None and cert_decision.allowed and auth_end < expiry:
                return self._renew_certs(app_id_, application, card, person, auth_row, auth_end, at,
                                         cert_decision, card_image, sign_pin, card_path)
            # Refused: name the window that opens next (certificates usually before the card).
            reasons = ["card: " + card_decision.reason]
            if cert_decision is not None and auth_end < expiry:
                reasons.insert(0, "certificates: " + cert_decision.reason)
            raise Refused("renewal refused: " + "; ".join(reasons))

        return self._run("renew", _target(app_id), at, body)

    def _renew_certs(self, app_id, application, card, person, auth_row, auth_end, at, decision,
                     card_image, sign_pin, card_path=None) -> RenewResult:
        rules = self.rules
        today = policy.jst_date(at)
        birth = self._birth(person)
        expiry = _dt.date.fromisoformat(card["expires"])
        sign_ok = self._sign_decision(application, person, today)  # D10: judged on the new issue date
        had_sign = self._current_cert(app_id, "sign") is not None
        if sign_ok.allowed and not had_sign and card_image is not None and sign_pin is None:
            raise BadInput("a first signing certificate needs a signing password (--sign-pin)")
        if card_image is not None:
            cardwrite.check_binding(self.store, app_id, card_image)
        fresh = {}  # with the card: new keys made on it, never stored; without: pending in the store
        revoked = self._revoke_certs(app_id, at, "superseded")
        _, new_auth_end = policy.auth_cert_validity(birth, today, expiry, rules, renewal_of=auth_end)  # VAL-4
        identity = self._identity(person)
        auth_key = self.key_factory()
        self._issue_cert(app_id, "auth", auth_key, identity, at, new_auth_end)
        self.store.delete_keys(app_id, ["sign"])
        fresh["auth"] = auth_key
        if sign_ok.allowed:
            sign_key = self.key_factory()
            _, sign_end = policy.sign_cert_validity(today, new_auth_end)  # VAL-6
            self._issue_cert(app_id, "sign", sign_key, identity, at, sign_end)
            fresh["sign"] = sign_key
        if card_image is None:
            for role, key in fresh.items():
                self.store.put_key(app_id, role, private_key_pem(key), at)
        card = self.store.card(app_id)
        self._store_image(app_id, card, person)
        image = None
        if card_image is not None:
            keys = cardwrite.rewrite_keys(self, app_id, person, card_image, at, fresh)
            image = self._build_image(app_id, card, person, _transport_pins(keys.sign is not None), keys=keys)
            image = carry_pins(card_image, image, sign_pin=sign_pin)
            if card_path is not None:
                self._publish(app_id, "renew", image, card_path, at)
        self._note(certificates_renewed=True, superseded=[_hex(s) for s in revoked], sign=sign_ok.reason,
                   card_written=card_image is not None)
        return RenewResult("certificates", app_id, app_id, decision.reason, image)

    # --- 再発行, 廃止, 回収, 廃棄, 失効 -----------------------------------------------------------
    def reissue(self, app_id: str, *, at: _dt.datetime, reason: str = "lost") -> str:
        """再発行 (FLOW-REISSUE-1 [INF]): a fresh issue (D6) that abolishes the old card now.
        A lost card's certificates are revoked as keyCompromise. Returns the new application id."""
        if reason not in REISSUE_REASONS:
            raise BadInput(f"reissue reason must be one of {', '.join(REISSUE_REASONS)}, got {validate.shown(reason)}")

        def body(at):
            app_id_, application, card, person = self._load(app_id)
            self._require(app_id_, card, at, ("active", "suspended", "expired"), "reissue")
            self._check_clock(app_id_, at)
            self._resident(person)
            self._no_pending_replacement(app_id_, card)
            revoked = self._revoke_certs(app_id_, at, REISSUE_REASONS[reason])
            self._retire_keys(app_id_)
            self._state(app_id_, "abolished", at, f"reissue ({reason})")
            new_id = self._new_application(person["id"], at, kind="reissue", replaces=app_id_,
                                           decline_sign=bool(application["decline_sign"]), alt_confirmed=True)
            self.store.set_replaced_by(app_id_, new_id)
            self.store.set_audit_target(self._audit_id, app_id_)
            self._note(reissue=new_id, ground=reason, revoked=[_hex(s) for s in revoked])
            return new_id

        return self._run("reissue", _target(app_id), at, body, reason=reason)

    def abolish(self, app_id: str, *, at: _dt.datetime, reason: str = "holder-request") -> None:
        """廃止 (FLOW-ABOL-1): the card leaves service; its certificates are revoked."""
        if reason not in ABOLISH_REASONS:
            raise BadInput(f"abolish reason must be one of {', '.join(ABOLISH_REASONS)}, got {validate.shown(reason)}")

        def body(at):
            app_id_, application, card, person = self._load(app_id)
            self._require(app_id_, card, at, ("active", "suspended", "expired"), "abolish")
            self._check_clock(app_id_, at)
            self._revoke_certs(app_id_, at, ABOLISH_REASONS[reason])
            self._retire_keys(app_id_)
            self._state(app_id_, "abolished", at, "abolish")

        return self._run("abolish", _target(app_id), at, body, reason=reason)

    def collect(self, app_id: str, *, at: _dt.datetime) -> None:
        """回収 (FLOW-ABOL-1): the abolished or revoked card is handed in."""
        def body(at):
            app_id_, _, card, _ = self._load(app_id)
            self._require(app_id_, card, at, ("abolished", "revoked"), "collect")
            self._check_clock(app_id_, at)
            self._state(app_id_, "collected", at, "collect")
        return self._run("collect", _target(app_id), at, body)

    def destroy(self, app_id: str, *, at: _dt.datetime) -> None:
        """廃棄 (FLOW-ABOL-1): the collected card is destroyed."""
        def body(at):
            app_id_, _, card, _ = self._load(app_id)
            self._require(app_id_, card, at, ("collected",), "destroy")
            self._check_clock(app_id_, at)
            self._state(app_id_, "destroyed", at, "destroy")
        return self._run("destroy", _target(app_id), at, body)

    def revoke(self, app_id: str, *, at: _dt.datetime, reason: str) -> dict:
        """失効 of the card and its certificates (M10): death, removal of the resident record
        (消除), or a change of 個人番号 (NUM-7: a new number is designated, history kept).
        Death and removal end every live card and pending application of the person."""
        if reason not in REVOKE_REASONS:
            raise BadInput(f"revoke reason must be one of {', '.join(REVOKE_REASONS)}, got {validate.shown(reason)}")

        def body(at):
            app_id_, application, card, person = self._load(app_id)
            self._require(app_id_, card, at, LIVE_STATES + ("expired",), "revoke")
            self._check_clock(app_id_, at)
            targets = [app_id_]
            if reason in ("death", "removed"):
                targets += [c["application_id"] for c in self.store.cards_of_person(person["id"])
                            if c["application_id"] != app_id_ and c["state"] in LIVE_STATES]
            revoked = []
            for target in targets:
                revoked += self._revoke_certs(target, at, REVOKE_REASONS[reason])
                self._retire_keys(target)
                self._state(target, "revoked", at, f"revoke ({reason})")
            if reason == "death":
                self.store.change_person(person["id"], at=at, field="resident_status", value="deceased",
                                         reason="death", audit_id=self._audit_id)
            elif reason == "removed":
                self.store.change_person(person["id"], at=at, field="resident_status", value="removed",
                                         reason="消除", audit_id=self._audit_id)
            else:
                self.store.assign_individual_number(person["id"], at=at, reason="NUM-7 change")
            self._note(cards=targets, revoked=[_hex(s) for s in revoked])
            return {"revoked_cards": targets, "revoked_serials": revoked}

        return self._run("revoke", _target(app_id), at, body, reason=reason)

    # --- status ---------------------------------------------------------------------------------
    def status(self, app_id: str, *, at: _dt.datetime, reveal: bool = False) -> dict:
        """The card and its certificates as of `at` (read only, not audited unless revealing)."""
        from mynaemu.card.redact import mask_number

        at = _aware(at)
        cardwrite.complete_pending(self.store)  # `issue status` finishes a card write a kill interrupted
        app_id_, application, card, person = self._load(app_id)
        number = self.store.individual_number(person["id"])
        if reveal:
            # SEC-8: showing a 個人番号 is an access to identify a person; it is logged (without it).
            self.store.audit(at=at, operator=self.operator, terminal=self.terminal, operation="status --reveal",
                             target=app_id_, outcome="ok")
        # The state as of `at` (the settable clock can look back, or ahead of a persona's future)
        past = [e for e in self.store.card_events(app_id_) if e["at"] <= iso(at)]
        as_of = dict(card)
        as_of["state"] = past[-1]["to_state"] if past else "not_yet_applied"
        out = {
            "id": app_id_,
            "state": self._effective_state(as_of, at),
            "stored_state": card["state"],
            "kind": application["kind"],
            "replaces": application["replaces"],
            "replaced_by": card["replaced_by"],
            "holder": {"name": person["name"], "birth": person["birth"], "sex": person["sex"],
                       "address": person["address"], "guardianship": bool(person["guardianship"]),
                       "resident_status": person["resident_status"]},
            "individual_number": mask_number(number, reveal),
            "card_serial": card["serial"],
            "card_starts": card["starts"],
            "card_expires": card["expires"],
            "notice_id": card["notice_id"],
            "delivered_at": _jst(card["delivered_at"]) if card["delivered_at"] else None,
            "rule_set": self.rules.name,
        }
        out["state_label"] = STATE_LABELS[out["state"]]
        certs = []
        when = iso(at)
        current = {"auth": None, "sign": None}
        for row in self.store.certificates_of(app_id_):
            if self.store.cert_events(row["id"])[0]["at"] > when:
                continue  # issued after `at`: it did not exist yet
            state = self.store.status_at(row, at)
            entry = {"kind": row["ca_kind"], "serial": f"{row['serial']:X}",
                     "not_before": _jst(row["not_before"]), "not_after": _jst(row["not_after"]),
                     "status": state["status"], "since": _jst(state["since"]) if state["since"] else None,
                     "reason": state["reason"]}
            certs.append(entry)
            current[row["ca_kind"]] = entry
        out["auth_cert"] = current["auth"]
        # a revoked signing certificate with no successor is still reported (e.g. after 異動 on a
        # card that no longer qualifies), so the tester sees why it is unusable
        out["sign_cert"] = current["sign"]
        out["certificates"] = certs
        return out


def _load_key(pem: bytes):
    # The store's own keys were checked when generated; skipping OpenSSL's RSA consistency
    # check here saves ~35 ms a key, 9 keys each time the counter rewrites a card.
    from cryptography.hazmat.primitives import serialization

    try:
        return serialization.load_pem_private_key(pem, password=None, unsafe_skip_rsa_key_validation=True)
    except TypeError:  # an older cryptography without the flag
        return load_private_key_pem(pem)


def _text(value, what: str) -> str:
    return _valid(validate.text, value, what)  # docs/input-limits.md


def _address(value) -> str:
    """A 住所 the card can carry: card/limits.py ADDRESS_MAX_CHARS is binding (spec §13.4)."""
    try:
        return check_address(_text(value, "address"))
    except LimitError as exc:
        raise BadInput(str(exc)) from None


def _target(app_id) -> str | None:
    try:
        return check_form_id(app_id)
    except (ValueError, TypeError):
        # a bad id is audited escaped and cut short (it may be bytes that are not UTF-8)
        return validate.shown(app_id) if app_id is not None else None


def _hex(serial: int | None) -> str | None:
    return f"{serial:X}" if serial is not None else None


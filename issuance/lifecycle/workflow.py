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

Decisions on points the seeds leave open ([U], rules.md §19) are marked "Decision:" in the steps.

The house: transitions.py holds the state machine as one table (TRANSITIONS); the steps live one
module per group — steps_apply (申請, 受付), steps_issue (発行, 交付), steps_suspend (一時停止, 解除),
steps_change (異動, write-card, 更新, 再発行), steps_pins (暗証番号の初期化), steps_end (廃止, 回収,
廃棄, 失効) — with proxy.py (FLOW-PROXY), pins.py (PIN formats and carry-over) and inputs.py (input
checks). This module keeps the Workflow facade, the step runner (`_run` / `_run_once`:
transaction, audit, card publishing) and what every step shares (loading, the state check and transition, certificates, images).
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import random
import time
from typing import Callable

from cryptography import x509

from mynaemu.card.image import CardImage

from mynaemu.issuance.lifecycle import cardwrite
from mynaemu.issuance import policy, validate
from mynaemu.issuance.pki.ca import TestPKI
from mynaemu.issuance.identity import Identity
from mynaemu.issuance.pki.keys import generate_rsa_key, load_private_key_pem
from mynaemu.issuance.personalise import KEYS_PER_CARD, CardKeys, CardRequest, personalise
from mynaemu.issuance.pki.profiles import make_issue_id
from mynaemu.issuance.store import Store, StoreConflict, check_form_id, iso, parse_iso
from mynaemu.issuance.lifecycle.transitions import (  # noqa: F401  (re-exported)
    IN_SERVICE, LIVE_STATES, PENDING_STATES, STATE_LABELS, TRANSITIONS, illegal_state_message,
)

__all__ = [
    "STATE_LABELS", "LIVE_STATES", "WorkflowError", "IllegalState", "Refused", "NotFound", "BadInput",
    "Basic4", "ProxyHandover", "PROXY_CONDITIONS", "PROXY_RELATIONS", "PROXY_DOCUMENTS", "check_proxy",
    "Workflow", "GenerateResult", "RenewResult", "KEY_ROLES", "KEYS_PER_CARD",
    "AUTH_PIN_PATTERN", "SIGN_PIN_PATTERN", "FOUR_DIGIT_PIN_PATTERN", "carry_pins",
]

# A transaction PostgreSQL aborted (StoreConflict) is run again this many times.
_CONFLICT_RETRIES = 5


# ---------------------------------------------------------------------------------------------
# errors
# ---------------------------------------------------------------------------------------------

# The refusals live in the leaf module issuance/errors.py (a kind each, no exit code: the CLI
# maps kinds to exit codes); imported here so workflow.Refused etc. keep working.
from mynaemu.issuance.errors import BadInput, IllegalState, NotFound, Refused, WorkflowError  # noqa: E402,F401


# The step modules; the names they define stay importable from here.
from mynaemu.issuance.lifecycle import (  # noqa: E402
    steps_apply, steps_change, steps_end, steps_issue, steps_pins, steps_suspend,
)
from mynaemu.issuance.lifecycle.inputs import audit_target, aware, jst_text, valid  # noqa: E402
from mynaemu.issuance.lifecycle.pins import (  # noqa: E402,F401
    AUTH_PIN_PATTERN, FOUR_DIGIT_PIN_PATTERN, SIGN_PIN_PATTERN, carry_pins, transport_pins,
)
from mynaemu.issuance.lifecycle.proxy import (  # noqa: E402,F401
    BASE_PROXY_DOCS, PROXY_CONDITIONS, PROXY_DOCUMENTS, PROXY_RELATIONS, ProxyHandover, check_proxy,
)
from mynaemu.issuance.lifecycle.steps_change import REISSUE_REASONS, RenewResult  # noqa: E402,F401
from mynaemu.issuance.lifecycle.steps_end import ABOLISH_REASONS, REVOKE_REASONS  # noqa: E402,F401
from mynaemu.issuance.lifecycle.steps_issue import KEY_ROLES, GenerateResult  # noqa: E402,F401
from mynaemu.issuance.lifecycle.steps_suspend import Basic4  # noqa: E402,F401


# ---------------------------------------------------------------------------------------------
# the workflow
# ---------------------------------------------------------------------------------------------

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
        self.operator = valid(validate.audit_id, operator, "operator")
        self.terminal = valid(validate.audit_id, terminal, "terminal")
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

    # --- the step runner: the transaction + audit frame ---------------------------------------
    def _run(self, operation: str, target: str | None, at: _dt.datetime, body, *, reason: str | None = None):
        """Run one step: `body(at)` inside one store transaction with its audit record. Every
        step's writes go through here (the place for a check that applies to every step)."""
        at = aware(at)
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
        valid(validate.form_id_text, app_id)
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

    def _require(self, app_id: str, card, at: _dt.datetime, operation: str) -> str:
        """IllegalState unless TRANSITIONS lets `operation` start from the card's effective state."""
        state = self._effective_state(card, at)
        if not TRANSITIONS[operation].allows(state):
            raise IllegalState(illegal_state_message(operation, app_id, state, card["expires"]))
        return state

    def _check_clock(self, app_id: str, at: _dt.datetime) -> None:
        last = self.store.last_change_at(app_id)
        if last is not None and iso(at) < last:
            raise Refused(f"clock: card {app_id} last changed at {jst_text(last)}; an operation at "
                          f"{jst_text(at)} would rewrite its history")

    def _resident(self, person) -> None:
        if person["resident_status"] != "resident":
            raise Refused(f"M10: the resident record is {person['resident_status']}; no card work is possible")

    def _enter(self, app_id: str, operation: str, at: _dt.datetime, label: str | None = None) -> None:
        """Move the card to the state TRANSITIONS gives `operation`; the card's event names the
        operation (or `label`, e.g. with the ground: "revoke (death)")."""
        to_state = TRANSITIONS[operation].to
        self.store.set_card_state(app_id, to_state, at=at, operation=label or operation, audit_id=self._audit_id)

    # --- certificates -----------------------------------------------------------------------
    def _live_certs(self, app_id: str) -> list:
        return self.store.certificates_of(app_id, include_revoked=False)

    def _certs_follow(self, app_id: str, operation: str, at: _dt.datetime, reason: str | None = None) -> list[int]:
        """The certificate effect TRANSITIONS gives `operation` (STATE-2), on every live
        certificate of the card in one of its statuses; `reason` when the table leaves it to the
        step. Returns the serials changed."""
        effect = TRANSITIONS[operation].certificates
        done = []
        for row in self._live_certs(app_id):
            if row["status"] in effect.from_status:
                self.store.cert_event(row["id"], effect.event, at=at, reason=effect.reason or reason,
                                      audit_id=self._audit_id)
                done.append(row["serial"])
        return done

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
        image = self._build_image(app_id, card, person, transport_pins(has_sign), identity=identity, keys=keys)
        self.store.set_card_image(app_id, json.dumps(image.to_json(), ensure_ascii=False))

    def _sign_decision(self, application, person, today: _dt.date) -> policy.Decision:
        return policy.signing_cert_eligible(self._birth(person), today,
                                            guardianship=bool(person["guardianship"]),
                                            declined=bool(application["decline_sign"]))

    def _retire_keys(self, app_id: str) -> None:
        # Decision (store.py): keys leave the store with the card (廃止 / 失効).
        self.store.delete_keys(app_id)
        self.store.set_card_image(app_id, None)

    # =========================================================================================
    # operations: one facade method per step (the step's code is in steps_*.py)
    # =========================================================================================

    def apply(self, *, name: str, birth: _dt.date, sex: str, address: str, at: _dt.datetime,
              guardianship: bool = False, decline_sign: bool = False, name_kana: str = "",
              name_alt: str | None = None, address_alt: str | None = None, alt_confirmed: bool = True,
              municipality_code: str = "13221", prefecture_romaji: str = "Tokyo-to",
              city_romaji: str = "Kiyose-shi") -> str:
        """申請 (FLOW-3): register a returned form; returns the application id (steps_apply.apply)."""
        return steps_apply.apply(
            self, name=name, birth=birth, sex=sex, address=address, at=at, guardianship=guardianship,
            decline_sign=decline_sign, name_kana=name_kana, name_alt=name_alt, address_alt=address_alt,
            alt_confirmed=alt_confirmed, municipality_code=municipality_code,
            prefecture_romaji=prefecture_romaji, city_romaji=city_romaji)

    def receive(self, app_id: str, *, at: _dt.datetime) -> None:
        """受付 (FLOW-1 step 5: 交付申請内容登録)."""
        return steps_apply.receive(self, app_id, at=at)

    def generate(self, app_id: str, *, at: _dt.datetime, keys: CardKeys | None = None) -> GenerateResult:
        """鍵ペア生成 + 証明書発行 (JPKI-4), personalisation and 交付通知書 (steps_issue.generate)."""
        return steps_issue.generate(self, app_id, at=at, keys=keys)

    def deliver(self, app_id: str, *, at: _dt.datetime, pins: dict, identity_check: str,
                pins_set_by: str | None = None, proxy: ProxyHandover | None = None,
                notification_card_collected: bool = True,
                write: Callable[[CardImage], None] | None = None, output=None) -> CardImage:
        """交付 at the counter (FLOW-1 step 10, STATE-3 item 7; steps_issue.deliver)."""
        return steps_issue.deliver(self, app_id, at=at, pins=pins, identity_check=identity_check,
                                   pins_set_by=pins_set_by, proxy=proxy,
                                   notification_card_collected=notification_card_collected, write=write,
                                   output=output)

    def suspend(self, app_id: str, *, at: _dt.datetime, caller: Basic4 | None = None) -> list[int]:
        """一時停止 + 一時保留 (FLOW-SUSP-3; steps_suspend.suspend). Returns the serials put on hold."""
        return steps_suspend.suspend(self, app_id, at=at, caller=caller)

    def resume(self, app_id: str, *, at: _dt.datetime, identity_check: str = "counter identity check",
               channel: str = "counter") -> list[int]:
        """解除 at the counter (FLOW-SUSP-3; steps_suspend.resume). Returns the serials released."""
        return steps_suspend.resume(self, app_id, at=at, identity_check=identity_check, channel=channel)

    def move(self, app_id: str, *, at: _dt.datetime, address: str, address_alt: str | None = None,
             card_image: CardImage | None = None, sign_key=None, card_path=None) -> dict:
        """異動 (MOV-1, MOV-2, VAL-10; steps_change.move)."""
        return steps_change.move(self, app_id, at=at, address=address, address_alt=address_alt,
                                 card_image=card_image, sign_key=sign_key, card_path=card_path)

    def write_card(self, app_id: str, *, at: _dt.datetime, card_image: CardImage,
                   sign_pin: str | None = None, card_path=None) -> CardImage:
        """Rewrite the presented card from the store (MOV-2; steps_change.write_card)."""
        return steps_change.write_card(self, app_id, at=at, card_image=card_image, sign_pin=sign_pin,
                                       card_path=card_path)

    def pin_reset(self, app_id: str, *, at: _dt.datetime, card_image: CardImage, pin: str, new_pin: str,
                  identity_check: str = steps_pins.DEFAULT_IDENTITY_CHECK, card_path=None) -> steps_pins.PinReset:
        """暗証番号の初期化 at the counter: one PIN of the presented card set anew and unblocked (steps_pins)."""
        return steps_pins.pin_reset(self, app_id, at=at, card_image=card_image, pin=pin, new_pin=new_pin,
                                    identity_check=identity_check, card_path=card_path)

    def renew(self, app_id: str, *, at: _dt.datetime, card_image: CardImage | None = None,
              sign_pin: str | None = None, decline_sign: bool | None = None, card_path=None) -> RenewResult:
        """更新 within the window (VAL-7, STATE-3 item 4; steps_change.renew)."""
        return steps_change.renew(self, app_id, at=at, card_image=card_image, sign_pin=sign_pin,
                                  decline_sign=decline_sign, card_path=card_path)

    def reissue(self, app_id: str, *, at: _dt.datetime, reason: str = "lost") -> str:
        """再発行 (FLOW-REISSUE-1, D6; steps_change.reissue). Returns the new application id."""
        return steps_change.reissue(self, app_id, at=at, reason=reason)

    def abolish(self, app_id: str, *, at: _dt.datetime, reason: str = "holder-request") -> None:
        """廃止 (FLOW-ABOL-1; steps_end.abolish)."""
        return steps_end.abolish(self, app_id, at=at, reason=reason)

    def collect(self, app_id: str, *, at: _dt.datetime) -> None:
        """回収 (FLOW-ABOL-1; steps_end.collect)."""
        return steps_end.collect(self, app_id, at=at)

    def destroy(self, app_id: str, *, at: _dt.datetime) -> None:
        """廃棄 (FLOW-ABOL-1; steps_end.destroy)."""
        return steps_end.destroy(self, app_id, at=at)

    def revoke(self, app_id: str, *, at: _dt.datetime, reason: str) -> dict:
        """失効 (M10, NUM-7; steps_end.revoke)."""
        return steps_end.revoke(self, app_id, at=at, reason=reason)

    # --- search (SEC-15) -------------------------------------------------------------------------
    def search(self, *, at: _dt.datetime, name: str | None = None, birth: _dt.date | None = None,
               address: str | None = None, sex: str | None = None) -> list[dict]:
        """Residents by their 基本4情報 (search.search: two items at least, no 個人番号, audited)."""
        from mynaemu.issuance.lifecycle import search

        return search.search(self, at=at, name=name, birth=birth, address=address, sex=sex)

    # --- status ---------------------------------------------------------------------------------
    def status(self, app_id: str, *, at: _dt.datetime, reveal: bool = False, audited: bool = True) -> dict:
        """The card and its certificates as of `at`, read only.

        SEC-8 logs "everything done after identifying" a person, so a read of a card is an audit
        record too (operation ``status``, or ``status --reveal`` when the 個人番号 is shown in
        full, SEC-20), and so is a read of an ID the store does not know (refused: someone
        probing for cards). `audited=False` only for the summary a step's own command prints
        right after the step, which that step's audit record already covers."""
        from mynaemu.card.redact import mask_number

        at = aware(at)
        cardwrite.complete_pending(self.store)  # `issue status` finishes a card write a kill interrupted
        operation = "status --reveal" if reveal else "status"
        audited = audited or reveal   # a reveal is always on record (SEC-20)
        try:
            app_id_, application, card, person = self._load(app_id)
        except (NotFound, BadInput) as exc:
            if audited:
                self.store.audit(at=at, operator=self.operator, terminal=self.terminal, operation=operation,
                                 target=audit_target(app_id), outcome="refused", reason=str(exc))
            raise
        number = self.store.individual_number(person["id"])
        if audited:
            # SEC-8: showing a card is an access to an identified person; it is logged (without
            # the number itself, whether shown in full or masked).
            self.store.audit(at=at, operator=self.operator, terminal=self.terminal, operation=operation,
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
            "delivered_at": jst_text(card["delivered_at"]) if card["delivered_at"] else None,
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
                     "not_before": jst_text(row["not_before"]), "not_after": jst_text(row["not_after"]),
                     "status": state["status"], "since": jst_text(state["since"]) if state["since"] else None,
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


"""発行 (generate: keys, certificates, personalisation, 交付通知書) and 交付 (deliver) (FLOW-1 steps 5-10)."""
from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import secrets
from typing import Callable

from mynaemu.card.image import CardImage
from mynaemu.issuance import policy, validate
from mynaemu.issuance.lifecycle import cardwrite
from mynaemu.issuance.lifecycle.inputs import audit_target, aware, valid
from mynaemu.issuance.lifecycle.pins import AUTH_PIN_PATTERN, FOUR_DIGIT_PIN_PATTERN, SIGN_PIN_PATTERN, check_pin
from mynaemu.issuance.lifecycle.proxy import ProxyHandover, check_proxy
from mynaemu.issuance.lifecycle.steps_apply import enter_received
from mynaemu.issuance.lifecycle.transitions import TRANSITIONS
from mynaemu.issuance.personalise import CardKeys
from mynaemu.issuance.pki.keys import private_key_pem
from mynaemu.issuance.store import parse_iso
from mynaemu.issuance.errors import BadInput, Refused

__all__ = ["GenerateResult", "KEY_ROLES", "generate", "deliver"]

KEY_ROLES = tuple(f.name for f in dataclasses.fields(CardKeys))


@dataclasses.dataclass(frozen=True)
class GenerateResult:
    id: str
    notice_id: str
    card_expires: _dt.date
    auth_serial: int
    sign_serial: int | None
    sign_decision: str


def generate(wf, app_id: str, *, at: _dt.datetime, keys: CardKeys | None = None) -> GenerateResult:
    """鍵ペア生成 + 証明書発行 (JPKI-4), personalisation and 交付通知書 for one application.

    Keys are made before the transaction (seconds of CPU must not hold the write lock);
    pre-made `keys` are used as given (a signing key is dropped when none is eligible).
    """
    at_ = aware(at)
    # Read outside the transaction to know whether a signing key is needed; re-checked inside.
    app_id_, application, card, person = wf._load(app_id)
    wf._require(app_id_, card, at_, "generate")
    today = policy.jst_date(at_)
    wants_sign = wf._sign_decision(application, person, today).allowed
    if keys is None:
        keys = wf.card_keys(wants_sign)
    keys = dataclasses.replace(keys)

    def body(at):
        app_id_, application, card, person = wf._load(app_id)
        wf._require(app_id_, card, at, "generate")
        wf._check_clock(app_id_, at)
        wf._resident(person)
        if card["state"] == "applied":
            enter_received(wf, app_id_, application, at)
        return _generate(wf, app_id_, application, person, keys, at)

    return wf._run("generate", audit_target(app_id), at_, body)


def _generate(wf, app_id: str, application, person, keys: CardKeys, at: _dt.datetime) -> GenerateResult:
    rules = wf.rules
    birth = wf._birth(person)
    today = policy.jst_date(at)
    applied_on = min(policy.jst_date(parse_iso(application["applied_at"])), today)
    old = wf.store.card(application["replaces"]) if application["replaces"] else None
    renewal_of = old_auth_end = None
    if application["kind"] == "renewal" and old is not None:
        renewal_of = _dt.date.fromisoformat(old["expires"])  # VAL-3
        old_auth = wf.store.current_certificate(old["application_id"], "auth")
        if old_auth is not None:
            old_auth_end = policy.jst_date(parse_iso(old_auth["not_after"]))  # VAL-4, D7
    # ELIG-4 / VAL-1 / VAL-2 with M1's judged date (D8); a re-issue is a fresh issue (D6).
    start, card_expiry = policy.card_validity(birth, today, rules, renewal_of=renewal_of, applied_on=applied_on)
    _, auth_end = policy.auth_cert_validity(birth, today, card_expiry, rules, renewal_of=old_auth_end)
    sign_ok = wf._sign_decision(application, person, today)  # ELIG-2, M9
    if not sign_ok.allowed:
        keys.sign = None
    elif keys.sign is None:
        keys.sign = wf.key_factory()
    identity = wf._identity(person)
    auth_cert = wf._issue_cert(app_id, "auth", keys.auth, identity, at, auth_end)
    sign_cert = None
    if sign_ok.allowed:
        _, sign_end = policy.sign_cert_validity(today, auth_end)  # VAL-6
        sign_cert = wf._issue_cert(app_id, "sign", keys.sign, identity, at, sign_end)
    for role in KEY_ROLES:
        key = getattr(keys, role)
        if key is not None:
            wf.store.put_key(app_id, role, private_key_pem(key), at)
    cardwrite.record_binding(wf.store, app_id, keys.common.public_key(), at)  # the card's own key
    notice_id = wf.store.new_form_id("notice")
    wf.store.record_personalisation(app_id, serial=wf.store.new_card_serial(), starts=start.isoformat(),
                                    expires=card_expiry.isoformat(),
                                    security_code=f"{secrets.randbelow(10000):04d}", notice_id=notice_id,
                                    at=at)
    wf._enter(app_id, "generate", at)
    wf.store.clear_claim(app_id)  # a batch worker's lease ends with the card it claimed
    card = wf.store.card(app_id)
    wf._store_image(app_id, card, person, keys=keys)  # FLOW-1 step 7: the chip is written
    wf._enter(app_id, "notice", at)  # step 8: 交付通知書 mailed
    wf._note(card_expires=card_expiry.isoformat(), sign=sign_ok.reason, rule_set=rules.name)
    return GenerateResult(app_id, notice_id, card_expiry, auth_cert.serial_number,
                          sign_cert.serial_number if sign_cert else None, sign_ok.reason)


def deliver(wf, app_id: str, *, at: _dt.datetime, pins: dict, identity_check: str,
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
    identity_check = valid(validate.text, identity_check.strip(), "identity_check")
    if proxy is not None and proxy.notice_id is not None:
        valid(validate.text, proxy.notice_id, "notice_id")
    if pins_set_by not in (None, "holder", "legal_representative"):
        raise BadInput(f"pins_set_by must be holder or legal_representative, got {validate.shown(pins_set_by)}")
    pins = dict(pins)
    check_pin(pins.get("auth"), AUTH_PIN_PATTERN, "the user-authentication PIN (4 digits, AP-4)")
    check_pin(pins.get("kenhojo"), FOUR_DIGIT_PIN_PATTERN, "the 券面事項入力補助 PIN (4 digits, AP-5)")
    pins.setdefault("juki", pins["auth"])
    if pins["juki"] is None:
        pins["juki"] = pins["auth"]
    check_pin(pins["juki"], FOUR_DIGIT_PIN_PATTERN, "the 住基 PIN (4 digits, AP-6)")

    def body(at):
        app_id_, application, card, person = wf._load(app_id)
        wf._require(app_id_, card, at, "deliver")
        wf._check_clock(app_id_, at)
        wf._resident(person)
        today = policy.jst_date(at)
        if policy.expired(_dt.date.fromisoformat(card["expires"]), at):
            raise Refused(f"VAL-12: the card expired on {card['expires']} before it was handed over")
        has_sign = wf._current_cert(app_id_, "sign") is not None
        if has_sign:
            check_pin(pins.get("sign"), SIGN_PIN_PATTERN,
                      "the signing password (6-16 of A-Z and 0-9, AP-3)")
        elif pins.get("sign"):
            wf._note(sign_pin="ignored: the card has no signing certificate")
        setter = policy.pin_setter(wf._birth(person), today)  # ELIG-3, D11
        if pins_set_by is not None and pins_set_by != setter:
            if setter == "legal_representative":
                raise Refused(f"ELIG-3: the holder is under 15 on {today.isoformat()}; the legal "
                              "representative sets the PINs")
            raise Refused(f"ELIG-3: the holder is 15 or over on {today.isoformat()} and sets the PINs")
        if proxy is not None:
            decision = check_proxy(proxy, has_sign_cert=has_sign, today=today, notice_id=card["notice_id"])
            if not decision.allowed:
                raise Refused(decision.reason)
            wf._note(proxy=decision.reason)
        image = wf._build_image(app_id_, card, person, {**pins, "sign": pins.get("sign") if has_sign else None})
        # STATE-3(8) / FLOW-RENEW-1 step 8: the old card of a renewal is abolished and collected
        if application["replaces"]:
            _retire_replaced(wf, application["replaces"], app_id_, at, collect=application["kind"] == "renewal")
        wf.store.record_delivery(app_id_, at=at, identity_check=identity_check.strip(), pins_set_by=setter,
                                 proxy_json=json.dumps(proxy.to_json(), ensure_ascii=False) if proxy else None,
                                 notification_card_collected=notification_card_collected)
        wf._enter(app_id_, "deliver", at)
        wf._note(pins_set_by=setter, by_proxy=proxy is not None)
        wf.store.delete_keys(app_id_)  # custody ends with the handover (cardwrite.py)
        wf.store.set_card_image(app_id_, None)
        if write is not None:
            write(image)
        if output is not None:
            wf._publish(app_id_, "deliver", image, output, at)
        return image

    return wf._run("deliver", audit_target(app_id), at, body)


def _retire_replaced(wf, old_id: str, new_id: str, at: _dt.datetime, *, collect: bool) -> None:
    old = wf.store.card(old_id)
    if old is None:
        return
    if TRANSITIONS["replaced"].allows(wf._effective_state(old, at)):  # active, suspended or expired
        wf._certs_follow(old_id, "replaced", at, "superseded")
        wf._retire_keys(old_id)
        wf._enter(old_id, "replaced", at, f"replaced by {new_id}")
    if collect and TRANSITIONS["handed-in"].allows(wf._effective_state(wf.store.card(old_id), at)):
        wf._enter(old_id, "handed-in", at, f"handed in for {new_id}")
    wf.store.set_replaced_by(old_id, new_id)

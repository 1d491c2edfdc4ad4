"""異動 (move), write-card, 更新 (renew) and 再発行 (reissue): a live card changes or is replaced (MOV-*, VAL-*, FLOW-RENEW-*, FLOW-REISSUE-1)."""
from __future__ import annotations

import dataclasses
import datetime as _dt

from mynaemu.card.image import CardImage
from mynaemu.issuance import policy, validate
from mynaemu.issuance.lifecycle import cardwrite
from mynaemu.issuance.lifecycle.inputs import audit_target, hex_serial, valid_address
from mynaemu.issuance.lifecycle.pins import SIGN_PIN_PATTERN, carry_pins, check_pin, transport_pins
from mynaemu.issuance.lifecycle.steps_apply import new_application
from mynaemu.issuance.lifecycle.transitions import STATE_LABELS, TRANSITIONS
from mynaemu.issuance.pki.keys import private_key_pem
from mynaemu.issuance.store import parse_iso
from mynaemu.issuance.errors import BadInput, IllegalState, Refused

__all__ = ["RenewResult", "REISSUE_REASONS", "move", "write_card", "renew", "reissue"]

# Revocation reasons (RFC 5280 names) per ground. Decision: the seeds give no mapping.
REISSUE_REASONS = {"lost": "keyCompromise", "damaged": "cessationOfOperation",
                   "expired": "cessationOfOperation"}


@dataclasses.dataclass(frozen=True)
class RenewResult:
    kind: str                 # "card" (a new application) or "certificates" (same card)
    id: str                   # the new application id (card) or the same id (certificates)
    replaces: str
    reason: str
    image: CardImage | None = None


def move(wf, app_id: str, *, at: _dt.datetime, address: str, address_alt: str | None = None,
         card_image: CardImage | None = None, sign_key=None, card_path=None) -> dict:
    """異動 (change of address) at the counter (MOV-1, MOV-2, VAL-10).

    The signing certificate (it carries the address) is revoked as superseded and a new one
    is issued that ends with the user-authentication certificate; that one is kept. The store's
    image is re-personalised with the new address; with `card_image` (the card the holder
    presents) the rewritten card, PINs carried over, is returned in result["image"].
    """
    address = valid_address(address)
    if address_alt is not None and (len(address_alt) != len(address) or set(address_alt) - {"0", "1"}):
        raise BadInput(f"address_alt must be one 0/1 flag per character ({len(address)} flags)")
    new_key = None

    def body(at):
        nonlocal new_key
        app_id_, application, card, person = wf._load(app_id)
        wf._require(app_id_, card, at, "move")
        wf._check_clock(app_id_, at)
        wf._resident(person)
        _no_pending_replacement(wf, app_id_, card)
        if card_image is not None:
            cardwrite.check_binding(wf.store, app_id_, card_image)
        fresh = {}  # keys made now on the presented card (never stored)
        if address == person["address"]:
            raise BadInput("the new address is the registered one; nothing moves")
        today = policy.jst_date(at)
        wf.store.change_person(person["id"], at=at, field="address", value=address, reason="異動",
                               audit_id=wf._audit_id)
        wf.store.change_person(person["id"], at=at, field="address_alt", value=address_alt,
                               reason="異動", audit_id=wf._audit_id)
        person = wf.store.person(person["id"])
        result = {"id": app_id_, "revoked_sign_serial": None, "sign_serial": None, "image": None}
        old_sign = wf._current_cert(app_id_, "sign")
        auth_row = wf._current_cert(app_id_, "auth")
        if old_sign is not None:
            wf.store.cert_event(old_sign["id"], "revoked", at=at, reason="superseded", audit_id=wf._audit_id)
            result["revoked_sign_serial"] = old_sign["serial"]
            wf.store.delete_keys(app_id_, ["sign"])
            eligible = wf._sign_decision(application, person, today)
            if eligible.allowed and auth_row is not None:
                auth_end = policy.jst_date(parse_iso(auth_row["not_after"]))
                _, sign_end = policy.sign_cert_validity(today, auth_end)  # VAL-6, VAL-10
                key = sign_key or wf.key_factory()
                cert = wf._issue_cert(app_id_, "sign", key, wf._identity(person), at, sign_end)
                if card_image is None:  # waits in the store for its card (write-card)
                    wf.store.put_key(app_id_, "sign", private_key_pem(key), at)
                else:
                    fresh["sign"] = key
                result["sign_serial"] = cert.serial_number
            else:
                wf._note(sign=eligible.reason)
        card = wf.store.card(app_id_)
        wf._store_image(app_id_, card, person)
        if card_image is not None:
            keys = cardwrite.rewrite_keys(wf, app_id_, person, card_image, at, fresh)
            image = wf._build_image(app_id_, card, person, transport_pins(keys.sign is not None), keys=keys)
            result["image"] = carry_pins(card_image, image)
            if card_path is not None:
                wf._publish(app_id_, "move", result["image"], card_path, at)
        wf._note(revoked_sign=hex_serial(result["revoked_sign_serial"]), new_sign=hex_serial(result["sign_serial"]),
                 card_written=card_image is not None)
        return result

    return wf._run("move", audit_target(app_id), at, body)


def _no_pending_replacement(wf, app_id: str, card) -> None:
    row = wf.store.pending_replacement(app_id)
    if row is not None:
        raise IllegalState(f"card {app_id} already has a pending replacement {row[0]} ({row[1]} "
                           f"{STATE_LABELS[row[1]]})")


def write_card(wf, app_id: str, *, at: _dt.datetime, card_image: CardImage,
               sign_pin: str | None = None, card_path=None) -> CardImage:
    """Rewrite the presented card from the store (e.g. after a 異動 done without the card):
    current certificates, keys and identity; the holder's PINs carried over."""
    if sign_pin is not None:
        check_pin(sign_pin, SIGN_PIN_PATTERN, "the signing password (6-16 of A-Z and 0-9, AP-3)")

    def body(at):
        app_id_, application, card, person = wf._load(app_id)
        wf._require(app_id_, card, at, "write-card")
        wf._check_clock(app_id_, at)
        if card_image.meta.get("application_id") not in (None, app_id_):
            raise Refused(f"the presented card belongs to {card_image.meta.get('application_id')}, "
                          f"not {app_id_}")
        cardwrite.check_binding(wf.store, app_id_, card_image)
        keys = cardwrite.rewrite_keys(wf, app_id_, person, card_image, at, {})
        image = wf._build_image(app_id_, card, person, transport_pins(keys.sign is not None), keys=keys)
        image = carry_pins(card_image, image, sign_pin=sign_pin)
        if card_path is not None:
            wf._publish(app_id_, "write-card", image, card_path, at)
        return image

    return wf._run("write-card", audit_target(app_id), at, body)


def renew(wf, app_id: str, *, at: _dt.datetime, card_image: CardImage | None = None,
          sign_pin: str | None = None, decline_sign: bool | None = None, card_path=None) -> RenewResult:
    """更新 within the window (VAL-7, STATE-3 item 4).

    The card in its window → a renewal application (FLOW-RENEW-1; the new card counts from the
    old expiry, VAL-3). Otherwise the user-authentication certificate in its window → new
    certificates on the same card (VAL-4, D7), new key pairs, old certificates revoked as
    superseded. Otherwise refused with the policy's reason (VAL-7 not yet / VAL-9 expired).
    """
    if sign_pin is not None:
        check_pin(sign_pin, SIGN_PIN_PATTERN, "the signing password (6-16 of A-Z and 0-9, AP-3)")

    def body(at):
        app_id_, application, card, person = wf._load(app_id)
        state = wf._effective_state(card, at)
        today = policy.jst_date(at)
        expiry = _dt.date.fromisoformat(card["expires"]) if card["expires"] else None
        if state in TRANSITIONS["renew"].refusals:  # VAL-9: an expired card is past its window
            raise Refused(policy.renewal_allowed(expiry, today).reason)
        wf._require(app_id_, card, at, "renew")  # suspended: release it first (FLOW-SUSP-3)
        wf._check_clock(app_id_, at)
        wf._resident(person)
        _no_pending_replacement(wf, app_id_, card)
        card_decision = policy.renewal_allowed(expiry, today)
        if card_decision.allowed:
            declined = application["decline_sign"] if decline_sign is None else decline_sign
            new_id = new_application(wf, person["id"], at, kind="renewal", replaces=app_id_,
                                     decline_sign=bool(declined), alt_confirmed=True)
            wf.store.set_audit_target(wf._audit_id, app_id_)
            wf._note(renewal=new_id, reason=card_decision.reason)
            return RenewResult("card", new_id, app_id_, card_decision.reason)
        auth_row = wf._current_cert(app_id_, "auth")
        auth_end = policy.jst_date(parse_iso(auth_row["not_after"])) if auth_row is not None else None
        cert_decision = policy.renewal_allowed(auth_end, today) if auth_end else None
        if cert_decision is not None and cert_decision.allowed and auth_end < expiry:
            return _renew_certs(wf, app_id_, application, card, person, auth_row, auth_end, at,
                                cert_decision, card_image, sign_pin, card_path)
        # Refused: name the window that opens next (certificates usually before the card).
        reasons = ["card: " + card_decision.reason]
        if cert_decision is not None and auth_end < expiry:
            reasons.insert(0, "certificates: " + cert_decision.reason)
        raise Refused("renewal refused: " + "; ".join(reasons))

    return wf._run("renew", audit_target(app_id), at, body)


def _renew_certs(wf, app_id, application, card, person, auth_row, auth_end, at, decision,
                 card_image, sign_pin, card_path=None) -> RenewResult:
    rules = wf.rules
    today = policy.jst_date(at)
    birth = wf._birth(person)
    expiry = _dt.date.fromisoformat(card["expires"])
    sign_ok = wf._sign_decision(application, person, today)  # D10: judged on the new issue date
    had_sign = wf._current_cert(app_id, "sign") is not None
    if sign_ok.allowed and not had_sign and card_image is not None and sign_pin is None:
        raise BadInput("a first signing certificate needs a signing password (--sign-pin)")
    if card_image is not None:
        cardwrite.check_binding(wf.store, app_id, card_image)
    fresh = {}  # with the card: new keys made on it, never stored; without: pending in the store
    revoked = wf._revoke_certs(app_id, at, "superseded")
    _, new_auth_end = policy.auth_cert_validity(birth, today, expiry, rules, renewal_of=auth_end)  # VAL-4
    identity = wf._identity(person)
    auth_key = wf.key_factory()
    wf._issue_cert(app_id, "auth", auth_key, identity, at, new_auth_end)
    wf.store.delete_keys(app_id, ["sign"])
    fresh["auth"] = auth_key
    if sign_ok.allowed:
        sign_key = wf.key_factory()
        _, sign_end = policy.sign_cert_validity(today, new_auth_end)  # VAL-6
        wf._issue_cert(app_id, "sign", sign_key, identity, at, sign_end)
        fresh["sign"] = sign_key
    if card_image is None:
        for role, key in fresh.items():
            wf.store.put_key(app_id, role, private_key_pem(key), at)
    card = wf.store.card(app_id)
    wf._store_image(app_id, card, person)
    image = None
    if card_image is not None:
        keys = cardwrite.rewrite_keys(wf, app_id, person, card_image, at, fresh)
        image = wf._build_image(app_id, card, person, transport_pins(keys.sign is not None), keys=keys)
        image = carry_pins(card_image, image, sign_pin=sign_pin)
        if card_path is not None:
            wf._publish(app_id, "renew", image, card_path, at)
    wf._note(certificates_renewed=True, superseded=[hex_serial(s) for s in revoked], sign=sign_ok.reason,
             card_written=card_image is not None)
    return RenewResult("certificates", app_id, app_id, decision.reason, image)


def reissue(wf, app_id: str, *, at: _dt.datetime, reason: str = "lost") -> str:
    """再発行 (FLOW-REISSUE-1 [INF]): a fresh issue (D6) that abolishes the old card now.
    A lost card's certificates are revoked as keyCompromise. Returns the new application id."""
    if reason not in REISSUE_REASONS:
        raise BadInput(f"reissue reason must be one of {', '.join(REISSUE_REASONS)}, got {validate.shown(reason)}")

    def body(at):
        app_id_, application, card, person = wf._load(app_id)
        wf._require(app_id_, card, at, "reissue")
        wf._check_clock(app_id_, at)
        wf._resident(person)
        _no_pending_replacement(wf, app_id_, card)
        revoked = wf._certs_follow(app_id_, "reissue", at, REISSUE_REASONS[reason])
        wf._retire_keys(app_id_)
        wf._enter(app_id_, "reissue", at, f"reissue ({reason})")
        new_id = new_application(wf, person["id"], at, kind="reissue", replaces=app_id_,
                                 decline_sign=bool(application["decline_sign"]), alt_confirmed=True)
        wf.store.set_replaced_by(app_id_, new_id)
        wf.store.set_audit_target(wf._audit_id, app_id_)
        wf._note(reissue=new_id, ground=reason, revoked=[hex_serial(s) for s in revoked])
        return new_id

    return wf._run("reissue", audit_target(app_id), at, body, reason=reason)

"""暗証番号の初期化 (pin-reset): the counter sets a new value for one of the holder's PINs on the
presented card and unblocks it (a PIN forgotten, or blocked by wrong tries).

The seeds state neither a lock-out nor an unlock procedure (rules.md §19 gaps 2 and 4), only that
PINs are registered at the counter (FLOW-1 step 10). What this step does is therefore decided here:

- Decision: the unlock is a counter step, like 解除 (FLOW-SUSP-3): staff with the counter role,
  an identity check recorded in the audit (the 暗証番号初期化申請書 with a photo ID by default),
  and the card itself presented. It runs on an active card only; a suspended card is released
  first, an ended or expired one is not unlocked (TRANSITIONS row "pin-reset").
- Decision: only the presented card, bound to the application (cardwrite.check_binding, its
  共通AP key 0019 signs a fresh challenge), is written; the store records no PIN.
- Decision: one PIN per step, given by its kind. "auth" is the JPKI user-authentication PIN 0018
  (AP-4), "sign" the JPKI signing password 001B (AP-3), "kenhojo" the 券面事項入力補助AP PIN 0011
  (AP-5), "juki" the 住基 PIN 001C (AP-6), which the card holds twice (共通AP and 住基AP, one PIN
  as the holder sees it: both are set). AP-7's unification is the holder's choice at handover, not
  a link on the card: resetting "auth" leaves the 入力補助 and 住基 PINs as they are.
- Decision: the PIN gets the new value and its full retry counter (max_tries); nothing else on the
  card changes (no certificate, key, other PIN or counter).
- Decision: a card without a signing certificate has no signing password (its 001B is the blocked
  "none" placeholder, ELIG-2 / M9): "sign" is refused there, there is nothing to reset.
"""
from __future__ import annotations

import copy
import dataclasses
import datetime as _dt
import secrets

from mynaemu.card.apps import common, jpki, juki, kenhojo
from mynaemu.card.ids import CommonPin, JpkiPin, JukiPin, KenhojoPin
from mynaemu.card.image import CardImage, PinEF
from mynaemu.issuance import validate
from mynaemu.issuance.errors import BadInput, Refused
from mynaemu.issuance.lifecycle import cardwrite
from mynaemu.issuance.lifecycle.inputs import audit_target, valid
from mynaemu.issuance.lifecycle.pins import (
    AUTH_PIN_PATTERN, FOUR_DIGIT_PIN_PATTERN, SIGN_PIN_PATTERN, check_pin,
)

__all__ = ["PIN_KINDS", "PinReset", "pin_reset", "DEFAULT_IDENTITY_CHECK"]

DEFAULT_IDENTITY_CHECK = "counter photo-ID check with the 暗証番号初期化申請書"


@dataclasses.dataclass(frozen=True)
class PinKind:
    """One PIN as the holder knows it: where it lives on the card, its format and its name."""

    efs: tuple[tuple[str, int], ...]   # (application name, PIN reference), every EF that holds it
    pattern: str
    what: str


PIN_KINDS = {
    "auth": PinKind(((jpki.NAME, JpkiPin.AUTH),), AUTH_PIN_PATTERN,
                    "the user-authentication PIN (4 digits, AP-4)"),
    "sign": PinKind(((jpki.NAME, JpkiPin.SIGN),), SIGN_PIN_PATTERN,
                    "the signing password (6-16 of A-Z and 0-9, AP-3)"),
    "kenhojo": PinKind(((kenhojo.NAME, KenhojoPin.MAIN),), FOUR_DIGIT_PIN_PATTERN,
                       "the 券面事項入力補助 PIN (4 digits, AP-5)"),
    # §3.4: the 住基 PIN 001C is in the 共通AP and in the 住基AP; both are the one PIN (AP-6)
    "juki": PinKind(((common.NAME, CommonPin.PIN), (juki.NAME, JukiPin.PIN)), FOUR_DIGIT_PIN_PATTERN,
                    "the 住基 PIN (4 digits, AP-6)"),
}


@dataclasses.dataclass(frozen=True)
class PinReset:
    id: str
    pin: str            # the kind reset ("auth", "sign", "kenhojo", "juki"), never its value
    retries: int        # the tries the PIN has now (its full counter)
    image: CardImage    # the rewritten card


def _pin_efs(image: CardImage, kind: str) -> list[PinEF]:
    out = []
    for app_name, fid in PIN_KINDS[kind].efs:
        try:
            ef = image.application(app_name).efs.get(int(fid))
        except KeyError:
            ef = None
        if not isinstance(ef, PinEF):
            raise Refused(f"the presented card has no PIN {int(fid):04X} in its {app_name} application; "
                          "not written")
        out.append(ef)
    return out


def pin_reset(wf, app_id: str, *, at: _dt.datetime, card_image: CardImage, pin: str, new_pin: str,
              identity_check: str = DEFAULT_IDENTITY_CHECK, card_path=None) -> PinReset:
    """暗証番号の初期化 at the counter: `pin` of the presented card gets `new_pin` and its full
    retry counter; the rewritten card is published to `card_path` after COMMIT (cardwrite.py)."""
    if pin not in PIN_KINDS:
        raise BadInput(f"pin must be one of {', '.join(PIN_KINDS)}, got {validate.shown(pin)}")
    kind = PIN_KINDS[pin]
    check_pin(new_pin, kind.pattern, f"the new PIN: {kind.what}")   # its value is never in a message
    if not isinstance(identity_check, str) or not identity_check.strip():
        raise BadInput("a PIN reset needs an identity check (--identity-check)")
    identity_check = valid(validate.text, identity_check.strip(), "identity_check")
    if not isinstance(card_image, CardImage):
        raise BadInput("a PIN reset needs the holder's card (--card)")

    def body(at):
        app_id_, application, card, person = wf._load(app_id)
        wf._require(app_id_, card, at, "pin-reset")   # active only; suspended: release first (FLOW-SUSP-3)
        wf._check_clock(app_id_, at)
        wf._resident(person)
        if card_image.meta.get("application_id") not in (None, app_id_):
            raise Refused(f"the presented card belongs to {validate.shown(card_image.meta.get('application_id'))}, "
                          f"not {app_id_}; not written")
        cardwrite.check_binding(wf.store, app_id_, card_image)
        image = copy.deepcopy(card_image)   # the presented image stays as it was (to_json shares meta)
        efs = _pin_efs(image, pin)
        if pin == "sign" and any(ef.change == "none" for ef in efs):
            raise Refused(f"card {app_id_} has no signing certificate, so it has no signing password to "
                          "reset (its PIN 001B is blocked as issued, ELIG-2 / M9); not written")
        before = [ef.remaining for ef in efs]
        value = new_pin.encode("ascii")
        for ef in efs:
            if not ef.well_formed(value):   # the card's own format for this EF (the same patterns)
                raise BadInput(f"the new PIN does not match the card's format for PIN {ef.fid:04X} ({ef.pattern})")
            ef.value = value
            ef.remaining = ef.max_tries
        held = image.meta.setdefault("secrets", {})
        held["pins"] = {**held.get("pins", {}), pin: new_pin}
        # which EFs this reset set (no value): should the publish have to merge in the holder's
        # use of the old file (a kill after COMMIT), cardwrite keeps these as the reset left them
        image.meta[cardwrite.PIN_RESET_META] = {
            "pin": pin, "efs": [f"{app}/{int(fid):04X}" for app, fid in kind.efs], "id": secrets.token_hex(8)}
        if card_path is not None:
            wf._publish(app_id_, "pin-reset", image, card_path, at)
        wf._note(pin=pin, identity_check=identity_check, retries_before=min(before), retries=efs[0].max_tries,
                 card_written=card_path is not None)
        return PinReset(app_id_, pin, efs[0].max_tries, image)

    return wf._run("pin-reset", audit_target(app_id), at, body)

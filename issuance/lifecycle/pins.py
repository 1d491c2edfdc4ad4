"""The holder's PINs when the counter hands over or rewrites a card: their formats (AP-3..AP-6),
the random transport PINs a chip leaves the factory with, and the carry-over of the holder's PINs
into a rewritten card (MOV-2)."""
from __future__ import annotations

import re
import secrets

from mynaemu.card.image import CardImage, PinEF
from mynaemu.issuance.errors import BadInput

__all__ = ["AUTH_PIN_PATTERN", "FOUR_DIGIT_PIN_PATTERN", "SIGN_PIN_PATTERN", "carry_pins", "transport_pins",
           "check_pin"]

# PIN formats (AP-3, AP-4, AP-5, AP-6; the card apps enforce the same patterns)
AUTH_PIN_PATTERN = r"[0-9]{4}"
FOUR_DIGIT_PIN_PATTERN = r"[0-9]{4}"
SIGN_PIN_PATTERN = r"[A-Z0-9]{6,16}"


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


def transport_pins(with_sign: bool) -> dict:
    # The chip leaves the factory with random PINs nobody knows; the real ones are registered
    # at the counter (ACT-1, FLOW-1 step 10).
    rnd = secrets.SystemRandom()
    digits = lambda: "".join(rnd.choice("0123456789") for _ in range(4))  # noqa: E731
    pins = {"auth": digits(), "kenhojo": digits(), "juki": digits(), "sign": None}
    if with_sign:
        pins["sign"] = "".join(rnd.choice("ABCDEFGHJKLMNPQRSTUVWXYZ23456789") for _ in range(12))
    return pins


def check_pin(value, pattern: str, what: str) -> str:
    if not isinstance(value, str) or re.fullmatch(pattern, value) is None:
        raise BadInput(f"{what} must match {pattern}")
    return value


"""The terminal side's errors: a failed door, a card answer that is not 9000, card data off the spec.

`error_for(sw)` turns a status word into the typed exception a client catches (spec §4.2 for
63Cn and the blocked answers, §4.5 for 6982); the status words are card/status.py's SW.
"""
from __future__ import annotations

from mynaemu.card.status import SW, describe, is_retries, retries_sw


class TransportError(Exception):
    """The door failed (no pyscard, no reader, no card, card removed); one-line message."""


class CardDataError(ValueError):
    """The card answered 9000 but the content is not what the spec describes."""


class CardError(Exception):
    """The card answered a status word other than 9000."""

    def __init__(self, sw: int, message: str = ""):
        self.sw = sw
        self.message = message or describe(sw)
        super().__init__(f"{self.message} (SW {sw:04X})")


class PinIncorrect(CardError):
    """Wrong PIN: 63Cn with n >= 1 tries left (§4.2)."""

    def __init__(self, tries_left: int, message: str = ""):
        self.tries_left = tries_left
        super().__init__(retries_sw(tries_left), message or f"wrong PIN, {tries_left} tries left")


class PinBlocked(CardError):
    """The key is blocked: 63C0 from the failure that blocks it, or 6983/6984 (§4.2)."""

    tries_left = 0


class SecurityStatusNotSatisfied(CardError):
    """6982: a protected EF or key used without the required verification (§4.5)."""


class NotFound(CardError):
    """6A82 (no such EF/AID), 6A83 (no such record), 6A88 (no such data object)."""


def error_for(sw: int, context: str = "") -> CardError:
    """The typed exception for a non-9000 status word."""
    what = f"{context}: " if context else ""
    if is_retries(sw):
        n = sw & 0x0F
        if n == 0:
            return PinBlocked(sw, f"{what}wrong PIN, now blocked")
        return PinIncorrect(n, f"{what}wrong PIN, {n} tries left")
    if sw in (SW.AUTH_BLOCKED, SW.REFERENCE_BLOCKED):
        return PinBlocked(sw, f"{what}PIN blocked")
    if sw == SW.SECURITY_NOT_SATISFIED:
        return SecurityStatusNotSatisfied(sw, f"{what}security status not satisfied (verify first)")
    if sw in (SW.FILE_NOT_FOUND, SW.RECORD_NOT_FOUND, SW.DATA_NOT_FOUND):
        return NotFound(sw, f"{what}{describe(sw)}")
    return CardError(sw, f"{what}{describe(sw)}")

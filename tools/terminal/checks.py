"""Argument checks of the terminal's commands: a file id, a short file id, a PIN's bytes.

They raise ValueError before anything is sent, so a caller's mistake never reaches the card
as a malformed APDU (the card would answer with a status word that hides the mistake).
"""
from __future__ import annotations


def check_fid(fid) -> None:
    if not isinstance(fid, int) or not 0 <= fid <= 0xFFFF:
        raise ValueError(f"an EF identifier is a 2-byte int, got {fid!r}")


def check_sfi(fid: int) -> None:
    if not 1 <= fid <= 30:
        raise ValueError(f"EF {fid:04X} has no short identifier (SFI forms need 0001..001E, §2.3)")


def pin_bytes(pin: str) -> bytes:
    if not isinstance(pin, str) or not pin:
        raise ValueError("a PIN is a non-empty string")
    try:
        data = pin.encode("ascii")
    except UnicodeEncodeError:
        raise ValueError("a PIN is ASCII (§4.1)") from None
    if len(data) > 255:
        raise ValueError("PIN too long")
    return data


def sign_password(pin: str) -> str:
    # §4.1: clients upper-case the signing password before sending; the card compares bytes.
    return pin.upper() if isinstance(pin, str) else pin

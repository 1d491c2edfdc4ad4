"""Key identifiers in the card's own form (card-interface.md §13.1).

Every 16-byte key id on the card -- the CVCs' 証明者鍵ID and 被証明者鍵ID (kenhojo/kenkaku EF
0004, MF GET DATA 00F8/7F21), kenhojo EF 0005 DF42, kenkaku EF 0003 DF32 and the id at the
head of DF35, the MF GET DATA objects 0042/00F7, and the 共通AP/住基AP key reference (§3.4) --
is

    "NNNNNNN" 08 05 "NNN" PPPPPPPP

7 ASCII digits (the key's number), the two bytes 08 05, 3 ASCII digits (its group) and 4 bytes
of padding whose last byte is not always 00. It is printed `6000024/001`. Production ids
begin with 5, the JPKI TEST hierarchy's with 6; this emulator issues only `6…` ids.

`parse` is strict, like the clients (§13.1 "Clients parse the digit groups strictly and
reject anything else"): anything but exactly that shape raises KeyIdError.
"""
from __future__ import annotations

import dataclasses
import re

LENGTH = 16
SEPARATOR = b"\x08\x05"
#: The first digit of every key number this emulator issues (§13.1: the TEST hierarchy).
TEST_SERIES = "6"

_DIGITS7 = re.compile(rb"[0-9]{7}")
_DIGITS3 = re.compile(rb"[0-9]{3}")
_TEXT = re.compile(r"([0-9]{7})/([0-9]{3})")


class KeyIdError(ValueError):
    """Bytes or text that are not a key id of the §13.1 form."""


@dataclasses.dataclass(frozen=True)
class KeyId:
    number: str          # 7 ASCII digits
    group: str           # 3 ASCII digits
    padding: bytes = bytes(4)

    def __post_init__(self):
        if not isinstance(self.number, str) or not _DIGITS7.fullmatch(self.number.encode("ascii", "replace")):
            raise KeyIdError(f"key number must be 7 ASCII digits, got {self.number!r}")
        if not isinstance(self.group, str) or not _DIGITS3.fullmatch(self.group.encode("ascii", "replace")):
            raise KeyIdError(f"key group must be 3 ASCII digits, got {self.group!r}")
        if not isinstance(self.padding, (bytes, bytearray)) or len(self.padding) != 4:
            raise KeyIdError("key id padding must be 4 bytes")

    def encode(self) -> bytes:
        return self.number.encode("ascii") + SEPARATOR + self.group.encode("ascii") + bytes(self.padding)

    def __bytes__(self) -> bytes:
        return self.encode()

    def __str__(self) -> str:
        return f"{self.number}/{self.group}"

    @property
    def is_test(self) -> bool:
        return self.number.startswith(TEST_SERIES)


def parse(raw: bytes) -> KeyId:
    """The KeyId in 16 bytes; KeyIdError for anything not of the §13.1 form."""
    if not isinstance(raw, (bytes, bytearray)):
        raise KeyIdError(f"a key id is bytes, got {type(raw).__name__}")
    raw = bytes(raw)
    if len(raw) != LENGTH:
        raise KeyIdError(f"a key id is {LENGTH} bytes, got {len(raw)}")
    if not _DIGITS7.fullmatch(raw[:7]):
        raise KeyIdError(f"key id {raw.hex().upper()}: bytes 0-6 are not 7 ASCII digits")
    if raw[7:9] != SEPARATOR:
        raise KeyIdError(f"key id {raw.hex().upper()}: bytes 7-8 are not 08 05")
    if not _DIGITS3.fullmatch(raw[9:12]):
        raise KeyIdError(f"key id {raw.hex().upper()}: bytes 9-11 are not 3 ASCII digits")
    return KeyId(raw[:7].decode("ascii"), raw[9:12].decode("ascii"), raw[12:])


def from_text(text: str, padding: bytes = bytes(4)) -> KeyId:
    """`6000024/001` -> KeyId (padding as given, 00 00 00 00 by default)."""
    m = _TEXT.fullmatch(text) if isinstance(text, str) else None
    if m is None:
        raise KeyIdError(f"key id text must be NNNNNNN/NNN, got {text!r}")
    return KeyId(m.group(1), m.group(2), padding)


def encode(text: str, padding: bytes = bytes(4)) -> bytes:
    """`6000024/001` -> the 16 card bytes."""
    return from_text(text, padding).encode()


def make_test_id(number: str, group: str | int, padding: bytes = bytes(4)) -> bytes:
    """A TEST-hierarchy id (number in the `6…` series), e.g. make_test_id("6000033", 7)."""
    group = f"{group:03d}" if isinstance(group, int) else group
    kid = KeyId(number, group, padding)
    if not kid.is_test:
        raise KeyIdError(f"TEST key ids begin with {TEST_SERIES}, got {number}")
    return kid.encode()



def describe(raw: bytes) -> str:
    """`6000024/001` for a well-formed id; otherwise the hex, marked as not of the §13.1 form."""
    try:
        return str(parse(raw))
    except KeyIdError:
        return f"{bytes(raw).hex().upper()} (not a §13.1 key id)"

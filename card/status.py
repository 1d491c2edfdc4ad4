"""ISO 7816-4 status words the card answers, as an enum (spec card-interface.md §9)."""
from __future__ import annotations

import enum


class SW(enum.IntEnum):
    OK = 0x9000
    # 63Cn is built with retries(); 6300 is "no retry limit".
    VERIFY_FAILED = 0x6300
    WRONG_LENGTH = 0x6700
    CHANNEL_NOT_SUPPORTED = 0x6881       # logical channel bits set in CLA (spec §1.1)
    SM_NOT_SUPPORTED = 0x6882            # secure-messaging CLA on SELECT (spec §1.1)
    CHAINING_NOT_SUPPORTED = 0x6884
    INCOMPATIBLE_FILE = 0x6981           # READ on an internal (PIN/key) EF (spec §4.5)
    SECURITY_NOT_SATISFIED = 0x6982      # protected EF or key without verification
    AUTH_BLOCKED = 0x6983
    REFERENCE_BLOCKED = 0x6984           # VERIFY on a blocked key (spec §4.2)
    CONDITIONS_NOT_SATISFIED = 0x6985
    COMMAND_NOT_ALLOWED = 0x6986         # no current EF
    SM_DATA_MISSING = 0x69FC             # SM CLA on READ/VERIFY (spec §1.1, card-specific)
    WRONG_DATA = 0x6A80
    FUNCTION_NOT_SUPPORTED = 0x6A81
    FILE_NOT_FOUND = 0x6A82              # unknown EF, AID, 3F00 by FID
    RECORD_NOT_FOUND = 0x6A83
    INCORRECT_P1P2 = 0x6A86
    DATA_NOT_FOUND = 0x6A88              # GET DATA object absent; no such key reference
    OFFSET_OUT_OF_RANGE = 0x6B00         # READ BINARY at/after the end (spec §6)
    INS_NOT_SUPPORTED = 0x6D00
    CLA_NOT_SUPPORTED = 0x6E00
    UNKNOWN_ERROR = 0x6F00

    @property
    def bytes(self) -> bytes:
        return self.value.to_bytes(2, "big")


def retries(n: int) -> bytes:
    """63Cn: wrong PIN or retry query with n tries left (63C0 when blocked), spec §4.2."""
    if not 0 <= n <= 15:
        raise ValueError(n)
    return bytes((0x63, 0xC0 | n))


def describe(sw: int) -> str:
    """A short English name for a status word, for clients and logs."""
    if sw & 0xFFF0 == 0x63C0:
        return f"wrong PIN / {sw & 0xF} tries left"
    try:
        return SW(sw).name.replace("_", " ").lower()
    except ValueError:
        return f"status {sw:04X}"

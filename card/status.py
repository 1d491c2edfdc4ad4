"""ISO 7816-4 status words the card answers, as an enum (spec card-interface.md §9).

Every status word the code sends or checks is a member here: the card core and its secure
messaging (card/sm.py, §13.2), the terminal client, the harnesses and the benches compare
against SW members, never raw hex.
"""
from __future__ import annotations

import enum


class SW(enum.IntEnum):
    OK = 0x9000
    MEMORY_FAILURE = 0x6581              # a PIN counter could not be written durably (ISO 7816-4)
    SSK_NOT_OFFERED = 0x66F1             # 共通AP / 券面事項確認AP answer to SET SESSION KEY (§13.2)
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
    SM_OBJECTS_MISSING = 0x6987          # CLA 0C: header authentication not offered (§13.2)
    SM_OBJECTS_INCORRECT = 0x6988        # wrong DO, second DO, bad padding indicator (§13.2)
    SM_DATA_MISSING = 0x69FC             # SM CLA on READ/VERIFY (spec §1.1, card-specific)
    SM_NO_SESSION = 0x69FC               # (alias) SM without a (live) session (§13.2)
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


# Status words that joined the enum with issue 14 (they were constants of card/core.py and
# card/sm.py); clients have always shown them by code, and CLI output stays unchanged.
_SHOWN_BY_CODE = frozenset({SW.MEMORY_FAILURE, SW.SSK_NOT_OFFERED, SW.SM_OBJECTS_MISSING,
                            SW.SM_OBJECTS_INCORRECT})
RETRIES_MASK = 0xFFF0     # 63Cn: the retry counter is the low nibble (§4.2)
RETRIES_BASE = 0x63C0     # 63C0 = blocked; 63Cn = n tries left


def is_retries(sw: int) -> bool:
    """True for 63Cn, a wrong PIN or a retry query (§4.2)."""
    return sw & RETRIES_MASK == RETRIES_BASE


def retries_sw(n: int) -> int:
    """63Cn as an int (retries() gives the two bytes)."""
    return int.from_bytes(retries(n), "big")


def describe(sw: int) -> str:
    """A short English name for a status word, for clients and logs."""
    if is_retries(sw):
        return f"wrong PIN / {sw & 0xF} tries left"
    if sw in _SHOWN_BY_CODE:
        return f"status {sw:04X}"
    try:
        return SW(sw).name.replace("_", " ").lower()
    except ValueError:
        return f"status {sw:04X}"

"""Redaction of APDUs for logs and traces: PINs and individual numbers never appear by default.

One place for every door and client (the core's debug log, the vpcd door, the client trace):
- Commands that carry secrets in their data field (VERIFY 20, CHANGE REFERENCE DATA 24, RESET
  RETRY COUNTER 2C, CHANGE KEY 32, under any CLA) keep their header, Lc and Le; the data shows
  as `****` (spaced form) or `**` per byte.
- Responses: any run of 12 ASCII digits (a 個人番号, rules.md NUM-1) is masked.
"""
from __future__ import annotations

import re

from mynaemu.card.apdu import ApduFormatError, Command

SECRET_INS = frozenset((0x20, 0x24, 0x2C, 0x32))
DIGITS12 = re.compile(rb"(?<![0-9])[0-9]{12}(?![0-9])")


def _hex(raw: bytes, spaced: bool) -> str:
    return raw.hex(" " if spaced else "").upper() if spaced else raw.hex().upper()


def redact_command(raw: bytes, *, spaced: bool = False) -> str:
    """Hex of a command APDU with the data of secret-carrying commands hidden."""
    raw = bytes(raw)
    if len(raw) <= 5 or raw[1] not in SECRET_INS:
        return _hex(raw, spaced)
    sep = " " if spaced else ""
    try:
        cmd = Command.parse(raw)
    except ApduFormatError:
        return _hex(raw[:5], spaced) + sep + ("****" if spaced else "**" * (len(raw) - 5))
    if not cmd.data:
        return _hex(raw, spaced)
    lc = (b"\x00" + len(cmd.data).to_bytes(2, "big")) if cmd.extended else bytes((len(cmd.data),))
    hidden = "****" if spaced else "**" * len(cmd.data)
    le = "" if cmd.le is None else sep + _hex(raw[-(2 if cmd.extended else 1):], spaced)
    return _hex(raw[:4], spaced) + sep + _hex(lc, spaced) + sep + hidden + le


def redact_response(raw: bytes) -> str:
    """Hex of a response APDU with any 12-digit ASCII number masked as '**' per byte."""
    out = []
    last = 0
    for match in DIGITS12.finditer(raw):
        out.append(raw[last:match.start()].hex().upper())
        out.append("**" * 12)
        last = match.end()
    out.append(raw[last:].hex().upper())
    return "".join(out)


def mask_number(number: str, reveal: bool = False) -> str:
    """A 個人番号 for display: all but the last 4 digits masked unless `reveal`."""
    if reveal or len(number) < 4:
        return number
    return "*" * (len(number) - 4) + number[-4:]

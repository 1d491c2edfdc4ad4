"""Redaction of APDUs for logs and traces: PINs and individual numbers never appear by default.

- Commands that carry secrets in their data field (VERIFY 20, CHANGE REFERENCE DATA 24, CHANGE
  KEY 80 32) keep their header and length but show the data as '*'.
- Responses: any run of 12 ASCII digits (a 個人番号, rules.md NUM-1) is masked, as are the
  digits of a kenhojo EF 0001 (FF 10 0C + 12 digits, spec §3.2).
"""
from __future__ import annotations

import re

SECRET_INS = {(0x00, 0x20), (0x00, 0x24), (0x80, 0x32)}
_DIGITS12 = re.compile(rb"(?<![0-9])[0-9]{12}(?![0-9])")


def redact_command(raw: bytes) -> str:
    """Hex of a command APDU with secret data replaced by '**' per byte."""
    if len(raw) > 5 and (raw[0] & 0xF0, raw[1]) in SECRET_INS:
        head = raw[:4]
        body = raw[4:]
        if body[0] != 0:  # short Lc
            lc = body[0]
            rest = body[1 + lc:]
            return (head + body[:1]).hex().upper() + "**" * lc + rest.hex().upper()
        if len(body) >= 3:  # extended Lc
            lc = int.from_bytes(body[1:3], "big")
            rest = body[3 + lc:]
            return (head + body[:3]).hex().upper() + "**" * lc + rest.hex().upper()
    return raw.hex().upper()


def redact_response(raw: bytes) -> str:
    """Hex of a response APDU with any 12-digit ASCII number masked as '**' per byte."""
    out = []
    last = 0
    for match in _DIGITS12.finditer(raw):
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

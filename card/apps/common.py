"""共通カードAP (common card AP): the card-info record, key reference, key 0019 and PIN 001C.

Spec §3.4: EF 0001 is a record EF whose record 1 is the JICSAP simple-TLV `01 1C` + 28 ASCII
digits (15-digit card serial, 5-digit 全国地方公共団体コード, expiry YYYYMMDD); MYNA-RS reads it
with no PIN, so it is free to read. EF 0002 is the 16-byte key reference, the same in both this
AP and the 住基AP; it is record-structured and clients read it with READ RECORD
`00 B2 01 04 00` (§13.3), record 1 = the 16 bytes. Key 0019 answers INTERNAL AUTHENTICATE with
no credential; it is the only key that does on the card (§13.3). PIN 001C has 4 digits and
3 tries and is changed with JICSAP CHANGE KEY (80 32, spec §4.4).

The EF 0002 and PIN 001C builders are shared with the 住基AP module (juki.py).
"""
from __future__ import annotations

import datetime as _dt
import re

from cryptography.hazmat.primitives.asymmetric import rsa

from mynaemu.card import layouts
from mynaemu.card.crypto import check_rsa2048, key_pem
from mynaemu.card.image import FREE, Application, KeyEF, PinEF, RecordEF
from mynaemu.card.aid import AID as _AID
from mynaemu.card.ids import CommonEF, CommonKey, CommonPin

AID = _AID.COMMON
NAME = "common"

EF_CARD_INFO = CommonEF.CARD_INFO
EF_KEY_REFERENCE = CommonEF.KEY_REFERENCE
KEY_AUTH = CommonKey.AUTH
PIN = CommonPin.PIN

PIN_PATTERN = "[0-9]{4}"
PIN_TRIES = 3
TAG_CARD_INFO = 0x01
KEY_REFERENCE_LEN = 16


def _digits(value, n: int, what: str) -> str:
    if not isinstance(value, str) or len(value) != n or not value.isascii() or not value.isdigit():
        raise ValueError(f"{what} must be {n} ASCII digits")
    return value


def encode_card_info(*, card_serial: str, municipality_code: str, expiry: _dt.date) -> bytes:
    """Record 1 of EF 0001: `01 1C` + serial(15) + municipality(5) + expiry YYYYMMDD (§3.4).

    The layout is layouts.CARD_INFO, the one the client parses with.
    """
    _digits(card_serial, 15, "card serial")
    _digits(municipality_code, 5, "municipality code")
    if not isinstance(expiry, _dt.date):
        raise TypeError("expiry must be a datetime.date")
    return layouts.build(layouts.CARD_INFO, {"serial": card_serial,
                                             "municipality_code": municipality_code,
                                             "expiry": expiry}, "card-info record")


def parse_card_info(record: bytes) -> dict:
    """{'serial', 'municipality_code', 'expiry' (YYYYMMDD)}; ValueError (LayoutError) when malformed."""
    info = layouts.parse(layouts.CARD_INFO, record, "card-info record")
    return {"serial": info.serial, "municipality_code": info.municipality_code,
            "expiry": f"{info.expiry.year:04d}{info.expiry.month:02d}{info.expiry.day:02d}"}


def check_key_reference(key_reference: bytes) -> bytes:
    if not isinstance(key_reference, (bytes, bytearray)) or len(key_reference) != KEY_REFERENCE_LEN:
        raise ValueError(f"key reference must be {KEY_REFERENCE_LEN} bytes")
    return bytes(key_reference)


def key_reference_ef(key_reference: bytes) -> RecordEF:
    """EF 0002: record-structured, record 1 = the 16-byte key reference, free (§3.4, §13.3)."""
    return RecordEF(EF_KEY_REFERENCE, [check_key_reference(key_reference)], FREE, "key reference")


def pin_ef(pin: str) -> PinEF:
    """PIN 001C: 4 digits, 3 tries, JICSAP CHANGE KEY (§3.4)."""
    if not isinstance(pin, str) or re.fullmatch(PIN_PATTERN, pin) is None:
        raise ValueError(f"PIN 001C does not match {PIN_PATTERN}")
    return PinEF(PIN, pin.encode("ascii"), PIN_TRIES, PIN_TRIES, PIN_PATTERN, "jicsap",
                 "住民基本台帳用暗証番号")


def build(*, card_serial: str, municipality_code: str, expiry: _dt.date, key_reference: bytes,
          auth_key, pin: str) -> Application:
    """The 共通カードAP DF (spec §3.4, §13.3)."""
    check_rsa2048(auth_key, "key 0019")
    if not isinstance(auth_key, rsa.RSAPrivateKey):
        raise TypeError("auth_key must be a private key")
    app = Application(NAME, AID, {})
    record = encode_card_info(card_serial=card_serial, municipality_code=municipality_code,
                              expiry=expiry)
    app.add(RecordEF(EF_CARD_INFO, [record], FREE, "card info"))
    app.add(key_reference_ef(key_reference))
    app.add(KeyEF(KEY_AUTH, key_pem(auth_key), FREE, ("internal_auth",), False,
                  "INTERNAL AUTHENTICATE key (the only one on the card, §13.3)"))
    app.add(pin_ef(pin))
    return app

"""住基AP (resident-register AP): the common-AP layout plus the 住民票コード.

Spec §3.4 [S]: the 住基AP (`D3 92 10 00 31 00 01 01 04 01`) has the same card-info record
EF 0001, 16-byte key reference EF 0002, INTERNAL AUTHENTICATE key 0019 and 4-digit PIN 001C
(3 tries, JICSAP CHANGE KEY) as the 共通カードAP.

The AP also holds the 住民票コード (rules AP-6), for which no public layout exists. Decision
[U]: EF 0003, a binary EF holding `FF 10 0B` + the 11 ASCII digits (the private-class BER
style of the 券面 APs), readable only after PIN 001C is verified, like the rest of the
resident-register data the PIN protects.
"""
from __future__ import annotations

import datetime as _dt

from mynaemu.card import tlv
from mynaemu.card.apps import common
from mynaemu.card.image import Application, BinaryEF

AID = bytes.fromhex("D3921000310001010401")
NAME = "juki"

EF_CARD_INFO = common.EF_CARD_INFO
EF_KEY_REFERENCE = common.EF_KEY_REFERENCE
EF_JUMINHYO_CODE = 0x0003   # [U] layout chosen here
KEY_AUTH = common.KEY_AUTH
PIN = common.PIN
T_JUMINHYO_CODE = 0xFF10


def encode_juminhyo_code(code: str) -> bytes:
    """`FF 10 0B` + 11 ASCII digits (14 bytes)."""
    if not isinstance(code, str) or len(code) != 11 or not code.isascii() or not code.isdigit():
        raise ValueError("住民票コード must be 11 ASCII digits")
    return tlv.encode(T_JUMINHYO_CODE, code.encode("ascii"))


def parse_juminhyo_code(ef0003: bytes) -> str:
    item = tlv.expect(ef0003, T_JUMINHYO_CODE)
    text = item.value.decode("ascii", errors="replace")
    if len(text) != 11 or not text.isdigit():
        raise ValueError("EF 0003 must hold 11 ASCII digits")
    return text


def build(*, card_serial: str, municipality_code: str, expiry: _dt.date, key_reference: bytes,
          auth_key, pin: str, juminhyo_code: str) -> Application:
    """The 住基AP DF (spec §3.4, AP-6)."""
    app = common.populate(Application(NAME, AID, {}), card_serial=card_serial,
                          municipality_code=municipality_code, expiry=expiry,
                          key_reference=key_reference, auth_key=auth_key, pin=pin)
    app.add(BinaryEF(EF_JUMINHYO_CODE, encode_juminhyo_code(juminhyo_code), (PIN,), "住民票コード"))
    return app

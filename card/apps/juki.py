"""住基AP (resident-register AP): what the detailed public record shows, and nothing more.

Spec §13.3 [S] (MYNACARD `src/ap/juki.rs`, `src/ap/common.rs`): the 住基AP
(`D3 92 10 00 31 00 01 01 04 01`) holds
- one record-structured EF whose content is unidentified,
- EF 0002, the 16-byte key reference of §3.4, record-structured like the 共通AP's and read with
  READ RECORD `00 B2 01 04 00`,
- PIN 001C (4 digits, 3 tries, JICSAP CHANGE KEY, §3.4).
Only the 共通AP key 0019 answers INTERNAL AUTHENTICATE on the card: the 住基AP has no key, so
`00 88` here finds none (SELECT 0019 → 6A82; by short identifier → 6A88).

Decision [U] on the unidentified record EF: it is EF 0001 (the FID of the 共通AP's record EF)
and its record 1 holds the 住民票コード, which the plan says this AP carries (rules AP-6), as
the JICSAP simple-TLV `01 0B` + 11 ASCII digits (the card-info record's style, §3.4). It opens
with PIN 001C, like the resident-register data the PIN protects.
"""
from __future__ import annotations

from mynaemu.card import tlv
from mynaemu.card.apps import common
from mynaemu.card.image import Application, RecordEF
from mynaemu.card.aid import AID as _AID
from mynaemu.card.ids import JukiEF, JukiPin

AID = _AID.JUKI
NAME = "juki"

EF_RECORD = JukiEF.RECORD
EF_KEY_REFERENCE = JukiEF.KEY_REFERENCE
PIN = JukiPin.PIN
TAG_JUMINHYO_CODE = 0x01


def encode_juminhyo_code(code: str) -> bytes:
    """Record 1 of EF 0001: simple-TLV `01 0B` + 11 ASCII digits (13 bytes)."""
    if not isinstance(code, str) or len(code) != 11 or not code.isascii() or not code.isdigit():
        raise ValueError("住民票コード must be 11 ASCII digits")
    return tlv.encode_simple(TAG_JUMINHYO_CODE, code.encode("ascii"))


def parse_juminhyo_code(record: bytes) -> str:
    item = tlv.decode_simple(record)
    text = item.value.decode("ascii", errors="replace")
    if item.tag != TAG_JUMINHYO_CODE or len(text) != 11 or not text.isdigit():
        raise ValueError("EF 0001 record 1 must be 01 0B + 11 ASCII digits")
    return text


def build(*, key_reference: bytes, pin: str, juminhyo_code: str) -> Application:
    """The 住基AP DF (spec §13.3, §3.4; AP-6)."""
    app = Application(NAME, AID, {})
    app.add(RecordEF(EF_RECORD, [encode_juminhyo_code(juminhyo_code)], (PIN,),
                     "record EF, content unidentified (住民票コード, [U])"))
    app.add(common.key_reference_ef(key_reference))
    app.add(common.pin_ef(pin))
    return app

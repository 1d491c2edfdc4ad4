"""The terminal's readers of card data, on the card's own declarations (card/tlv.py, card/layouts.py).

A client never carries a second copy of a card-side format: fixed layouts are parsed with
mynaemu.card.layouts, BER-TLV headers and objects with mynaemu.card.tlv, tags are the
application modules' constants. What is the client's own is how it reads: 基本4情報 is found
through the DF21 offset table as real clients do (§3.2, §10), and every malformed answer is a
CardDataError (a ValueError) with a one-line message.
"""
from __future__ import annotations

import datetime as _dt

from mynaemu.card import layouts, tlv
from mynaemu.card.apps import kenhojo
from mynaemu.tools.terminal.errors import CardDataError

_BASIC4_FIELDS = (kenhojo.T_NAME, kenhojo.T_ADDRESS, kenhojo.T_BIRTH, kenhojo.T_SEX)


def ber_header(data: bytes, offset: int = 0) -> tuple[int, int, int]:
    """(tag, header length, value length) of the BER-TLV at `offset` of `data` (card/tlv.py)."""
    if not data:
        raise CardDataError("empty data: no BER-TLV header")
    try:
        return tlv.decode_header(data, offset)
    except tlv.TLVError as exc:
        raise CardDataError(f"BER header: {exc}") from None


def object_len(data: bytes) -> int:
    """Header plus value length of the BER-TLV object at the start of `data` (§6 item 6)."""
    _, hlen, vlen = ber_header(data)
    return hlen + vlen


def _layout(layout, data: bytes, what: str):
    """Parse with the card's own declaration (mynaemu.card.layouts); CardDataError when off."""
    try:
        return layouts.parse(layout, data, what)
    except layouts.LayoutError as exc:
        raise CardDataError(str(exc)) from None


def parse_my_number(data: bytes) -> str:
    """The 12 digits of kenhojo EF 0001: FF 10 0C + digits + FF FF filler, spec §3.2."""
    return _layout(layouts.MY_NUMBER, data, "kenhojo EF 0001").number


def parse_token_label(data: bytes) -> str:
    """The JPKI token label: the first 32 bytes of EF 0006, space-padded ASCII (spec §3.1)."""
    return _layout(layouts.TOKEN_LABEL, data, "JPKI EF 0006 label")


def _date8(raw: bytes, what: str) -> _dt.date:
    try:
        text = raw.decode("ascii")
        if len(text) != 8 or not text.isdigit():
            raise ValueError(text)
        return _dt.date(int(text[:4]), int(text[4:6]), int(text[6:]))
    except ValueError:
        raise CardDataError(f"{what} is not a YYYYMMDD date: {raw!r}") from None


def parse_basic4(data: bytes) -> dict:
    """基本4情報 of kenhojo EF 0002 (spec §3.2), located through the DF21 offset table.

    Returns dict(name=str, address=str, birth=datetime.date, sex='1'|'2'|'9'|'0').
    """
    data = bytes(data)
    tag, hlen, vlen = ber_header(data)
    if tag != kenhojo.T_BASIC4:
        raise CardDataError(f"EF 0002 starts with tag {tag:X}, not FF20")
    end = hlen + vlen
    if end > len(data):
        raise CardDataError(f"EF 0002 says {end} bytes, only {len(data)} read")
    body = data[:end]
    try:
        table = tlv.decode_one(body, hlen)
    except tlv.TLVError:
        table = None
    if table is None or table.tag != kenhojo.T_OFFSETS or len(table.value) != 8:
        raise CardDataError("EF 0002 has no DF21 offset table of 4 offsets")
    offsets = [int.from_bytes(table.value[i:i + 2], "big") for i in range(0, 8, 2)]
    fields = {}
    for want, off in zip(_BASIC4_FIELDS, offsets):
        if not hlen <= off < end:
            raise CardDataError(f"EF 0002 offset {off} for {want:X} is outside the object")
        t, h, v = ber_header(body, off)
        if t != want:
            raise CardDataError(f"EF 0002 offset {off} points to {t:X}, not {want:X}")
        if off + h + v > end:
            raise CardDataError(f"EF 0002 field {want:X} runs past the object")
        fields[want] = body[off + h:off + h + v]
    try:
        name = fields[kenhojo.T_NAME].decode("utf-8")
        address = fields[kenhojo.T_ADDRESS].decode("utf-8")
        sex = fields[kenhojo.T_SEX].decode("ascii")
    except UnicodeDecodeError as exc:
        raise CardDataError(f"EF 0002 text is not UTF-8: {exc}") from None
    if sex not in ("0", "1", "2", "9"):  # JIS X 0303 (§3.2)
        raise CardDataError(f"EF 0002 sex code {sex!r} is not JIS X 0303")
    return {"name": name, "address": address,
            "birth": _date8(fields[kenhojo.T_BIRTH], "EF 0002 birth"), "sex": sex}


def parse_card_info(record: bytes) -> dict:
    """共通AP EF 0001 record 1: `01 1C` + 15-digit serial + 5-digit 団体コード + YYYYMMDD (§3.4)."""
    info = _layout(layouts.CARD_INFO, record, "card-info record")
    return {"serial": info.serial, "municipality_code": info.municipality_code,
            "expiry": info.expiry}

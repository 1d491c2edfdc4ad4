"""MF-level GET DATA objects (spec §3.5): what `00 CA P1 P2` answers with no application selected.

Spec §3.5 [S] names the objects and their meaning only; the contents here are synthetic but
consistent with each other:
- 0042 issuer identification number (16-byte key reference): the 証明者鍵ID of the upper
  CVC, i.e. the root key that the chain starts from;
- 0045 card identification number, ASCII as given;
- 0066 GlobalPlatform card recognition data (tag 66 / 73 with the GP OIDs under
  1.2.840.114283: recognition data, GP 2.1.1 card management, card identification scheme,
  SCP02 i=55);
- 00F0 municipality code (5 ASCII digits), 00F2 expiry (8 ASCII digits);
- 00F7 the intermediate key id: the 被証明者鍵ID of the upper CVC, which is the 証明者鍵ID of
  the lower one when there is one (checked);
- 00F8 the upper CVC, 7F21 the lower CVC (absent on older cards, so optional; 6A88). Both
  answer the **contents** of the CVC template, `5F4E … 5F37 …`, not the `7F21` wrapper
  (§13.3); build_get_data takes whole CVCs and stores their contents;
- 5F51 the contact ATR without its initial TS byte.
"""
from __future__ import annotations

import datetime as _dt

from mynaemu.card import tlv
from mynaemu.card.cvc import T_CVC, parse_cvc

ISSUER_IDENTIFICATION = 0x0042
CARD_IDENTIFICATION = 0x0045
CARD_RECOGNITION = 0x0066
MUNICIPALITY_CODE = 0x00F0
EXPIRY = 0x00F2
INTERMEDIATE_KEY_ID = 0x00F7
CHAIN_UPPER = 0x00F8
CHAIN_LOWER = 0x7F21
CONTACT_ATR = 0x5F51

_GP = (1, 2, 840, 114283)


def _oid(arcs) -> bytes:
    """DER OBJECT IDENTIFIER TLV."""
    arcs = list(arcs)
    body = bytes([40 * arcs[0] + arcs[1]])
    for arc in arcs[2:]:
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        body += bytes(reversed(chunk))
    return tlv.encode(0x06, body)


def card_recognition_data() -> bytes:
    """GlobalPlatform card recognition data object (tag 66)."""
    inner = (_oid(_GP + (1,)) +                                   # card recognition data
             tlv.encode(0x60, _oid(_GP + (2, 2, 1, 1))) +          # GP 2.1.1 card management
             tlv.encode(0x63, _oid(_GP + (3,))) +                  # card identification scheme
             tlv.encode(0x64, _oid(_GP + (4, 2, 0x55))))           # SCP02, i=55
    return tlv.encode(0x66, tlv.encode(0x73, inner))


def cvc_contents(cvc: bytes) -> bytes:
    """The value of a CVC's 7F21 template: `5F4E body 5F37 signature` (§13.3)."""
    return bytes(tlv.expect(bytes(cvc), T_CVC).value)


def cvc_from_contents(contents: bytes) -> bytes:
    """The whole CVC (7F21 wrapper restored) from a GET DATA 00F8/7F21 answer."""
    return tlv.encode(T_CVC, bytes(contents))


def build_get_data(*, card_id: str, municipality_code: str, expiry: _dt.date,
                   contact_atr: bytes, cvc_upper: bytes, cvc_lower: bytes | None = None
                   ) -> dict[int, bytes]:
    """P1P2 -> object bytes for CardImage.get_data (spec §3.5)."""
    if (not isinstance(card_id, str) or not card_id or len(card_id) > 64
            or any(not 0x20 < ord(c) < 0x7F for c in card_id)):
        raise ValueError("card_id must be 1..64 printable ASCII characters without spaces")
    if (not isinstance(municipality_code, str) or len(municipality_code) != 5
            or not municipality_code.isascii() or not municipality_code.isdigit()):
        raise ValueError("municipality_code must be 5 ASCII digits")
    if not isinstance(expiry, _dt.date):
        raise TypeError("expiry must be a datetime.date")
    atr = bytes(contact_atr)
    if not 2 <= len(atr) <= 33 or atr[0] not in (0x3B, 0x3F):
        raise ValueError("contact_atr must be a full ATR starting with TS (3B or 3F)")
    try:
        upper = parse_cvc(cvc_upper)
        lower = parse_cvc(cvc_lower) if cvc_lower is not None else None
    except (tlv.TLVError, ValueError) as exc:
        raise ValueError(f"CVC chain: {exc}") from None
    if lower is not None and lower.issuer_key_id != upper.subject_key_id:
        raise ValueError("CVC chain: the lower certificate is not issued by the key the upper "
                         "one certifies")
    objects = {
        ISSUER_IDENTIFICATION: upper.issuer_key_id,
        CARD_IDENTIFICATION: card_id.encode("ascii"),
        CARD_RECOGNITION: card_recognition_data(),
        MUNICIPALITY_CODE: municipality_code.encode("ascii"),
        EXPIRY: f"{expiry.year:04d}{expiry.month:02d}{expiry.day:02d}".encode("ascii"),
        INTERMEDIATE_KEY_ID: upper.subject_key_id,
        CHAIN_UPPER: cvc_contents(cvc_upper),
        CONTACT_ATR: atr[1:],
    }
    if cvc_lower is not None:
        objects[CHAIN_LOWER] = cvc_contents(cvc_lower)
    return objects

"""条例利用AP / 証明書等自動交付AP: the municipal kiosk application of 現行方式 (rules AP-8, CVS-14).

In the existing kiosk method the card carries a municipal application holding the 利用者ID, "a
municipality-specific ID that identifies the user in ordinance use" (000:9868), and the holder
has **a separate PIN for each certificate type** (証明書種別ごとの暗証番号, AP-8, CVS-13). The
JPKI methods (新方式, 変換方式) make the AP unnecessary; it is added to a card only on request
(`add_to_image`), as a municipality writes it at its counter.

No public layout exists for this AP (the ICカード標準システム specification is not in the sources),
so everything here is a project decision, documented once:

- AID: `F0` + ASCII "MYNAEMU-TEST-JR" (16 bytes). ISO/IEC 7816-4 reserves AIDs whose first
  nibble is F for proprietary, unregistered use, so this can never collide with a registered
  application, and it says TEST in its bytes. It is never a prefix of, nor prefixed by, a
  JPKI/券面 AID (all `D3 92 ...`, spec §2.1), so prefix SELECT (spec §2.2) cannot confuse them.
- EF 0001 利用者ID: `FF 60 L { DF61 05 <全国地方公共団体コード, 5 ASCII digits>, DF62 10 <利用者ID,
  16 ASCII characters 0-9 A-Z> [, DF63 0F <the card's serial in the store, 15 ASCII digits>] }`
  in the private-class BER style of the 券面 APs (spec §3). DF63 binds the AP to the card it
  was written on, so the municipality checks that card's state (STATE-1), not just the person's
  (a 利用者ID belongs to the person and survives a reissue); APs written before it lack DF63.
  Readable once **any one** of the document PINs is verified; the kiosk verifies the PIN of the
  document asked for, so each document type stays behind its own PIN.
- EF 0002 registered documents (free to read): one 3-byte entry per document type the holder
  registered a PIN for: document code (01 住民票の写し, 02 印鑑登録証明書, 03 税証明) and the
  PIN's FID. The kiosk reads it to know which PIN to ask for before touching any PIN.
- PIN EFs 0011 (住民票), 0012 (印鑑登録証明書), 0013 (税証明): 4 digits, 3 tries, changed with
  CHANGE REFERENCE DATA like the other 4-digit PINs (spec §4.1, §4.4). A document type the holder
  did not register has no PIN EF at all.
"""
from __future__ import annotations

import re
import secrets

from mynaemu.card import tlv
from mynaemu.card.aid import AID as _AID
from mynaemu.card.ids import JoreiEF, JoreiPin
from mynaemu.card.image import FREE, Application, BinaryEF, CardImage, PinEF

AID = _AID.JOREI
NAME = "jorei"

EF_USER_ID = JoreiEF.USER_ID
EF_DOCUMENTS = JoreiEF.DOCUMENTS

#: document type -> (code in EF 0002, PIN FID, label)
DOCUMENT_PINS = {
    "juminhyo": (0x01, JoreiPin.JUMINHYO, "住民票の写し交付用暗証番号"),
    "inkan": (0x02, JoreiPin.INKAN, "印鑑登録証明書交付用暗証番号"),
    "zei": (0x03, JoreiPin.ZEI, "税証明書交付用暗証番号"),
}
DOCUMENT_OF_CODE = {code: doc for doc, (code, _, _) in DOCUMENT_PINS.items()}

PIN_PATTERN = "[0-9]{4}"
PIN_TRIES = 3
USER_ID_LENGTH = 16
USER_ID_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"

T_USER_ID = 0xFF60
T_MUNICIPALITY = 0xDF61
T_ID = 0xDF62
T_CARD = 0xDF63
CARD_SERIAL_LENGTH = 15

_USER_ID_RE = re.compile(f"[0-9A-Z]{{{USER_ID_LENGTH}}}")


def check_user_id(user_id) -> str:
    """A 利用者ID as this project writes it: 16 characters 0-9 A-Z; ValueError otherwise."""
    if not isinstance(user_id, str) or _USER_ID_RE.fullmatch(user_id) is None:
        raise ValueError(f"a 利用者ID is {USER_ID_LENGTH} characters 0-9 A-Z, got {user_id!r}")
    return user_id


def new_user_id(rng=None) -> str:
    """A fresh random 利用者ID."""
    pick = (rng or secrets.SystemRandom()).choice
    return "".join(pick(USER_ID_ALPHABET) for _ in range(USER_ID_LENGTH))


def _check_municipality(code) -> str:
    if not isinstance(code, str) or len(code) != 5 or not code.isascii() or not code.isdigit():
        raise ValueError(f"municipality code must be 5 ASCII digits, got {code!r}")
    return code


def _check_card_serial(serial) -> str:
    if not (isinstance(serial, str) and len(serial) == CARD_SERIAL_LENGTH and serial.isascii() and serial.isdigit()):
        raise ValueError(f"a card serial is {CARD_SERIAL_LENGTH} ASCII digits, got {serial!r}")
    return serial


def encode_user_id(user_id: str, municipality_code: str, card_serial: str | None = None) -> bytes:
    """EF 0001: `FF 60 L { DF61 05 code, DF62 10 id [, DF63 0F card serial] }`."""
    inner = (tlv.encode(T_MUNICIPALITY, _check_municipality(municipality_code).encode("ascii"))
             + tlv.encode(T_ID, check_user_id(user_id).encode("ascii")))
    if card_serial is not None:
        inner += tlv.encode(T_CARD, _check_card_serial(card_serial).encode("ascii"))
    return tlv.encode(T_USER_ID, inner)


def parse_user_id(ef0001: bytes) -> dict:
    """{'municipality_code', 'user_id'[, 'card_serial']} of EF 0001; ValueError when it is not
    that layout."""
    outer = tlv.expect(bytes(ef0001), T_USER_ID)
    fields = {}
    for item in tlv.decode_all(outer.value):
        if item.tag in fields:
            raise ValueError(f"EF 0001 repeats tag {item.tag:04X}")
        fields[item.tag] = item.value
    if set(fields) not in ({T_MUNICIPALITY, T_ID}, {T_MUNICIPALITY, T_ID, T_CARD}):
        raise ValueError("EF 0001 must hold DF61 (団体コード), DF62 (利用者ID) and optionally DF63 (card serial)")
    try:
        text = {tag: value.decode("ascii") for tag, value in fields.items()}
    except UnicodeDecodeError:
        raise ValueError("EF 0001 fields must be ASCII") from None
    out = {"municipality_code": _check_municipality(text[T_MUNICIPALITY]), "user_id": check_user_id(text[T_ID])}
    if T_CARD in text:
        out["card_serial"] = _check_card_serial(text[T_CARD])
    return out


def encode_documents(documents) -> bytes:
    """EF 0002: code (1 byte) + PIN FID (2 bytes) per registered document type."""
    out = bytearray()
    for doc in documents:
        if doc not in DOCUMENT_PINS:
            raise ValueError(f"unknown document type {doc!r}; choose from {', '.join(DOCUMENT_PINS)}")
        code, fid, _ = DOCUMENT_PINS[doc]
        out += bytes((code,)) + fid.to_bytes(2, "big")
    return bytes(out)


def parse_documents(ef0002: bytes) -> dict:
    """document type -> PIN FID from EF 0002; ValueError on a bad entry."""
    data = bytes(ef0002)
    if len(data) % 3:
        raise ValueError(f"EF 0002 is {len(data)} bytes, not a multiple of 3")
    out = {}
    for i in range(0, len(data), 3):
        code, fid = data[i], int.from_bytes(data[i + 1:i + 3], "big")
        doc = DOCUMENT_OF_CODE.get(code)
        if doc is None:
            raise ValueError(f"EF 0002 names unknown document code {code:02X}")
        if fid != DOCUMENT_PINS[doc][1]:
            raise ValueError(f"EF 0002 gives PIN {fid:04X} for {doc}, expected {DOCUMENT_PINS[doc][1]:04X}")
        out[doc] = fid
    return out


def build(*, user_id: str, municipality_code: str, pins: dict, card_serial: str | None = None) -> Application:
    """The 条例利用AP DF: 利用者ID, registered documents and one PIN per registered document.

    pins: document type -> 4-digit PIN, for the document types the holder registers (AP-8);
    at least one.
    """
    if not isinstance(pins, dict) or not pins:
        raise ValueError("register a PIN for at least one document type")
    for doc, pin in pins.items():
        if doc not in DOCUMENT_PINS:
            raise ValueError(f"unknown document type {doc!r}; choose from {', '.join(DOCUMENT_PINS)}")
        if not isinstance(pin, str) or re.fullmatch(PIN_PATTERN, pin) is None:
            raise ValueError(f"the {doc} PIN must be 4 digits")
    docs = [d for d in DOCUMENT_PINS if d in pins]  # fixed order
    app = Application(NAME, AID, {})
    pin_fids = tuple(DOCUMENT_PINS[d][1] for d in docs)
    app.add(BinaryEF(EF_USER_ID, encode_user_id(user_id, municipality_code, card_serial), pin_fids, "利用者ID"))
    app.add(BinaryEF(EF_DOCUMENTS, encode_documents(docs), FREE, "交付可能な証明書"))
    for doc in docs:
        _, fid, label = DOCUMENT_PINS[doc]
        app.add(PinEF(fid, pins[doc].encode("ascii"), PIN_TRIES, PIN_TRIES, PIN_PATTERN, "iso", label))
    return app


def add_to_image(image: CardImage, *, user_id: str, municipality_code: str, pins: dict,
                 card_serial: str | None = None) -> Application:
    """Write the 条例利用AP onto an existing card image (as a municipality's counter does).

    Refuses a card that already carries it. Returns the new application.
    """
    if not isinstance(image, CardImage):
        raise TypeError(f"image must be a CardImage, got {type(image).__name__}")
    if any(app.name == NAME or app.aid == AID for app in image.applications):
        raise ValueError("the card already carries the 条例利用AP")
    app = build(user_id=user_id, municipality_code=municipality_code, pins=pins, card_serial=card_serial)
    image.applications.append(app)
    image.meta.setdefault("secrets", {}).setdefault("pins", {}).update(
        {f"jorei_{doc}": pin for doc, pin in pins.items()})
    image.meta["jorei_municipality"] = municipality_code
    return app

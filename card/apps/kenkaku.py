"""券面事項確認AP (kenkaku, the card-face AP): layout, EF formats, verifiers and the DF builder.

Spec §3.3 gives the EFs, §4.1 the PINs and §4.3 which secret opens which EF. All records are
signed by the key certified in EF 0004 (the CVC, same shape as kenhojo's); the card's own key
001A (public half in DF12, DF24 and DF42) signs challenges without a PIN.

Decisions on [U] points:
- 照合番号A (0013) and the 生年月日 key (0011) allow 10 tries, like 照合番号B (0012).
- EF 0003 DF33 (version) is 00 as on the test card (§13.1); DF32 is the CVC's 被証明者鍵ID
  and DF35 the 16-byte CVC issuer key id (§13.1 form on issued cards) followed by 256 opaque
  bytes. The real card is said to hold the 照合番号 encrypted for the issuer there; this
  emulator writes a deterministic expansion of the key ids instead, so the field holds no
  secret and no personal data.
- EF 0006 (16 x FF, purpose unknown) follows the 照合番号 cross-check of §3.3: A or B opens it.
- Filler (§13.3): with build(filler=True), as personalisation does, EF 0002 (card face) and
  EF 0005 (rendered 個人番号) are FF-filled after their TLV to the next multiple of 256 bytes
  (tlv.with_filler). Signatures cover TLVs only (§3.3), so filler changes none of them;
  verify_face / verify_number_image accept only FF after the object.
- The name/address/face/security-code images default to the synthetic ones of
  mynaemu.card.images; a caller may pass its own PNG/JP2 bytes.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import re

from cryptography.hazmat.primitives.asymmetric import rsa

from mynaemu.card import images, layouts, tlv
from mynaemu.card.crypto import (check_rsa2048, key_pem, same_public_key, sign_pkcs1_raw,
                                 sign_sha256, verify_pkcs1_raw, verify_sha256)
from mynaemu.card.cvc import (  # noqa: F401  (encode_cvc, verify_cvc: in __all__)
    SIZE_CVC, cvc_public_key, encode_cvc, parse_cvc, verify_cvc)
from mynaemu.card.image import FREE, Application, BinaryEF, KeyEF, OpaqueEF, PinEF
from mynaemu.card.aid import AID as _AID
from mynaemu.card.ids import KENKAKU_UNKNOWN_EFS, KenkakuEF, KenkakuKey, KenkakuPin

__all__ = ["AID", "build", "encode_cvc", "parse_cvc", "verify_cvc", "verify_face",
           "verify_age_record", "verify_number_image", "parse_face", "parse_age_record"]

AID = _AID.KENKAKU
NAME = "kenkaku"

EF_AGE = KenkakuEF.AGE
EF_FACE = KenkakuEF.FACE
EF_AP_INFO = KenkakuEF.AP_INFO
EF_CVC = KenkakuEF.CVC
EF_NUMBER_IMAGE = KenkakuEF.NUMBER_IMAGE
EF_0006 = KenkakuEF.UNKNOWN_0006
PIN_BIRTH = KenkakuPin.BIRTH
PIN_B = KenkakuPin.B
PIN_A = KenkakuPin.A
KEY_CARD = KenkakuKey.CARD
UNKNOWN_EFS = KENKAKU_UNKNOWN_EFS   # §13.3: exist, purpose unknown (SELECT 9000, content refused)

# spec §4.3 table, 券面事項確認AP column (0003/0004 are free per §3.3).
ACCESS = {
    EF_AGE: (PIN_BIRTH,),
    EF_FACE: (PIN_A, PIN_B),
    EF_AP_INFO: FREE,
    EF_CVC: FREE,
    EF_NUMBER_IMAGE: (PIN_A,),
    EF_0006: (PIN_A, PIN_B),
}

PIN_BIRTH_PATTERN = "[0-9]{6}"
PIN_A_PATTERN = "[0-9]{12}"
PIN_B_PATTERN = "[0-9]{14}"
MAX_TRIES = 10  # 0012: 10 [C]; 0011 and 0013: [U], same

AP_INFO_ID = bytes.fromhex("06030E01")
AP_INFO_VERSION = 0x00   # §13.1: DF33 is 00 on the test card

T_AGE, T_AGE_BIRTH, T_AGE_KEY, T_AGE_SIG = 0xFF10, 0xDF11, 0xDF12, 0xDF13
T_FACE = 0xFF20
T_OFFSETS = 0xDF21
T_BIRTH, T_SEX, T_CARD_KEY, T_NAME_IMG, T_ADDR_IMG, T_PHOTO, T_FACE_SIG, T_EXPIRY, T_CODE_IMG = (
    0xDF22, 0xDF23, 0xDF24, 0xDF25, 0xDF26, 0xDF27, 0xDF28, 0xDF29, 0xDF2A)
FACE_FIELDS = (T_BIRTH, T_SEX, T_CARD_KEY, T_NAME_IMG, T_ADDR_IMG, T_PHOTO, T_FACE_SIG, T_EXPIRY,
               T_CODE_IMG)
T_AP_INFO, T_INFO_ID, T_INFO_KEY_ID, T_INFO_VERSION, T_INFO_CITY, T_INFO_BLOB = (
    0xFF30, 0xDF31, 0xDF32, 0xDF33, 0xDF34, 0xDF35)
T_NUMBER, T_NUMBER_IMG, T_NUMBER_KEY, T_NUMBER_SIG = 0xFF40, 0xDF41, 0xDF42, 0xDF43

# DigestInfo { sha256, OCTET STRING (96) } = 30 71 30 0D <OID> 05 00 04 60 (spec §3.3 DF28).
FACE_DIGESTINFO_PREFIX = bytes.fromhex("3071300d0609608648016503040201050004" "60")


def _yyyymmdd(day: _dt.date) -> bytes:
    if not isinstance(day, _dt.date):
        raise TypeError("dates must be datetime.date")
    return f"{day.year:04d}{day.month:02d}{day.day:02d}".encode("ascii")


def _digits(value: str, n: int, what: str) -> str:
    if not isinstance(value, str) or len(value) != n or not value.isascii() or not value.isdigit():
        raise ValueError(f"{what} must be {n} ASCII digits")
    return value


# -- EF 0001: age record ----------------------------------------------------------------------

def encode_age_record(*, birth: _dt.date, card_public_key, signer_key) -> bytes:
    """`FF10 82 021E { DF11 YYYYMMDD, DF12 card key, DF13 sig over DF11+DF12 TLVs }`."""
    check_rsa2048(card_public_key, "card key")
    check_rsa2048(signer_key, "signer key")
    signed = (tlv.encode(T_AGE_BIRTH, _yyyymmdd(birth)) +
              tlv.encode(T_AGE_KEY, tlv.encode_rsa_public_key(card_public_key)))
    return tlv.encode(T_AGE, signed + tlv.encode(T_AGE_SIG, sign_sha256(signer_key, signed)))


def parse_age_record(ef0001: bytes) -> dict:
    """{'birth': 'YYYYMMDD', 'card_public_key': RSAPublicKey} (signature not checked)."""
    items = tlv.expect(ef0001, T_AGE).children()
    if [i.tag for i in items] != [T_AGE_BIRTH, T_AGE_KEY, T_AGE_SIG]:
        raise ValueError("age record must hold DF11, DF12, DF13")
    birth = items[0].value.decode("ascii", errors="replace")
    if not re.fullmatch(r"[0-9]{8}", birth):
        raise ValueError("DF11 must be YYYYMMDD")
    return {"birth": birth, "card_public_key": tlv.decode_rsa_public_key(items[1].value)}


def verify_age_record(ef0001: bytes, ef0004: bytes) -> bool:
    """DF13 verifies over the DF11+DF12 TLVs with the key certified in EF 0004."""
    try:
        items = tlv.expect(ef0001, T_AGE).children()
        if [i.tag for i in items] != [T_AGE_BIRTH, T_AGE_KEY, T_AGE_SIG]:
            return False
        tlv.decode_rsa_public_key(items[1].value)
        return verify_sha256(cvc_public_key(ef0004), items[2].value, items[0].raw + items[1].raw)
    except (tlv.TLVError, ValueError):
        return False


# -- EF 0002: card face -----------------------------------------------------------------------

def face_digest_info(df22_to_df27: list[bytes]) -> bytes:
    """DigestInfo over SHA256(DF22‖DF23‖DF24) ‖ SHA256(DF25‖DF26) ‖ SHA256(DF27) (TLVs)."""
    b, s, k, n, a, p = df22_to_df27
    octets = (hashlib.sha256(b + s + k).digest() + hashlib.sha256(n + a).digest() +
              hashlib.sha256(p).digest())
    return FACE_DIGESTINFO_PREFIX + octets


def encode_face(*, birth: _dt.date, sex: str, card_public_key, name_image: bytes,
                address_image: bytes, face_image: bytes, expiry: _dt.date,
                security_code_image: bytes, signer_key) -> bytes:
    """`FF 20 82 xx xx { DF21 9 offsets, DF22 .. DF2A }` with the DF28 signature (spec §3.3)."""
    if sex not in ("0", "1", "2", "9"):
        raise ValueError(f"sex must be '0', '1', '2' or '9', got {sex!r}")
    for data, what, ok in ((name_image, "name image", images.is_png),
                           (address_image, "address image", images.is_png),
                           (security_code_image, "security-code image", images.is_png),
                           (face_image, "face image", images.is_jp2)):
        if not isinstance(data, (bytes, bytearray)) or not ok(data):
            raise ValueError(f"{what} must be {'JPEG 2000 (JP2)' if ok is images.is_jp2 else 'PNG'} bytes")
    check_rsa2048(card_public_key, "card key")
    check_rsa2048(signer_key, "signer key")
    signed_part = [
        tlv.encode(T_BIRTH, _yyyymmdd(birth)),
        tlv.encode(T_SEX, sex.encode("ascii")),
        tlv.encode(T_CARD_KEY, tlv.encode_rsa_public_key(card_public_key)),
        tlv.encode(T_NAME_IMG, name_image),
        tlv.encode(T_ADDR_IMG, address_image),
        tlv.encode(T_PHOTO, face_image),
    ]
    signature = sign_pkcs1_raw(signer_key, face_digest_info(signed_part))
    # DF29 and DF2A follow the signature and are not signed (spec §3.3).
    fields = signed_part + [tlv.encode(T_FACE_SIG, signature),
                            tlv.encode(T_EXPIRY, _yyyymmdd(expiry)),
                            tlv.encode(T_CODE_IMG, security_code_image)]
    offsets_len = 2 + 1 + 18
    content_len = offsets_len + sum(len(f) for f in fields)
    header_len = 2 + 3  # FF 20 82 xx xx: always the two-byte long form (spec §3.3)
    pos = header_len + offsets_len
    offsets = b""
    for f in fields:
        if pos > 0xFFFF:
            raise ValueError("card face too large: DF21 offsets are 16-bit")
        offsets += pos.to_bytes(2, "big")
        pos += len(f)
    if content_len > 0xFFFF:
        raise ValueError(f"card face content of {content_len} bytes exceeds 65535")
    return tlv.encode(T_FACE, tlv.encode(T_OFFSETS, offsets) + b"".join(fields), length_width=2)


def _face_fields(ef0002: bytes):
    outer = tlv.expect(ef0002, T_FACE)
    items = tlv.decode_all(outer.value, stop_at_filler=False)
    if [i.tag for i in items] != [T_OFFSETS, *FACE_FIELDS]:
        raise ValueError(f"card face fields are {[f'{i.tag:X}' for i in items]}")
    raw = items[0].value
    if len(raw) != 18:
        raise ValueError("DF21 must hold 9 offsets")
    offsets = [int.from_bytes(raw[i:i + 2], "big") for i in range(0, 18, 2)]
    for off, item in zip(offsets, items[1:]):
        if off != outer.header_len + item.offset:
            raise ValueError(f"DF21 offset {off} does not point at tag {item.tag:X}")
    return items[1:]


def parse_face(ef0002: bytes) -> dict:
    """The card face as a dict: birth, sex, expiry (strings), card_public_key, the images."""
    f = _face_fields(ef0002)
    return {
        "birth": f[0].value.decode("ascii", errors="replace"),
        "sex": f[1].value.decode("ascii", errors="replace"),
        "card_public_key": tlv.decode_rsa_public_key(f[2].value),
        "name_image": f[3].value,
        "address_image": f[4].value,
        "face_image": f[5].value,
        "signature": f[6].value,
        "expiry": f[7].value.decode("ascii", errors="replace"),
        "security_code_image": f[8].value,
    }


def verify_face(ef0002: bytes, ef0004: bytes) -> bool:
    """DF28 verifies (PKCS#1 v1.5 over the 96-byte DigestInfo) with the key of EF 0004."""
    try:
        if not tlv.only_filler_after(ef0002, tlv.expect(ef0002, T_FACE).end):
            return False
        f = _face_fields(ef0002)
        payload = face_digest_info([item.raw for item in f[:6]])
        return verify_pkcs1_raw(cvc_public_key(ef0004), f[6].value, payload)
    except (tlv.TLVError, ValueError):
        return False


# -- EF 0003: AP basic info -------------------------------------------------------------------

def encode_ap_info(*, key_id: bytes, municipality_code: str, issuer_key_id: bytes,
                   version: int = AP_INFO_VERSION) -> bytes:
    """`FF30 { DF31 06030E01, DF32 key id, DF33 version, DF34 city code, DF35 id + 256 }`."""
    if (not isinstance(key_id, (bytes, bytearray)) or not isinstance(issuer_key_id, (bytes, bytearray))
            or len(key_id) != 16 or len(issuer_key_id) != 16):
        raise ValueError("key ids must be 16 bytes")
    _digits(municipality_code, 5, "municipality code")
    if not isinstance(version, int) or not 0 <= version <= 255:
        raise ValueError("version must fit one byte")
    blob = b"".join(hashlib.sha256(b"mynaemu/kenkaku/DF35/%d/" % i + bytes(key_id) +
                                   bytes(issuer_key_id)).digest() for i in range(8))
    return layouts.build(layouts.KENKAKU_AP_INFO, {
        "id": AP_INFO_ID, "key_id": bytes(key_id), "version": version,
        "municipality_code": municipality_code, "issuer_key_id": bytes(issuer_key_id),
        "blob": blob}, "kenkaku EF 0003")


def parse_ap_info(ef0003: bytes) -> dict:
    """EF 0003 fields (layouts.KENKAKU_AP_INFO); ValueError (LayoutError) when malformed."""
    info = layouts.parse(layouts.KENKAKU_AP_INFO, ef0003, "kenkaku EF 0003")
    return {"id": info.id, "key_id": info.key_id, "version": info.version,
            "municipality_code": info.municipality_code, "blob_key_id": info.issuer_key_id}


# -- EF 0005: rendered 個人番号 -----------------------------------------------------------------

def encode_number_image(*, number_image: bytes, card_public_key, signer_key) -> bytes:
    """`FF40 { DF41 PNG, DF42 card key, DF43 sig over DF41+DF42 TLVs }` (spec §3.3)."""
    if not images.is_png(number_image):
        raise ValueError("number image must be PNG bytes")
    check_rsa2048(card_public_key, "card key")
    check_rsa2048(signer_key, "signer key")
    signed = (tlv.encode(T_NUMBER_IMG, number_image) +
              tlv.encode(T_NUMBER_KEY, tlv.encode_rsa_public_key(card_public_key)))
    return tlv.encode(T_NUMBER, signed + tlv.encode(T_NUMBER_SIG, sign_sha256(signer_key, signed)))


def verify_number_image(ef0005: bytes, ef0004: bytes) -> bool:
    try:
        outer = tlv.expect(ef0005, T_NUMBER)
        if not tlv.only_filler_after(ef0005, outer.end):
            return False
        items = outer.children()
        if [i.tag for i in items] != [T_NUMBER_IMG, T_NUMBER_KEY, T_NUMBER_SIG]:
            return False
        tlv.decode_rsa_public_key(items[1].value)
        return verify_sha256(cvc_public_key(ef0004), items[2].value, items[0].raw + items[1].raw)
    except (tlv.TLVError, ValueError):
        return False


# -- the DF -----------------------------------------------------------------------------------

def _filled(obj: bytes, filler: bool) -> bytes:
    return tlv.with_filler(obj) if filler else obj


def build(*, individual_number: str, name: str, address: str, birth: _dt.date, sex: str,
          expiry: _dt.date, security_code: str, collation_b: str, municipality_code: str,
          cvc: bytes, signer_key, card_key, face_seed: int = 0,
          name_image: bytes | None = None, address_image: bytes | None = None,
          face_image: bytes | None = None, security_code_image: bytes | None = None,
          number_image: bytes | None = None,
          info_key_id: bytes | None = None, filler: bool = False) -> Application:
    """The kenkaku DF with the EFs of spec §3.3 and the access rules of §4.3.

    collation_b: 照合番号B = era YYMMDD of birth + expiry year + security code (14 digits,
    §4.3); its first 6 digits are the 生年月日 key 0011. cvc: EF 0004 (encode_cvc);
    signer_key: the key it certifies; card_key: key 001A, stored on the card.
    info_key_id: EF 0003 DF32; by default the CVC's 被証明者鍵ID (§13.1).
    """
    _digits(individual_number, 12, "individual number")
    _digits(security_code, 4, "security code")
    _digits(collation_b, 14, "照合番号B")
    if not isinstance(expiry, _dt.date):
        raise TypeError("expiry must be a datetime.date")
    if collation_b[6:10] != f"{expiry.year:04d}" or collation_b[10:] != security_code:
        raise ValueError("照合番号B must end with the expiry year and the security code (§4.3)")
    if collation_b[2:6] != f"{birth.month:02d}{birth.day:02d}":
        raise ValueError("照合番号B must start with the birth date as era YYMMDD (§4.3)")
    check_rsa2048(signer_key, "signer key")
    check_rsa2048(card_key, "card key 001A")
    if not isinstance(card_key, rsa.RSAPrivateKey) or not isinstance(signer_key, rsa.RSAPrivateKey):
        raise TypeError("card_key and signer_key must be private keys")
    try:
        parsed = parse_cvc(cvc)
    except (tlv.TLVError, ValueError) as exc:
        raise ValueError(f"cvc is not a card-verifiable certificate: {exc}") from None
    if len(cvc) != SIZE_CVC:
        raise ValueError(f"cvc is {len(cvc)} bytes, EF 0004 holds {SIZE_CVC}")
    if not same_public_key(parsed.public_key, signer_key):
        raise ValueError("signer_key is not the key certified by the CVC")
    if info_key_id is None:
        info_key_id = parsed.subject_key_id   # §13.1: DF32 is this AP's key id

    card_pub = card_key.public_key()
    face = encode_face(
        birth=birth, sex=sex, card_public_key=card_pub,
        name_image=name_image if name_image is not None else images.name_png(name),
        address_image=address_image if address_image is not None else images.address_png(address),
        face_image=face_image if face_image is not None else images.face_jp2(face_seed),
        expiry=expiry,
        security_code_image=(security_code_image if security_code_image is not None
                             else images.security_code_png(security_code)),
        signer_key=signer_key)
    contents = {
        EF_AGE: (encode_age_record(birth=birth, card_public_key=card_pub, signer_key=signer_key),
                 "age-verification record"),
        EF_FACE: (tlv.with_filler(face) if filler else face, "card face"),   # §13.3 filler
        EF_AP_INFO: (encode_ap_info(key_id=info_key_id, municipality_code=municipality_code,
                                    issuer_key_id=parsed.issuer_key_id), "AP basic info"),
        EF_CVC: (bytes(cvc), "CVC"),
        EF_NUMBER_IMAGE: (_filled(encode_number_image(
            number_image=number_image if number_image is not None else images.number_png(individual_number),
            card_public_key=card_pub, signer_key=signer_key), filler), "rendered 個人番号"),
        EF_0006: (b"\xff" * 16, "unknown (16 x FF)"),
    }
    app = Application(NAME, AID, {})
    for fid, (data, label) in contents.items():
        app.add(BinaryEF(fid, data, ACCESS[fid], label))
    app.add(PinEF(PIN_BIRTH, collation_b[:6].encode("ascii"), MAX_TRIES, MAX_TRIES,
                  PIN_BIRTH_PATTERN, "none", "生年月日"))
    app.add(PinEF(PIN_B, collation_b.encode("ascii"), MAX_TRIES, MAX_TRIES, PIN_B_PATTERN, "none",
                  "照合番号B"))
    app.add(PinEF(PIN_A, individual_number.encode("ascii"), MAX_TRIES, MAX_TRIES, PIN_A_PATTERN,
                  "none", "照合番号A"))
    app.add(KeyEF(KEY_CARD, key_pem(card_key), FREE, ("sign",), True, "AP signing key"))
    for fid in UNKNOWN_EFS:
        app.add(OpaqueEF(fid, "exists, purpose unknown (§13.3)"))
    return app

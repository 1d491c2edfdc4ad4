"""券面事項入力補助AP (kenhojo, the text AP): layout, EF formats, verifiers and the DF builder.

Spec §3.2 gives the EFs, §4.1 the PINs and §4.3 which secret opens which EF. The signed
structures it shares with the 券面事項確認AP live in their own homes: the card-verifiable
certificate (CVC) of EF 0004 in card/cvc.py, the RSA/PKCS#1 v1.5 helpers in card/crypto.py,
the §13.3 filler helpers in card/tlv.py (re-exported here under their old names).

Keys involved (all RSA-2048, e=65537):
- the CVC issuer key, held by the TEST back office, signs the CVC body of EF 0004;
- the signer key, certified by that CVC, signs the integrity record (0003) and the AP's
  public key record (0007);
- key 0013, the AP's own key on the card, signs challenges without a PIN (§3.3 end);
- the session-key key of EF 0006: the public half is the EF, the private half is held by
  the application (Application.sm_key_pem, no EF) and decrypts SET SESSION KEY (§13.2,
  card/sm.py).

Decisions on [U] points (spec §4.1, §12):
- 照合番号A (0014) and 照合番号B (0015) allow 10 tries, like the kenkaku 照合番号B.
- Key reference 0012 is blocked as issued (remaining 0, §3.2 [S]); its format is unknown, so
  it is given 3 tries and a 4-digit pattern that nothing can ever present.
- EF 0002's outer length (§13.4, replacing the advice of §3.2): short form while the content
  is under 128 bytes, BER long form `81 LL` / `82 LL LL` above, as a real card holding a full
  住民票 address does; offsets and the EF 0003 digest rules are unchanged. Clients reading only
  byte 2 as the length misparse such a card, as they would a real one. `encode_basic4` alone
  still defaults to the short form only (long_form=False refuses 128+ bytes); the DF builder
  chooses automatically.
- EF 0005 is written `FF 40 82 00 9F` with DF43 as `82 00 80` (the header §3.2 marks [U]),
  DF43 = SHA-256 of the DF42 key id + 96 FF, then FF filler to 256 bytes.
- EF 0008 (16 FF, purpose unknown) is readable without a credential.
- Filler (§13.3: EFs read straight off the card carry filler after their TLV; clients trim by
  the TLV length): with build(filler=True), as personalisation does, EF 0002 is FF-filled to
  its allocation, the object rounded up to the next multiple of 256 bytes (always at least one
  filler byte; the allocation size itself is [U]). The DF32 digest covers the TLVs only
  (§3.2), so filler never changes EF 0003; verify_integrity accepts only FF after the object.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import re

from cryptography.hazmat.primitives.asymmetric import rsa

from mynaemu.card import layouts, tlv
from mynaemu.card.crypto import (  # noqa: F401  (re-exported: kenhojo.verify_sha256 & co.)
    check_rsa2048, key_pem, public_of, same_public_key, sign_sha256, verify_pkcs1_raw, verify_sha256)
from mynaemu.card.cvc import (  # noqa: F401  (re-exported: kenhojo.parse_cvc & co.)
    CVC, CVC_BODY_LEN, KEY_ID_LEN, SIZE_CVC, T_CVC, T_CVC_BODY, T_CVC_SIG, cvc_public_key,
    encode_cvc, parse_cvc, verify_cvc)
from mynaemu.card.tlv import only_filler_after, with_filler  # noqa: F401  (§13.3)
from mynaemu.card.image import FREE, Application, BinaryEF, KeyEF, OpaqueEF, PinEF
from mynaemu.card.aid import AID as _AID
from mynaemu.card.ids import KENHOJO_UNKNOWN_EFS, KenhojoEF, KenhojoKey, KenhojoPin

AID = _AID.KENHOJO
NAME = "kenhojo"

EF_MY_NUMBER = KenhojoEF.MY_NUMBER
EF_BASIC4 = KenhojoEF.BASIC4
EF_INTEGRITY = KenhojoEF.INTEGRITY
EF_CVC = KenhojoEF.CVC
EF_AP_INFO = KenhojoEF.AP_INFO
EF_SESSION_KEY = KenhojoEF.SESSION_KEY
EF_AP_PUBLIC_KEY = KenhojoEF.AP_PUBLIC_KEY
EF_0008 = KenhojoEF.UNKNOWN_0008
PIN_MAIN = KenhojoPin.MAIN
PIN_BLOCKED = KenhojoPin.BLOCKED
KEY_AP = KenhojoKey.AP
PIN_A = KenhojoPin.A
PIN_B = KenhojoPin.B
# §13.3: EFs that exist though their use is unknown (SELECT 9000, content refused).
UNKNOWN_EFS = KENHOJO_UNKNOWN_EFS

# spec §4.3 table, kenhojo column: which PIN EFs open which data EF.
ACCESS = {
    EF_MY_NUMBER: (PIN_MAIN, PIN_A),
    EF_BASIC4: (PIN_MAIN, PIN_B),
    EF_INTEGRITY: (PIN_MAIN, PIN_A, PIN_B),
    EF_CVC: FREE,
    EF_AP_INFO: FREE,
    EF_SESSION_KEY: (PIN_MAIN, PIN_A, PIN_B),
    EF_AP_PUBLIC_KEY: (PIN_MAIN, PIN_A, PIN_B),
    EF_0008: FREE,
}

PIN_PATTERN = "[0-9]{4}"
PIN_A_PATTERN = "[0-9]{12}"
PIN_B_PATTERN = "[0-9]{14}"
PIN_MAX_TRIES = 3
COLLATION_MAX_TRIES = 10     # [U] §4.1: "10 is likely"

AP_INFO_ID = bytes.fromhex("01030E01")   # DF41 as seen on cards (§3.2)
AP_INFO_SIZE = 256

SHA256_DIGESTINFO_PREFIX = bytes.fromhex("3031300d060960864801650304020105000420")

# BER tags
T_MY_NUMBER = 0xFF10
T_BASIC4 = 0xFF20
T_OFFSETS, T_NAME, T_ADDRESS, T_BIRTH, T_SEX = 0xDF21, 0xDF22, 0xDF23, 0xDF24, 0xDF25
T_INTEGRITY = 0xFF30
T_DIGEST_NUMBER, T_DIGEST_BASIC4, T_INTEGRITY_SIG = 0xDF31, 0xDF32, 0xDF33
T_AP_INFO, T_AP_INFO_ID, T_AP_INFO_KEY_ID, T_AP_INFO_DATA = 0xFF40, 0xDF41, 0xDF42, 0xDF43
T_SESSION_KEY = 0xA1
T_SIGNED_KEY, T_SIGNED_KEY_KEY, T_SIGNED_KEY_SIG = 0xFF50, 0xDF51, 0xDF52

SIZE_MY_NUMBER = 17
SIZE_INTEGRITY = 336


# -- EF 0001: 個人番号 -------------------------------------------------------------------------

def _check_digits(value: str, n: int, what: str) -> str:
    if not isinstance(value, str) or len(value) != n or not value.isascii() or not value.isdigit():
        raise ValueError(f"{what} must be {n} ASCII digits")
    return value


def encode_my_number(individual_number: str) -> bytes:
    """`FF 10 0C` + 12 ASCII digits + `FF FF` filler: 17 bytes (spec §3.2)."""
    _check_digits(individual_number, 12, "individual number")
    return layouts.build(layouts.MY_NUMBER, {"number": individual_number}, "kenhojo EF 0001")


def parse_my_number(ef0001: bytes) -> str:
    """The 12 digits of EF 0001 (layouts.MY_NUMBER); ValueError (LayoutError) when malformed."""
    return layouts.parse(layouts.MY_NUMBER, ef0001, "kenhojo EF 0001").number


# -- EF 0002: 基本4情報 -------------------------------------------------------------------------

def _yyyymmdd(day: _dt.date) -> bytes:
    if not isinstance(day, _dt.date):
        raise TypeError("dates must be datetime.date")
    return f"{day.year:04d}{day.month:02d}{day.day:02d}".encode("ascii")


def _check_sex(sex: str) -> bytes:
    if sex not in ("0", "1", "2", "9"):  # JIS X 0303 (spec §3.2)
        raise ValueError(f"sex must be '0', '1', '2' or '9', got {sex!r}")
    return sex.encode("ascii")


def encode_basic4(*, name: str, address: str, birth: _dt.date, sex: str,
                  long_form: bool | None = False) -> bytes:
    """`FF 20 LL { DF21 offsets, DF22 name, DF23 address, DF24 YYYYMMDD, DF25 sex }`.

    The DF21 offsets are big-endian u16 from the start of the file to each field's tag
    (spec §3.2). long_form=False: the outer length is short and content of 128+ bytes raises
    ValueError; True: always `81 LL` (or `82 LL LL`); None: short below 128 bytes, long form
    from 128 (spec §13.4).
    """
    if not name or not address:
        raise ValueError("name and address must not be empty")
    fields = [
        tlv.encode(T_NAME, name.encode("utf-8")),
        tlv.encode(T_ADDRESS, address.encode("utf-8")),
        tlv.encode(T_BIRTH, _yyyymmdd(birth)),
        tlv.encode(T_SEX, _check_sex(sex)),
    ]
    offsets_tlv_len = 2 + 1 + 8
    content_len = offsets_tlv_len + sum(len(f) for f in fields)
    if long_form is None:
        long_form = content_len >= 0x80
    if content_len >= 0x80 and not long_form:
        raise ValueError(f"基本4情報 content is {content_len} bytes; 128 or more needs the long "
                         "length form, which clients reading byte 2 misparse (pass long_form=True)")
    width = None if not long_form else (1 if content_len < 0x100 else 2)
    header_len = 2 + len(tlv.encode_length(content_len, width))
    pos = header_len + offsets_tlv_len
    offsets = b""
    for f in fields:
        offsets += pos.to_bytes(2, "big")
        pos += len(f)
    content = tlv.encode(T_OFFSETS, offsets) + b"".join(fields)
    return tlv.encode(T_BASIC4, content, length_width=width)


def _basic4_fields(ef0002: bytes):
    outer = tlv.expect(ef0002, T_BASIC4)
    items = tlv.decode_all(outer.value, stop_at_filler=False)
    tags = [i.tag for i in items]
    if tags != [T_OFFSETS, T_NAME, T_ADDRESS, T_BIRTH, T_SEX]:
        raise ValueError(f"EF 0002 fields are {[f'{t:X}' for t in tags]}, expected DF21..DF25")
    offsets_raw = items[0].value
    if len(offsets_raw) != 8:
        raise ValueError("DF21 must hold 4 offsets (8 bytes)")
    offsets = [int.from_bytes(offsets_raw[i:i + 2], "big") for i in range(0, 8, 2)]
    base = outer.header_len
    for off, item in zip(offsets, items[1:]):
        if off != base + item.offset:
            raise ValueError(f"DF21 offset {off} does not point at tag {item.tag:X} "
                             f"(found at {base + item.offset})")
    return outer, offsets, items


def parse_basic4(ef0002: bytes) -> dict:
    """{'name', 'address', 'birth' (YYYYMMDD), 'sex', 'offsets'}; ValueError when malformed."""
    _, offsets, items = _basic4_fields(ef0002)
    try:
        name = items[1].value.decode("utf-8")
        address = items[2].value.decode("utf-8")
        birth = items[3].value.decode("ascii")
        sex = items[4].value.decode("ascii")
    except UnicodeDecodeError as exc:
        raise ValueError(f"EF 0002 text is not UTF-8/ASCII: {exc}") from None
    if not re.fullmatch(r"[0-9]{8}", birth):
        raise ValueError("DF24 must be YYYYMMDD")
    return {"name": name, "address": address, "birth": birth, "sex": sex, "offsets": offsets}


def basic4_signed_range(ef0002: bytes) -> bytes:
    """The bytes DF32 digests: from the DF22 tag to the end of the outer value (spec §3.2)."""
    outer, offsets, _ = _basic4_fields(ef0002)
    return bytes(ef0002[offsets[0]:outer.end])


# -- EF 0003: integrity record ----------------------------------------------------------------

def encode_integrity(ef0001: bytes, ef0002: bytes, signer_key) -> bytes:
    """`FF30 { DF31 SHA-256(EF 0001), DF32 SHA-256(EF 0002 DF22..end), DF33 signature }`.

    The signature is PKCS#1 v1.5/SHA-256 over the 70 bytes of the DF31 and DF32 TLVs, by the
    key certified in EF 0004 (spec §3.2). 336 bytes.
    """
    check_rsa2048(signer_key, "signer key")
    digests = (tlv.encode(T_DIGEST_NUMBER, hashlib.sha256(bytes(ef0001)).digest()) +
               tlv.encode(T_DIGEST_BASIC4, hashlib.sha256(basic4_signed_range(ef0002)).digest()))
    out = tlv.encode(T_INTEGRITY, digests + tlv.encode(T_INTEGRITY_SIG, sign_sha256(signer_key, digests)))
    assert len(out) == SIZE_INTEGRITY
    return out


def verify_integrity(ef0001: bytes, ef0002: bytes, ef0003: bytes, ef0004: bytes) -> bool:
    """Digests of 0001/0002 match and DF33 verifies with the key of the CVC in 0004.

    This does not check the CVC's own signature (that needs the issuer key; see verify_cvc).
    """
    try:
        outer = tlv.expect(ef0003, T_INTEGRITY)
        items = outer.children()
        if [i.tag for i in items] != [T_DIGEST_NUMBER, T_DIGEST_BASIC4, T_INTEGRITY_SIG]:
            return False
        if items[0].value != hashlib.sha256(bytes(ef0001)).digest():
            return False
        if items[1].value != hashlib.sha256(basic4_signed_range(ef0002)).digest():
            return False
        if not only_filler_after(ef0002, tlv.expect(ef0002, T_BASIC4).end):
            return False          # the card's layout: the object, then FF filler only
        signed = items[0].raw + items[1].raw
        return verify_sha256(cvc_public_key(ef0004), items[2].value, signed)
    except (tlv.TLVError, ValueError):
        return False


# -- EF 0005, 0006, 0007 ----------------------------------------------------------------------

def encode_ap_info(key_id: bytes) -> bytes:
    """`FF 40 82 00 9F { DF41 01030E01, DF42 key id, DF43 82 0080 <128> }` + FF to 256 bytes."""
    if not isinstance(key_id, (bytes, bytearray)) or len(key_id) != KEY_ID_LEN:
        raise ValueError(f"AP info key id must be {KEY_ID_LEN} bytes")
    data43 = hashlib.sha256(bytes(key_id)).digest() + b"\xff" * 96
    return layouts.build(layouts.KENHOJO_AP_INFO, {"id": AP_INFO_ID, "key_id": bytes(key_id),
                                                   "data": data43}, "kenhojo EF 0005")


def parse_ap_info(ef0005: bytes) -> dict:
    """{'id', 'key_id', 'data'} of EF 0005 (layouts.KENHOJO_AP_INFO); ValueError when malformed."""
    info = layouts.parse(layouts.KENHOJO_AP_INFO, ef0005, "kenhojo EF 0005")
    return {"id": info.id, "key_id": info.key_id, "data": info.data}


def encode_session_key(public_key) -> bytes:
    """`A1 82 01 09 90 03 010001 91 82 0100 <256>` (spec §3.2 EF 0006)."""
    check_rsa2048(public_key, "session key")
    return layouts.build(layouts.SESSION_KEY, {"key": {"modulus": public_of(public_key).public_numbers().n}},
                         "kenhojo EF 0006")


def parse_session_key(ef0006: bytes) -> rsa.RSAPublicKey:
    """The public key of EF 0006 (layouts.SESSION_KEY); ValueError (LayoutError) when malformed."""
    key = layouts.parse(layouts.SESSION_KEY, ef0006, "kenhojo EF 0006").key
    return rsa.RSAPublicNumbers(65537, key.modulus).public_key()


def encode_signed_public_key(ap_public_key, signer_key) -> bytes:
    """`FF50 { DF51 key 0013's public key, DF52 signature over the DF51 TLV }` (spec §3.2)."""
    check_rsa2048(ap_public_key, "AP key")
    check_rsa2048(signer_key, "signer key")
    key_tlv = tlv.encode(T_SIGNED_KEY_KEY, tlv.encode_rsa_public_key(ap_public_key))
    return tlv.encode(T_SIGNED_KEY, key_tlv + tlv.encode(T_SIGNED_KEY_SIG, sign_sha256(signer_key, key_tlv)))


def parse_signed_public_key(ef0007: bytes) -> rsa.RSAPublicKey:
    """The AP public key of EF 0007 (not verified; see verify_signed_public_key)."""
    items = tlv.expect(ef0007, T_SIGNED_KEY).children()
    return tlv.decode_rsa_public_key(tlv.find(items, T_SIGNED_KEY_KEY).value)


def verify_signed_public_key(ef0007: bytes, ef0004: bytes) -> bool:
    """DF52 verifies over the DF51 TLV with the key certified in EF 0004."""
    try:
        items = tlv.expect(ef0007, T_SIGNED_KEY).children()
        if [i.tag for i in items] != [T_SIGNED_KEY_KEY, T_SIGNED_KEY_SIG]:
            return False
        tlv.decode_rsa_public_key(items[0].value)
        return verify_sha256(cvc_public_key(ef0004), items[1].value, items[0].raw)
    except (tlv.TLVError, ValueError):
        return False


# -- the DF -----------------------------------------------------------------------------------

def _pin(value: str, pattern: str, what: str) -> bytes:
    if not isinstance(value, str) or re.fullmatch(pattern, value) is None:
        raise ValueError(f"{what} does not match {pattern}")
    return value.encode("ascii")


def build(*, individual_number: str, name: str, address: str, birth: _dt.date, sex: str,
          pin: str, collation_b: str, cvc: bytes, signer_key, ap_key, session_public_key=None,
          session_key=None,
          info_key_id: bytes | None = None, long_form: bool | None = None,
          filler: bool = False) -> Application:
    """The kenhojo DF with the EFs of spec §3.2 and the access rules of §4.3.

    cvc: EF 0004 as made by encode_cvc; signer_key: the private key it certifies (signs
    0003 and 0007); ap_key: key 0013 (stored on the card); session_key: the private
    session-key encryption key (§13.2: EF 0006 holds its public half, the application the
    private half, so SET SESSION KEY works); or session_public_key alone for a card without
    secure messaging (SET SESSION KEY then answers 6985).
    info_key_id: EF 0005 DF42; by default the CVC's 被証明者鍵ID (the §13.1 key id of this
    AP's key, as the issuer wrote it).
    long_form: EF 0002's outer length, None = long form only when needed (spec §13.4).
    collation_b: 照合番号B, 14 digits (era YYMMDD + expiry year + security code, §4.3).
    """
    _check_digits(individual_number, 12, "individual number")
    pin_b = _pin(collation_b, PIN_B_PATTERN, "照合番号B")
    pin_main = _pin(pin, PIN_PATTERN, "kenhojo PIN")
    check_rsa2048(signer_key, "signer key")
    check_rsa2048(ap_key, "AP key 0013")
    if not isinstance(ap_key, rsa.RSAPrivateKey) or not isinstance(signer_key, rsa.RSAPrivateKey):
        raise TypeError("ap_key and signer_key must be private keys")
    try:
        certified = cvc_public_key(cvc)
    except (tlv.TLVError, ValueError) as exc:
        raise ValueError(f"cvc is not a card-verifiable certificate: {exc}") from None
    if len(cvc) != SIZE_CVC:
        raise ValueError(f"cvc is {len(cvc)} bytes, EF 0004 holds {SIZE_CVC}")
    if not same_public_key(certified, signer_key):
        raise ValueError("signer_key is not the key certified by the CVC")
    if info_key_id is None:
        info_key_id = parse_cvc(cvc).subject_key_id   # §13.1: DF42 is this AP's key id
    if session_key is not None:
        check_rsa2048(session_key, "session key")
        if not isinstance(session_key, rsa.RSAPrivateKey):
            raise TypeError("session_key must be a private key (the card decrypts with it)")
        if session_public_key is not None and not same_public_key(session_key, session_public_key):
            raise ValueError("session_public_key is not the public half of session_key")
        session_public_key = session_key.public_key()
    elif session_public_key is None:
        raise TypeError("build() needs session_key (or session_public_key for a card without SM)")

    ef1 = encode_my_number(individual_number)
    ef2 = encode_basic4(name=name, address=address, birth=birth, sex=sex, long_form=long_form)
    app = Application(NAME, AID, {}, sm_key_pem=key_pem(session_key) if session_key is not None else None)
    contents = {
        EF_MY_NUMBER: (ef1, "個人番号"),
        EF_BASIC4: (with_filler(ef2) if filler else ef2, "基本4情報"),   # §13.3 filler
        EF_INTEGRITY: (encode_integrity(ef1, ef2, signer_key), "integrity record"),
        EF_CVC: (bytes(cvc), "CVC"),
        EF_AP_INFO: (encode_ap_info(info_key_id), "AP basic info"),
        EF_SESSION_KEY: (encode_session_key(session_public_key), "session-key public key"),
        EF_AP_PUBLIC_KEY: (encode_signed_public_key(ap_key.public_key(), signer_key),
                           "AP public key, signed"),
        EF_0008: (b"\xff" * 16, "unknown (16 x FF)"),
    }
    for fid, (data, label) in contents.items():
        app.add(BinaryEF(fid, data, ACCESS[fid], label))
    app.add(PinEF(PIN_MAIN, pin_main, PIN_MAX_TRIES, PIN_MAX_TRIES, PIN_PATTERN, "iso",
                  "券面事項入力補助用暗証番号"))
    # §3.2 [S]: 0012 answers 63C0 / 6984 from issue; nothing ever sets a value.
    app.add(PinEF(PIN_BLOCKED, b"", PIN_MAX_TRIES, 0, PIN_PATTERN, "none", "blocked key reference"))
    app.add(KeyEF(KEY_AP, key_pem(ap_key), FREE, ("sign",), True, "AP signing key"))
    app.add(PinEF(PIN_A, individual_number.encode("ascii"), COLLATION_MAX_TRIES,
                  COLLATION_MAX_TRIES, PIN_A_PATTERN, "none", "照合番号A"))
    app.add(PinEF(PIN_B, pin_b, COLLATION_MAX_TRIES, COLLATION_MAX_TRIES, PIN_B_PATTERN, "none",
                  "照合番号B"))
    for fid in UNKNOWN_EFS:
        app.add(OpaqueEF(fid, "exists, purpose unknown (§13.3)"))
    return app

"""公的個人認証AP (JPKI-AP): layout, the token-info and availability formats, and the DF builder.

Spec §3.1 gives the EFs, §4.1 the PINs, §5.1 the keys. Certificate EFs hold the DER object
exactly, with no filler after it (§3.1 leaves filler [U]; READ BINARY answers short reads
and 6B00 past the end, which every client copes with).

Decisions on [U] points:
- No signing certificate (holders under 15 or 成年被後見人, rules ELIG-2): EF 0001 and key
  001A are absent, EF 0008 byte 0 is 00, but PIN 001B still exists and is blocked (0 of 5
  tries left, no value), because no signing password was ever set and OpenSC's PKCS#15 bind
  aborts unless the retry query of 001B answers 63Cn (§4.2, §10.1).
- EF 0009 (protected, purpose unknown) holds 32 bytes derived from the token serial and can
  never be read. Key references 0010 and 0016 exist as inert key EFs (no operation, use
  never); they hold a private key only because the image format requires one.
- EFs 0005, 0019, 001C and 001E exist on the card though their use is unknown (§13.3: SELECT
  answers 9000, not 6A82): opaque EFs, whose READ BINARY/RECORD answer the card option
  `unknown_ef_sw` (6981 by default, card/image.py).
- Token info (EF 0006): manufacturerID is 32 ASCII digits, model `E16R01NJ` (the value seen
  on a card), session counts 1/0/1/0 as in the surveyed layout; utcTime is
  `YYYYMMDDhhmmss00` (PKCS#11) of the personalisation time in UTC.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import re

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

from mynaemu.card import layouts
from mynaemu.card.crypto import check_rsa2048, key_pem, same_public_key
from mynaemu.card.image import FREE, NEVER, Application, BinaryEF, KeyEF, OpaqueEF, PinEF
from mynaemu.card.aid import AID as _AID
from mynaemu.card.ids import JPKI_UNKNOWN_EFS, JpkiEF, JpkiKey, JpkiPin

AID = _AID.JPKI
NAME = "jpki"

EF_SIGN_CERT = JpkiEF.SIGN_CERT
EF_SIGN_CA = JpkiEF.SIGN_CA
EF_TOKEN = JpkiEF.TOKEN
EF_AVAILABILITY = JpkiEF.AVAILABILITY
EF_PROTECTED = JpkiEF.PROTECTED
EF_AUTH_CERT = JpkiEF.AUTH_CERT
EF_AUTH_CA = JpkiEF.AUTH_CA
KEY_INTERNAL = JpkiKey.INTERNAL
UNKNOWN_EFS = JPKI_UNKNOWN_EFS     # exist, use unknown (§13.3, JSAPDU UNKNOWN_*)
KEY_TERMINAL_CA = JpkiKey.TERMINAL_CA
KEY_AUTH = JpkiKey.AUTH
PIN_AUTH = JpkiPin.AUTH
KEY_SIGN = JpkiKey.SIGN
PIN_SIGN = JpkiPin.SIGN

AUTH_PIN_PATTERN = "[0-9]{4}"
SIGN_PIN_PATTERN = "[A-Z0-9]{6,16}"
AUTH_PIN_TRIES = 3
SIGN_PIN_TRIES = 5

TOKEN_LABEL = "JPKIAPICCTOKEN2"
TOKEN_SIZE = 160
TOKEN_FLAGS = 0x0000040D  # RNG | LOGIN_REQUIRED | USER_PIN_INITIALIZED | TOKEN_INITIALIZED
TOKEN_MODEL = "E16R01NJ"
TOKEN_MANUFACTURER = "0" * 31 + "1"
AVAILABLE = 0x8F


# -- EF 0006: token info ----------------------------------------------------------------------

def encode_token_info(*, serial: str, time: _dt.datetime, label: str = TOKEN_LABEL,
                      manufacturer: str = TOKEN_MANUFACTURER, model: str = TOKEN_MODEL) -> bytes:
    """A 160-byte PKCS#11 CK_TOKEN_INFO with 32-bit big-endian CK_ULONGs (spec §3.1).

    The layout is layouts.TOKEN_INFO (the one the client parses with); ValueError (LayoutError)
    names the field that does not fit.
    """
    if not isinstance(time, _dt.datetime):
        raise TypeError("token time must be a datetime")
    if time.tzinfo is not None:
        time = time.astimezone(_dt.timezone.utc)
    return layouts.build(layouts.TOKEN_INFO, {
        "label": label, "manufacturer": manufacturer, "model": model, "serial": serial,
        "flags": TOKEN_FLAGS,
        "sessions": (1, 0, 1, 0),               # max/current sessions, max/current RW
        "max_pin_len": 16, "min_pin_len": 6,
        "memory": (0xFFFFFFFF,) * 4,            # unavailable information
        "hw_version": "03", "fw_version": "01",
        "utc_time": time.strftime("%Y%m%d%H%M%S") + "00",
    }, "JPKI EF 0006 token info")


def parse_token_info(ef0006: bytes) -> dict:
    """Fields of EF 0006 (layouts.TOKEN_INFO); ValueError (LayoutError) when it is not that."""
    info = layouts.parse(layouts.TOKEN_INFO, ef0006, "JPKI EF 0006 token info")
    return {
        "label": info.label, "manufacturer": info.manufacturer, "model": info.model,
        "serial": info.serial, "flags": info.flags, "sessions": tuple(info.sessions),
        "max_pin_len": info.max_pin_len, "min_pin_len": info.min_pin_len,
        "memory": tuple(info.memory), "hw_version": info.hw_version,
        "fw_version": info.fw_version, "utc_time": info.utc_time,
    }


# -- EF 0008: availability --------------------------------------------------------------------

def encode_availability(*, has_sign_cert: bool) -> bytes:
    """`8F 8F 00`; byte 0 (signing certificate) is 00 when there is none (spec §3.1)."""
    return bytes([AVAILABLE if has_sign_cert else 0x00, AVAILABLE, 0x00])


# -- the DF -----------------------------------------------------------------------------------

def _check_cert(der: bytes, what: str, key=None) -> bytes:
    """A DER certificate whose header length covers it exactly; its key must match `key`."""
    if not isinstance(der, (bytes, bytearray)) or len(der) < 4 or der[0] != 0x30 or der[1] != 0x82:
        raise ValueError(f"{what}: not a DER certificate (expected 30 82 LL LL ...)")
    declared = int.from_bytes(der[2:4], "big") + 4
    if declared != len(der):
        raise ValueError(f"{what}: DER header says {declared} bytes, got {len(der)}")
    try:
        cert = x509.load_der_x509_certificate(bytes(der))
    except ValueError as exc:
        raise ValueError(f"{what}: not a parseable certificate: {exc}") from None
    if key is not None and not same_public_key(cert.public_key(), key):
        raise ValueError(f"{what}: certificate does not hold the public half of the given key")
    return bytes(der)


def _check_pin(value, pattern: str, what: str) -> bytes:
    if not isinstance(value, str) or re.fullmatch(pattern, value) is None:
        raise ValueError(f"{what} does not match {pattern}")
    return value.encode("ascii")


def build(*, auth_cert_der: bytes, auth_ca_der: bytes, sign_ca_der: bytes, auth_key,
          auth_pin: str, sign_cert_der: bytes | None = None, sign_key=None,
          sign_pin: str | None = None, token_serial: str, token_time: _dt.datetime,
          inert_key=None) -> Application:
    """The JPKI DF of spec §3.1 with its PINs (§4.1) and keys (§5.1).

    sign_cert_der, sign_key and sign_pin come together or not at all (ELIG-2: no signing
    certificate). inert_key: the private key stored in the inert key references 0010 and
    0016; None generates a fresh RSA-2048 key.
    """
    given = [sign_cert_der is not None, sign_key is not None, sign_pin is not None]
    if any(given) and not all(given):
        raise ValueError("sign_cert_der, sign_key and sign_pin must be given together or not at all")
    has_sign = all(given)
    check_rsa2048(auth_key, "auth key")
    if not isinstance(auth_key, rsa.RSAPrivateKey):
        raise TypeError("auth_key must be a private key")
    auth_pin_b = _check_pin(auth_pin, AUTH_PIN_PATTERN, "auth PIN")
    app = Application(NAME, AID, {})
    if has_sign:
        check_rsa2048(sign_key, "sign key")
        if not isinstance(sign_key, rsa.RSAPrivateKey):
            raise TypeError("sign_key must be a private key")
        sign_pin_b = _check_pin(sign_pin, SIGN_PIN_PATTERN, "signing password")
        app.add(BinaryEF(EF_SIGN_CERT, _check_cert(sign_cert_der, "sign cert", sign_key),
                         (PIN_SIGN,), "署名用電子証明書"))
    app.add(BinaryEF(EF_SIGN_CA, _check_cert(sign_ca_der, "sign CA cert"), FREE, "署名用CA証明書"))
    app.add(BinaryEF(EF_TOKEN, encode_token_info(serial=token_serial, time=token_time), FREE,
                     "token info"))
    app.add(BinaryEF(EF_AVAILABILITY, encode_availability(has_sign_cert=has_sign), FREE,
                     "certificate availability"))
    filler = hashlib.sha256(b"mynaemu/jpki/0009/" + token_serial.encode("ascii")).digest()
    app.add(BinaryEF(EF_PROTECTED, filler, NEVER, "protected, purpose unknown"))
    app.add(BinaryEF(EF_AUTH_CERT, _check_cert(auth_cert_der, "auth cert", auth_key), FREE,
                     "利用者証明用電子証明書"))
    app.add(BinaryEF(EF_AUTH_CA, _check_cert(auth_ca_der, "auth CA cert"), FREE, "利用者証明用CA証明書"))
    for fid in UNKNOWN_EFS:
        app.add(OpaqueEF(fid, "exists, use unknown (§13.3)"))
    if inert_key is None:
        inert_key = rsa.generate_private_key(65537, 2048)
    check_rsa2048(inert_key, "inert key")
    inert_pem = key_pem(inert_key)
    app.add(KeyEF(KEY_INTERNAL, inert_pem, NEVER, (), False, "key reference, purpose unknown"))
    app.add(KeyEF(KEY_TERMINAL_CA, inert_pem, NEVER, (), False, "terminal-CA key reference"))
    app.add(KeyEF(KEY_AUTH, key_pem(auth_key), (PIN_AUTH,), ("sign",), False, "利用者証明用秘密鍵"))
    app.add(PinEF(PIN_AUTH, auth_pin_b, AUTH_PIN_TRIES, AUTH_PIN_TRIES, AUTH_PIN_PATTERN, "iso",
                  "利用者証明用暗証番号"))
    if has_sign:
        app.add(KeyEF(KEY_SIGN, key_pem(sign_key), (PIN_SIGN,), ("sign",), False, "署名用秘密鍵"))
        app.add(PinEF(PIN_SIGN, sign_pin_b, SIGN_PIN_TRIES, SIGN_PIN_TRIES, SIGN_PIN_PATTERN,
                      "iso", "署名用パスワード"))
    else:
        # Blocked from issue: the retry query answers 63C0 and VERIFY 6984 (§4.2).
        app.add(PinEF(PIN_SIGN, b"", SIGN_PIN_TRIES, 0, SIGN_PIN_PATTERN, "none",
                      "署名用パスワード (no signing certificate: never set, blocked)"))
    return app

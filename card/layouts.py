"""The card files' fixed binary layouts, declared once with `construct` for building and parsing.

Each layout below is one `construct` declaration that the card's personalisation builds with
(card/apps/*.py encode_*) and that every parser reads with (card/apps/*.py parse_*, the terminal
client tools/terminal/client.py and tools/terminal/sm.py). A layout is "fixed" when every length in it is
known in advance: the TLV headers inside it are then constants of the layout (`Const`), written
exactly as the card writes them, and a byte that differs is a precise error, not a guess.

Layouts with lengths that depend on the content (基本4情報 with its DF21 offset table and its
short/long outer length, the card face, certificates, the signed records, the CVC's 7F21
wrapper) stay with card/tlv.py, whose hand-written BER lengths are the point there.

All layouts live in this one module rather than next to each application because the client
side (mynaemu.tools) must parse with the very same declarations, and the 住基/共通 APs, kenhojo
and kenkaku share pieces (the RSA key form, 16-byte key ids, the municipality code).

Errors: `parse` and `build` raise `LayoutError` (a ValueError) whose one-line message names
the layout, the field and what was wrong; no construct exception leaks out of them.

Nothing here runs per APDU: the card builds these bytes at personalisation (card/apps build)
and serves the stored bytes; only clients and verifiers parse them.
"""
from __future__ import annotations

import datetime as _dt

import construct as cs

__all__ = ["LayoutError", "parse", "build", "TOKEN_LABEL", "TOKEN_INFO", "CARD_INFO", "MY_NUMBER",
           "RSA_PUBLIC_KEY", "CVC_BODY", "SESSION_KEY", "KENHOJO_AP_INFO", "KENKAKU_AP_INFO"]


class LayoutError(ValueError):
    """Bytes (or values) that do not fit a fixed layout; the message says which field and why."""


# -- field types ----------------------------------------------------------------------------

class _Text(cs.Adapter):
    """Printable ASCII, at most n characters, padded with spaces to n (PKCS#11 blank padding).

    Parsing strips the trailing spaces. Only spaces pad (§3.1: the label is padded with 0x20);
    a NUL or any other byte outside 20..7E is refused, so every parsed value builds back to
    the very bytes it came from.
    """

    def __init__(self, n: int):
        super().__init__(cs.Bytes(n))
        self.n = n

    def _decode(self, obj, context, path):
        text = bytes(obj).rstrip(b" ")
        if any(not 0x20 <= b < 0x7F for b in text):
            raise cs.ValidationError(f"not printable ASCII: {bytes(obj)!r}", path=path)
        return text.decode("ascii")

    def _encode(self, obj, context, path):
        if (not isinstance(obj, str) or len(obj) > self.n
                or any(not 0x20 <= ord(c) < 0x7F for c in obj)):
            raise cs.ValidationError(f"must be at most {self.n} printable ASCII characters, "
                                     f"got {obj!r}", path=path)
        return obj.encode("ascii").ljust(self.n, b" ")


class _Digits(cs.Adapter):
    """Exactly n ASCII digits, as a str."""

    def __init__(self, n: int):
        super().__init__(cs.Bytes(n))
        self.n = n

    def _decode(self, obj, context, path):
        obj = bytes(obj)
        if not obj.isdigit():
            raise cs.ValidationError(f"must be {self.n} ASCII digits, got {obj!r}", path=path)
        return obj.decode("ascii")

    def _encode(self, obj, context, path):
        if not isinstance(obj, str) or len(obj) != self.n or not obj.isascii() or not obj.isdigit():
            raise cs.ValidationError(f"must be {self.n} ASCII digits, got {obj!r}", path=path)
        return obj.encode("ascii")


class _Date8(cs.Adapter):
    """A calendar date written YYYYMMDD in ASCII, as a datetime.date."""

    def __init__(self):
        super().__init__(cs.Bytes(8))

    def _decode(self, obj, context, path):
        obj = bytes(obj)
        try:
            if not obj.isdigit():
                raise ValueError
            return _dt.date(int(obj[:4]), int(obj[4:6]), int(obj[6:]))
        except ValueError:
            raise cs.ValidationError(f"is not a YYYYMMDD date: {obj!r}", path=path) from None

    def _encode(self, obj, context, path):
        if not isinstance(obj, _dt.date) or not 1 <= obj.year <= 9999:
            raise cs.ValidationError(f"must be a datetime.date, got {obj!r}", path=path)
        return f"{obj.year:04d}{obj.month:02d}{obj.day:02d}".encode("ascii")


class _Modulus2048(cs.Adapter):
    """An RSA-2048 modulus: 256 big-endian bytes, top bit set, odd (spec §5.1)."""

    def __init__(self):
        super().__init__(cs.Bytes(256))

    def _decode(self, obj, context, path):
        n = int.from_bytes(bytes(obj), "big")
        self._check(n, path)
        return n

    def _encode(self, obj, context, path):
        if not isinstance(obj, int) or isinstance(obj, bool):
            raise cs.ValidationError(f"modulus must be an int, got {type(obj).__name__}", path=path)
        self._check(obj, path)
        return obj.to_bytes(256, "big")

    @staticmethod
    def _check(n: int, path) -> None:
        if n.bit_length() != 2048 or n % 2 == 0:
            raise cs.ValidationError(f"not an odd 2048-bit RSA modulus ({n.bit_length()} bits)",
                                     path=path)


def _bytes(n: int):
    """Exactly n bytes (a key id, a hash): building refuses any other length."""
    return cs.Bytes(n)


# -- JPKI-AP EF 0006: token information (spec §3.1) -----------------------------------------

# The label alone: clients read only these 32 bytes (Le=20, §3.1 "Clients read EF 0006").
TOKEN_LABEL = _Text(32)

# A PKCS#11 CK_TOKEN_INFO with 32-bit big-endian CK_ULONGs, 160 bytes (§3.1, field offsets as
# there: label 0, manufacturer 32, model 64, serial 80, flags 96, sessions 100..112, PIN
# lengths 116/120, memory 124..136, versions 140/142, utcTime 144).
TOKEN_INFO = cs.Struct(
    "label" / TOKEN_LABEL,
    "manufacturer" / _Text(32),
    "model" / _Text(16),
    "serial" / _Text(16),
    "flags" / cs.Int32ub,
    "sessions" / cs.Array(4, cs.Int32ub),    # max, current, max RW, current RW
    "max_pin_len" / cs.Int32ub,
    "min_pin_len" / cs.Int32ub,
    "memory" / cs.Array(4, cs.Int32ub),      # total/free public, total/free private
    "hw_version" / _Text(2),
    "fw_version" / _Text(2),
    "utc_time" / _Digits(16),                # YYYYMMDDhhmmss00
)

# -- 共通カードAP / 住基AP EF 0001 record 1: card info (spec §3.4) ---------------------------------

# JICSAP simple-TLV `01 1C` + 15-digit serial + 5-digit 全国地方公共団体コード + expiry YYYYMMDD.
CARD_INFO = cs.Struct(
    cs.Const(b"\x01\x1c"),
    "serial" / _Digits(15),
    "municipality_code" / _Digits(5),
    "expiry" / _Date8(),
)

# -- kenhojo EF 0001: 個人番号 (spec §3.2) -------------------------------------------------------

# `FF 10 0C` + 12 ASCII digits + `FF FF` filler: 17 bytes.
MY_NUMBER = cs.Struct(
    cs.Const(b"\xff\x10\x0c"),
    "number" / _Digits(12),
    cs.Const(b"\xff\xff"),
)

# -- RSA-2048 public keys as the 券面 APs write them (spec §3.2, §3.3) ---------------------------

# `90 03 01 00 01 91 82 01 00 <256-byte modulus>`: e = 65537 always (§5.1), 265 bytes.
RSA_PUBLIC_KEY = cs.Struct(
    cs.Const(bytes.fromhex("9003010001")),
    cs.Const(bytes.fromhex("91820100")),
    "modulus" / _Modulus2048(),
)

# kenhojo EF 0004 (and kenkaku 0004, MF 7F21) CVC body, the 297-byte 5F4E value that is signed:
# 証明者鍵ID (16) ‖ 被証明者鍵ID (16) ‖ the subject's RSA public key (§3.2 EF 0004).
CVC_BODY = cs.Struct(
    "issuer_key_id" / _bytes(16),
    "subject_key_id" / _bytes(16),
    "key" / RSA_PUBLIC_KEY,
)

# kenhojo EF 0006: the session-key encryption key, `A1 82 01 09` + the key (§3.2, §13.2).
SESSION_KEY = cs.Struct(
    cs.Const(bytes.fromhex("A1820109")),
    "key" / RSA_PUBLIC_KEY,
)

# -- AP basic info (spec §3.2 kenhojo EF 0005, §3.3 kenkaku EF 0003) ---------------------------

# kenhojo EF 0005: `FF 40 82 00 9F { DF41 04 id, DF42 10 key id, DF43 82 00 80 <128> }` then FF
# filler to 256 bytes (§3.2: the file is 256 bytes; the 82-form headers are the [U] decision
# recorded in card/apps/kenhojo.py).
KENHOJO_AP_INFO = cs.Struct(
    cs.Const(bytes.fromhex("FF4082009F")),
    cs.Const(bytes.fromhex("DF4104")), "id" / _bytes(4),         # spec version, ext. APDU, vendor, option
    cs.Const(bytes.fromhex("DF4210")), "key_id" / _bytes(16),
    cs.Const(bytes.fromhex("DF43820080")), "data" / _bytes(128),
    cs.Const(b"\xff" * 92),                                     # filler (§13.3)
)

# kenkaku EF 0003: `FF 30 82 01 3B { DF31 04 id, DF32 10 key id, DF33 01 version, DF34 05 city,
# DF35 82 01 10 issuer key id (16) + 256 opaque bytes }`, 320 bytes (§3.3, §13.1).
KENKAKU_AP_INFO = cs.Struct(
    cs.Const(bytes.fromhex("FF3082013B")),
    cs.Const(bytes.fromhex("DF3104")), "id" / _bytes(4),
    cs.Const(bytes.fromhex("DF3210")), "key_id" / _bytes(16),
    cs.Const(bytes.fromhex("DF3301")), "version" / cs.Int8ub,
    cs.Const(bytes.fromhex("DF3405")), "municipality_code" / _Digits(5),
    cs.Const(bytes.fromhex("DF35820110")), "issuer_key_id" / _bytes(16), "blob" / _bytes(256),
)


# -- the two entry points -------------------------------------------------------------------

def _message(what: str, exc: Exception) -> str:
    text = str(exc).strip()
    path = getattr(exc, "path", None)
    if text.startswith("Error in path"):
        text = text.split("\n", 1)[1] if "\n" in text else ""
    field = ""
    if path and "->" in path:
        field = " ".join(p.strip() for p in path.split("->")[1:])
    where = f"{what} {field}".strip()
    return f"{where}: {text or type(exc).__name__}".replace("\n", " ")


def parse(layout, data, what: str):
    """The values of `data` under `layout`; the bytes must fill it exactly.

    Raises LayoutError naming `what` (e.g. "JPKI EF 0006") and the field.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise LayoutError(f"{what}: expected bytes, got {type(data).__name__}")
    data = bytes(data)
    size = layout.sizeof()
    if len(data) != size:
        raise LayoutError(f"{what} is {len(data)} bytes, expected {size}")
    try:
        return layout.parse(data)
    except cs.ConstructError as exc:
        raise LayoutError(_message(what, exc)) from None


def build(layout, values, what: str) -> bytes:
    """The bytes of `values` under `layout`; LayoutError when a value does not fit its field."""
    try:
        out = layout.build(values)
    except cs.ConstructError as exc:
        raise LayoutError(_message(what, exc)) from None
    except KeyError as exc:
        raise LayoutError(f"{what}: missing field {exc.args[0]}") from None
    except (TypeError, AttributeError) as exc:
        raise LayoutError(f"{what}: {exc}") from None
    return out

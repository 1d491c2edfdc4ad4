"""BER-TLV and JICSAP simple-TLV encoding and decoding for the card's EF contents.

The 券面 APs store their EFs as BER-TLV with private-class two-byte tags (`FF20`
constructed, `DF21` primitive), application tags (`7F21`, `5F4E`) and context tags `90`/`91`
for RSA public keys; the 共通/住基 record EFs hold JICSAP simple-TLV (spec §3 "Format rules").

Tags are handled as integers whose big-endian bytes are the tag as written on the card
(0xFF20 is `FF 20`, 0x90 is `90`). Lengths use the short form below 128 and the long forms
`81 xx`, `82 xx xx`, `83 xx xx xx` above it; a caller can force a wider form where the card
is known to use one (e.g. the kenhojo EF 0005 header `FF 40 82 00 9F`, spec §3.2).

This module stays hand-written on purpose: where a length depends on the content (基本4情報
with its short or long outer length, §13.4; the card face; certificates; signed records;
the CVC wrapper), the card must emit one exact BER length form, not whichever form a library
picks (BER allows several for the same length, and clients that read byte 2 as the length
break on the wrong one). Layouts whose every length is fixed are declared once with
`construct` in card/layouts.py instead, their TLV headers written there as constants.
"""
from __future__ import annotations

import dataclasses

from cryptography.hazmat.primitives.asymmetric import rsa

from mynaemu.card import layouts


class TLVError(ValueError):
    """Bytes that are not the TLV structure expected; the message says where and why."""


@dataclasses.dataclass(frozen=True)
class TLV:
    """One decoded data object. `offset`..`end` are positions in the buffer it came from."""

    tag: int
    value: bytes
    offset: int       # position of the first tag byte
    header_len: int   # tag + length bytes
    raw: bytes        # tag, length and value exactly as encoded

    @property
    def end(self) -> int:
        return self.offset + len(self.raw)

    @property
    def constructed(self) -> bool:
        return is_constructed(self.tag)

    def children(self) -> list["TLV"]:
        """The data objects inside a constructed TLV (offsets relative to the value)."""
        if not self.constructed:
            raise TLVError(f"tag {self.tag:X} is primitive; it has no children")
        return decode_all(self.value, stop_at_filler=False)


# -- BER-TLV ----------------------------------------------------------------------------------

def tag_bytes(tag: int) -> bytes:
    """The bytes of a tag given as an integer, checked for BER well-formedness."""
    if tag < 0:
        raise TLVError(f"negative tag {tag}")
    raw = tag.to_bytes(max(1, (tag.bit_length() + 7) // 8), "big")
    first = raw[0]
    if len(raw) == 1:
        if first & 0x1F == 0x1F:
            raise TLVError(f"tag {tag:02X} announces more tag bytes but has none")
        return raw
    if first & 0x1F != 0x1F:
        raise TLVError(f"tag {tag:X}: first byte {first:02X} does not announce a multi-byte tag")
    for b in raw[1:-1]:
        if not b & 0x80:
            raise TLVError(f"tag {tag:X}: inner byte {b:02X} lacks the continuation bit")
    if raw[-1] & 0x80:
        raise TLVError(f"tag {tag:X}: last byte {raw[-1]:02X} has the continuation bit")
    return raw


def is_constructed(tag: int) -> bool:
    """Bit 6 of the first tag byte (e.g. FF20, 7F21, A1 are constructed; DF21, 90 are not)."""
    first = tag.to_bytes(max(1, (tag.bit_length() + 7) // 8), "big")[0]
    return bool(first & 0x20)


def encode_length(n: int, width: int | None = None) -> bytes:
    """BER length. width None: shortest form; 0: short form; 1..4: `8w` + w bytes."""
    if n < 0:
        raise TLVError(f"negative length {n}")
    if width is None:
        if n < 0x80:
            return bytes([n])
        width = (n.bit_length() + 7) // 8
    if width == 0:
        if n >= 0x80:
            raise TLVError(f"length {n} does not fit the short form")
        return bytes([n])
    if not 1 <= width <= 4:
        raise TLVError(f"length width {width} not supported (1..4)")
    if n >= 1 << (8 * width):
        raise TLVError(f"length {n} does not fit in {width} bytes")
    return bytes([0x80 | width]) + n.to_bytes(width, "big")


def encode(tag: int, value: bytes, *, length_width: int | None = None) -> bytes:
    """One TLV: tag, length (shortest form unless `length_width` is given), value."""
    value = bytes(value)
    return tag_bytes(tag) + encode_length(len(value), length_width) + value


def _read_tag(data: bytes, pos: int) -> tuple[int, int]:
    if pos >= len(data):
        raise TLVError(f"offset {pos}: no tag byte (buffer is {len(data)} bytes)")
    start = pos
    first = data[pos]
    pos += 1
    if first & 0x1F == 0x1F:
        while True:
            if pos >= len(data):
                raise TLVError(f"offset {start}: tag runs past the end of the buffer")
            b = data[pos]
            pos += 1
            if not b & 0x80:
                break
            if pos - start > 4:
                raise TLVError(f"offset {start}: tag longer than 4 bytes")
    return int.from_bytes(data[start:pos], "big"), pos


def _read_length(data: bytes, pos: int) -> tuple[int, int]:
    if pos >= len(data):
        raise TLVError(f"offset {pos}: no length byte")
    first = data[pos]
    pos += 1
    if first < 0x80:
        return first, pos
    width = first & 0x7F
    if width == 0:
        raise TLVError(f"offset {pos - 1}: indefinite length (80) is not used on this card")
    if width > 4:
        raise TLVError(f"offset {pos - 1}: length field of {width} bytes")
    if pos + width > len(data):
        raise TLVError(f"offset {pos - 1}: length field runs past the end of the buffer")
    return int.from_bytes(data[pos:pos + width], "big"), pos + width


def decode_header(data: bytes, offset: int = 0) -> tuple[int, int, int]:
    """(tag, header length, value length) of the TLV at `offset`; the value need not be there.

    A client sizes an EF's object from its first bytes before reading the rest (spec §6 item 6).
    """
    data = bytes(data)
    tag, pos = _read_tag(data, offset)
    length, pos = _read_length(data, pos)
    return tag, pos - offset, length


def decode_one(data: bytes, offset: int = 0) -> TLV:
    """Decode the TLV starting at `offset`; its value must lie inside `data`."""
    data = bytes(data)
    tag, header_len, length = decode_header(data, offset)
    pos = offset + header_len
    if pos + length > len(data):
        raise TLVError(f"offset {offset}: tag {tag:X} claims {length} value bytes, "
                       f"only {len(data) - pos} remain")
    return TLV(tag, data[pos:pos + length], offset, pos - offset, data[offset:pos + length])


def _is_filler(rest: bytes) -> bool:
    # JICSAP EFs are padded with FF (kenhojo 0001/0005, spec §3.2) or left as 00.
    return bool(rest) and (set(rest) <= {0xFF} or set(rest) <= {0x00})


def decode_all(data: bytes, *, stop_at_filler: bool = True) -> list[TLV]:
    """Decode consecutive TLVs. With stop_at_filler, a tail of all-FF or all-00 ends the list."""
    data = bytes(data)
    out: list[TLV] = []
    pos = 0
    while pos < len(data):
        if stop_at_filler and _is_filler(data[pos:]):
            break
        item = decode_one(data, pos)
        out.append(item)
        pos = item.end
    return out


def find(items, tag: int) -> TLV:
    """The first TLV with `tag` in a list of TLVs (or in a buffer, decoded first)."""
    if isinstance(items, (bytes, bytearray, memoryview)):
        items = decode_all(bytes(items))
    for item in items:
        if item.tag == tag:
            return item
    raise TLVError(f"tag {tag:X} not found")


def expect(data: bytes, tag: int) -> TLV:
    """Decode the first TLV of `data` and check its tag (trailing filler is allowed)."""
    item = decode_one(data, 0)
    if item.tag != tag:
        raise TLVError(f"expected tag {tag:X}, found {item.tag:X}")
    return item


# -- filler after an object (§13.3) -----------------------------------------------------------

def with_filler(obj: bytes, unit: int = 256) -> bytes:
    """`obj` followed by FF filler up to the next multiple of `unit` (at least one byte, §13.3)."""
    obj = bytes(obj)
    return obj + b"\xff" * (unit - len(obj) % unit)


def only_filler_after(data: bytes, end: int) -> bool:
    """True when everything after the object (from `end`) is FF filler (§13.3)."""
    return all(b == 0xFF for b in data[end:])


# -- JICSAP simple-TLV ------------------------------------------------------------------------

def encode_simple(tag: int, value: bytes) -> bytes:
    """Simple-TLV (ISO 7816-4 5.2.1 / JICSAP): 1-byte tag 01..FE, length 1 byte or FF+2 bytes."""
    value = bytes(value)
    if not 0x01 <= tag <= 0xFE:
        raise TLVError(f"simple-TLV tag {tag:#x} out of range 01..FE")
    n = len(value)
    if n < 0xFF:
        return bytes([tag, n]) + value
    if n <= 0xFFFF:
        return bytes([tag, 0xFF]) + n.to_bytes(2, "big") + value
    raise TLVError(f"simple-TLV value of {n} bytes is too long (max 65535)")


def decode_simple(data: bytes, offset: int = 0) -> TLV:
    data = bytes(data)
    if offset + 2 > len(data):
        raise TLVError(f"offset {offset}: simple-TLV needs at least 2 bytes")
    tag = data[offset]
    if tag in (0x00, 0xFF):
        raise TLVError(f"offset {offset}: simple-TLV tag {tag:02X} is not a data object")
    pos = offset + 1
    length = data[pos]
    pos += 1
    if length == 0xFF:
        if pos + 2 > len(data):
            raise TLVError(f"offset {offset}: three-byte simple-TLV length truncated")
        length = int.from_bytes(data[pos:pos + 2], "big")
        pos += 2
    if pos + length > len(data):
        raise TLVError(f"offset {offset}: simple-TLV tag {tag:02X} claims {length} bytes, "
                       f"only {len(data) - pos} remain")
    return TLV(tag, data[pos:pos + length], offset, pos - offset, data[offset:pos + length])


def decode_simple_all(data: bytes) -> list[TLV]:
    """Consecutive simple-TLVs; a tag byte of 00 or FF ends the list (unused space)."""
    data = bytes(data)
    out: list[TLV] = []
    pos = 0
    while pos < len(data) and data[pos] not in (0x00, 0xFF):
        item = decode_simple(data, pos)
        out.append(item)
        pos = item.end
    return out


# -- RSA public keys as the 券面 APs write them ------------------------------------------------

TAG_RSA_EXPONENT = 0x90
TAG_RSA_MODULUS = 0x91


def encode_rsa_public_key(public_key) -> bytes:
    """`90 03 01 00 01 91 82 01 00 <256-byte modulus>` (265 bytes), spec §3.2/§3.3.

    A fixed layout: the bytes come from card/layouts.RSA_PUBLIC_KEY (RSA-2048, e = 65537,
    §5.1), the declaration the CVC body and kenhojo EF 0006 use too.
    """
    if isinstance(public_key, rsa.RSAPrivateKey):
        public_key = public_key.public_key()
    if not isinstance(public_key, rsa.RSAPublicKey):
        raise TypeError(f"expected an RSA key, got {type(public_key).__name__}")
    numbers = public_key.public_numbers()
    if numbers.e != 65537:
        raise TLVError(f"RSA public key: exponent must be 65537, got {numbers.e}")
    try:
        return layouts.build(layouts.RSA_PUBLIC_KEY, {"modulus": numbers.n}, "RSA public key")
    except layouts.LayoutError as exc:
        raise TLVError(str(exc)) from None


def decode_rsa_public_key(data: bytes) -> rsa.RSAPublicKey:
    """Inverse of encode_rsa_public_key (card/layouts.RSA_PUBLIC_KEY); TLVError when malformed."""
    try:
        modulus = layouts.parse(layouts.RSA_PUBLIC_KEY, data, "RSA public key").modulus
    except layouts.LayoutError as exc:
        raise TLVError(str(exc)) from None
    return rsa.RSAPublicNumbers(65537, modulus).public_key()

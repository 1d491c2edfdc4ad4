"""ATR profiles of the Individual Number Card (card-interface.md §1.2, §13.3) and an ISO/IEC
7816-3 ATR parser that checks their structure and TCK.

No single ATR satisfies every client (§1.2 "Emulator consequence"), so a card image names a
profile (`mynaemu card create --atr NAME`, overridable per session with `card serve --atr NAME`).
Every profile is an ATR seen on real cards or synthesised by a real reader; where each comes
from is in PROFILES and docs/atr-profiles.md. The TCK of each is checked by `parse` (and by
tests/test_atr_profiles.py).

`contact_of(name)` is the chip's own contact ATR behind a profile, which the card also stores
as MF GET DATA 5F51 without TS (§1.2, §3.5): a contactless profile is the standard chip read
through a PC/SC part-3 reader, so its chip ATR is the standard contact one.
"""
from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Profile:
    atr: bytes
    interface: str          # "contact" or "contactless"
    chip: str               # the profile whose ATR the chip answers on its contact interface
    source: str


def _p(hexstr: str, interface: str, chip: str, source: str) -> Profile:
    return Profile(bytes.fromhex(hexstr.replace(" ", "")), interface, chip, source)


PROFILES: dict[str, Profile] = {
    "contact": _p("3B E0 00 FF 81 31 FE 45 14", "contact", "contact",
                  "OpenSC card-jpki.c ATR table (since 2016); myna-browser-extension waits for "
                  "exactly this ATR; customactions.cpp \"JPKI\""),
    "contactless": _p("3B 88 80 01 00 00 41 E0 B3 81 A1 00 3B", "contactless", "contact",
                      "PC/SC part-3 ATR a reader synthesises from the Type B ATQB; customactions.cpp "
                      "\"JPKI (07)\"; HPKI's ID_JPKI historical bytes 00 00 41 E0 B3 81 A1 00"),
    "contact-alt": _p("3B DA 13 FF 81 31 FB 46 80 12 39 2F 31 C1 73 C6 01 C0 3B", "contact",
                      "contact-alt", "the alternative chip: OpenSC issue 3021 (certutil dump); "
                      "customactions.cpp \"JPKI (02)\""),
    "contact-03": _p("3B C5 FF 81 31 FB 45 80 73 C6 01 00 00", "contact", "contact-03",
                     "customactions.cpp \"JPKI (03)\"; jpki/myna issue #12"),
    "contact-04": _p("3B F5 91 00 FF 91 81 71 FE 40 00 42 00 01 00 D1 D6", "contact", "contact-04",
                     "customactions.cpp \"JPKI (04)\""),
    "contact-05": _p("3B F5 91 00 FF 91 81 71 FE 40 00 42 00 01 B3 A1 15", "contact", "contact-05",
                     "customactions.cpp \"JPKI (05)\""),
    "contactless-jgid": _p("3B 88 80 01 00 00 05 E0 B3 81 A1 00 7F", "contactless", "contact",
                           "customactions.cpp \"JPKI (06)\"; HPKI's ID_JGID historical bytes "
                           "00 00 05 E0 B3 81 A1 00, also treated as JPKI"),
    "contactless-08": _p("3B 88 80 01 00 4B 51 FF 00 81 D1 00 BC", "contactless", "contact",
                         "customactions.cpp \"JPKI (08)\""),
    "contactless-09": _p("3B 88 80 01 00 4B 51 FF B3 81 D1 00 0F", "contactless", "contact",
                         "customactions.cpp \"JPKI (09)\""),
}

#: name -> ATR bytes (the table card images name their ATR by).
ATR_PROFILES = {name: p.atr for name, p in PROFILES.items()}


class ATRError(ValueError):
    """Bytes that are not a well-formed ISO/IEC 7816-3 ATR."""


@dataclasses.dataclass(frozen=True)
class ParsedATR:
    ts: int
    interface_bytes: dict   # ("TA"|"TB"|"TC"|"TD", i) -> value
    protocols: tuple        # T values announced by TD bytes (T=0 when none)
    historical: bytes
    tck: int | None


def parse(atr: bytes) -> ParsedATR:
    """Parse an ATR (ISO/IEC 7816-3 §8.2); ATRError on a bad structure, length or TCK.

    TCK is present when any protocol other than T=0 is announced, and the XOR of T0 … TCK
    must be 0 (ISO/IEC 7816-3 §8.2.5).
    """
    atr = bytes(atr)
    if len(atr) < 2 or atr[0] not in (0x3B, 0x3F):
        raise ATRError("an ATR starts with TS 3B or 3F and has T0")
    if len(atr) > 33:
        raise ATRError(f"an ATR has at most 33 bytes, got {len(atr)}")
    pos, y, i = 2, atr[1] >> 4, 1
    k = atr[1] & 0x0F
    fields, protocols = {}, []
    while True:
        td = None
        for bit, name in ((1, "TA"), (2, "TB"), (4, "TC"), (8, "TD")):
            if y & bit:
                if pos >= len(atr):
                    raise ATRError(f"ATR ends inside the interface bytes ({name}{i})")
                fields[(name, i)] = atr[pos]
                if name == "TD":
                    td = atr[pos]
                pos += 1
        if td is None:
            break
        protocols.append(td & 0x0F)
        y, i = td >> 4, i + 1
    if pos + k > len(atr):
        raise ATRError(f"ATR announces {k} historical bytes, has {len(atr) - pos}")
    historical = atr[pos:pos + k]
    pos += k
    needs_tck = any(t != 0 for t in protocols)
    tck = None
    if needs_tck:
        if pos != len(atr) - 1:
            raise ATRError("ATR must end with exactly one TCK byte")
        tck = atr[pos]
        check = 0
        for b in atr[1:]:
            check ^= b
        if check:
            raise ATRError(f"ATR TCK {tck:02X} is wrong (XOR of T0..TCK is {check:02X}, not 00)")
    elif pos != len(atr):
        raise ATRError(f"{len(atr) - pos} bytes after the historical bytes of a T=0-only ATR")
    return ParsedATR(atr[0], fields, tuple(protocols) or (0,), historical, tck)


def contact_of(name: str) -> bytes:
    """The chip's contact ATR behind profile `name` (stored as GET DATA 5F51 without TS)."""
    if name not in PROFILES:
        raise KeyError(name)
    return PROFILES[PROFILES[name].chip].atr


GET_DATA_CONTACT_ATR = 0x5F51


def apply_profile(image, name: str) -> None:
    """Give a card image ATR profile `name`: the ATR it answers, and GET DATA 5F51 (the chip's
    contact ATR without TS, §1.2/§3.5) when the image carries that object."""
    if name not in PROFILES:
        raise ValueError(f"unknown ATR profile {name!r} (profiles: {', '.join(PROFILES)})")
    image.atr = name
    if GET_DATA_CONTACT_ATR in image.get_data:
        image.get_data[GET_DATA_CONTACT_ATR] = contact_of(name)[1:]

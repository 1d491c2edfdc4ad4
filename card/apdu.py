"""APDU codec: command APDUs of ISO 7816-3 cases 1-4, short and extended, and responses.

Parsing never raises for well-typed input: a byte string that is not a valid command APDU
gives ApduFormatError, which the card turns into 6700 (spec §1.3, issue "bad input").
Le follows ISO: short Le 00 = 256, extended Le 0000 = 65536; `le is None` means no Le
(cases 1 and 3).
"""
from __future__ import annotations

import dataclasses


class ApduFormatError(ValueError):
    """The bytes are not a command APDU (bad length encoding)."""


@dataclasses.dataclass(slots=True)   # not frozen: built for every APDU, and frozen init is slow
class Command:
    cla: int
    ins: int
    p1: int
    p2: int
    data: bytes = b""
    le: int | None = None        # None: no Le; otherwise 1..65536
    extended: bool = False       # Lc/Le were in the extended form

    @property
    def case(self) -> int:
        if not self.data:
            return 1 if self.le is None else 2
        return 3 if self.le is None else 4

    @classmethod
    def parse(cls, raw: bytes) -> "Command":
        n = len(raw)
        if n < 4:
            raise ApduFormatError(f"{n} bytes: a command APDU has at least 4")
        cla, ins, p1, p2 = raw[0], raw[1], raw[2], raw[3]
        body = raw[4:]
        b = len(body)
        if b == 0:                                   # case 1
            return cls(cla, ins, p1, p2)
        if b == 1:                                   # case 2 short
            return cls(cla, ins, p1, p2, b"", body[0] or 256)
        if body[0] != 0:                             # short Lc
            lc = body[0]
            if b == 1 + lc:                          # case 3 short
                return cls(cla, ins, p1, p2, bytes(body[1:]))
            if b == 2 + lc:                          # case 4 short
                return cls(cla, ins, p1, p2, bytes(body[1:1 + lc]), body[-1] or 256)
            raise ApduFormatError(f"short Lc={lc} does not match {b} body bytes")
        # body[0] == 0 and b >= 2: extended
        if b == 3:                                   # case 2 extended
            le = int.from_bytes(body[1:3], "big") or 65536
            return cls(cla, ins, p1, p2, b"", le, True)
        if b < 3:
            raise ApduFormatError("truncated extended length")
        lc = int.from_bytes(body[1:3], "big")
        if lc == 0:
            raise ApduFormatError("extended Lc of 0")
        if b == 3 + lc:                              # case 3 extended
            return cls(cla, ins, p1, p2, bytes(body[3:]), None, True)
        if b == 5 + lc:                              # case 4 extended
            le = int.from_bytes(body[-2:], "big") or 65536
            return cls(cla, ins, p1, p2, bytes(body[3:3 + lc]), le, True)
        raise ApduFormatError(f"extended Lc={lc} does not match {b} body bytes")

    def encode(self) -> bytes:
        """Shortest encoding that carries data and Le; extended when needed or asked for."""
        head = bytes((self.cla, self.ins, self.p1, self.p2))
        ext = self.extended or len(self.data) > 255 or (self.le is not None and self.le > 256)
        out = bytearray(head)
        if ext:
            if self.data:
                out += b"\x00" + len(self.data).to_bytes(2, "big") + self.data
            if self.le is not None:
                le = 0 if self.le == 65536 else self.le
                out += (b"" if self.data else b"\x00") + le.to_bytes(2, "big")
        else:
            if self.data:
                out += bytes((len(self.data),)) + self.data
            if self.le is not None:
                out.append(0 if self.le == 256 else self.le)
        return bytes(out)


@dataclasses.dataclass(frozen=True)
class Response:
    data: bytes
    sw: int

    @classmethod
    def parse(cls, raw: bytes) -> "Response":
        if len(raw) < 2:
            raise ApduFormatError("a response APDU has at least SW1 SW2")
        return cls(bytes(raw[:-2]), int.from_bytes(raw[-2:], "big"))

    def encode(self) -> bytes:
        return self.data + self.sw.to_bytes(2, "big")

    @property
    def ok(self) -> bool:
        return self.sw == 0x9000

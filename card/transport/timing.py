"""`card serve --timing real`: answer with the latencies of a real card instead of at once.

A card through the virtual reader answers in microseconds; a real Individual Number Card takes
time on the wire and in its crypto coprocessor, and software that sets short timeouts or never
shows a progress indicator only fails against the real one. The model (per exchange):

    delay = wire time of the command and response bytes + RSA time for a private-key operation

Figures and where they come from:

- Contact I/O at the ATR's rate. ISO/IEC 7816-3 (2006) §7.1: one etu = F / D / f; the ATR's TA1
  gives F and D and, without TA1, F = 372 and D = 1 apply (ISO/IEC 7816-3 §8.3). The JPKI contact ATR
  3B E0 00 FF 81 31 FE 45 14 (card-interface.md §1.2) has T0 = E0: no TA1, so the default rate.
  f: 4 MHz, a common CCID reader default clock (an assumption; readers range 3.5-5 MHz).
  T=1 (ISO/IEC 7816-3 §11): a character takes 11 etu at the minimal guard time, and each block adds a
  3-byte prologue and a 1-byte LRC epilogue; IFSC 254 caps a block's data.
  => 372 / 4 MHz = 93 µs per etu, 1.02 ms per byte: a 256-byte READ BINARY ≈ 0.27 s.
- Contactless (the PC/SC contactless ATR 3B 8x 80 01 …): ISO/IEC 14443-2/-3 Type B at
  106 kbit/s, etu = 128 / 13.56 MHz = 9.44 µs, 10 etu per character (start, 8 data, stop).
- RSA-2048 private-key operations (COMPUTE DIGITAL SIGNATURE 80 2A, INTERNAL AUTHENTICATE 88,
  §5): 0.3 s by default, an assumption in the "tenths of a second" range; no published
  measurement of the My Number Card's chip was found. `rsa_seconds` changes it.

Only the delay is simulated: answers are the same bytes as without timing.
"""
from __future__ import annotations

import math

# ISO/IEC 7816-3 Table 7 (Fi) and Table 8 (Di), indexed by TA1's high and low nibble.
_FI = {0: 372, 1: 372, 2: 558, 3: 744, 4: 1116, 5: 1488, 6: 1860, 9: 512, 10: 768, 11: 1024,
       12: 1536, 13: 2048}
_DI = {1: 1, 2: 2, 3: 4, 4: 8, 5: 16, 6: 32, 7: 64, 8: 12, 9: 20}

DEFAULT_CLOCK_HZ = 4_000_000
T1_CHAR_ETU = 11
T1_BLOCK_OVERHEAD = 4          # NAD PCB LEN + LRC
IFSC = 254
CONTACTLESS_BYTE_S = 10 * 128 / 13_560_000
DEFAULT_RSA_S = 0.3
RSA_INS = (0x2A, 0x88)


def is_contactless_atr(atr: bytes) -> bool:
    """PC/SC part 3 pseudo-ATR for a contactless card: 3B 8n 80 01 …"""
    return len(atr) >= 4 and atr[0] == 0x3B and atr[1] & 0xF0 == 0x80 and atr[2:4] == b"\x80\x01"


def fi_di(atr: bytes) -> tuple[int, int]:
    """(Fi, Di) from TA1, or the defaults (372, 1) when the ATR has no TA1 (ISO 7816-3 §8.3)."""
    if len(atr) >= 3 and atr[1] & 0x10:
        ta1 = atr[2]
        return _FI.get(ta1 >> 4, 372), _DI.get(ta1 & 0x0F, 1)
    return 372, 1


class RealTiming:
    """delay(command, response) in seconds for one exchange, from the card's ATR."""

    def __init__(self, atr: bytes, *, clock_hz: int = DEFAULT_CLOCK_HZ, rsa_seconds: float = DEFAULT_RSA_S):
        if clock_hz <= 0 or rsa_seconds < 0:
            raise ValueError("clock_hz must be positive and rsa_seconds not negative")
        self.contactless = is_contactless_atr(bytes(atr))
        if self.contactless:
            self.byte_seconds = CONTACTLESS_BYTE_S
        else:
            fi, di = fi_di(bytes(atr))
            self.byte_seconds = T1_CHAR_ETU * fi / di / clock_hz
        self.rsa_seconds = rsa_seconds

    def wire_bytes(self, n: int) -> int:
        blocks = max(1, math.ceil(n / IFSC))
        return n + blocks * T1_BLOCK_OVERHEAD

    def delay(self, command: bytes, response: bytes) -> float:
        seconds = (self.wire_bytes(len(command)) + self.wire_bytes(len(response))) * self.byte_seconds
        if len(command) >= 2 and command[1] in RSA_INS and response[-2:] == b"\x90\x00":
            seconds += self.rsa_seconds
        return seconds

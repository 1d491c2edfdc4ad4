"""A trivial card for the PC/SC benchmark (P1): answers 9000 to every APDU, through mynaemu's own door.

It is the baseline of `python -m bench` P1: the same pcscd, the same vpcd driver, the same door
(card/transport/vpcd.py: TCP_NODELAY, TCP_QUICKACK after every recv, one sendall per message)
and the same APDU loop as `mynaemu card serve`; only the card behind the door differs. So the
ratio mynaemu / echo is what the card core and its CLI cost on top of the transport, nothing else.

By default it presents the JPKI contact ATR (card-interface.md §1.2), the one `card serve` uses
for the persona images, so pcscd negotiates the same protocol for both cards.

    python -m bench.echo_card [--host 127.0.0.1] [--port 35963] [--atr HEX] [--read-data]

--read-data is a diagnostic: READ BINARY (short Le) is answered with Le zero bytes and 9000, so
the echo card moves as many bytes as a real card does and a P1 ratio against it shows the
card's own cost without the cost of carrying 256 bytes of data through pcscd and pyscard.

Stops on SIGTERM or Ctrl-C (the door's own signal handling).
"""
from __future__ import annotations

import argparse
import logging
import sys

from mynaemu.card.status import SW

OK = SW.OK.bytes


class EchoCard:
    """The smallest object the vpcd door can serve: ATR, power and reset, transmit() -> 9000.

    Same surface as mynaemu.card.core.Card for the door's purposes (atr, power_on, power_off,
    reset, transmit). It keeps no state beyond power and counts the APDUs it answered.
    """

    def __init__(self, atr: bytes, *, read_data: bool = False):
        if not 2 <= len(atr) <= 33 or atr[0] not in (0x3B, 0x3F):
            raise ValueError(f"ATR {atr.hex().upper()} is not a plausible ATR (2..33 bytes, TS 3B or 3F)")
        self._atr = bytes(atr)
        self.read_data = read_data
        self.powered = False
        self.apdus = 0

    @property
    def atr(self) -> bytes:
        return self._atr

    def power_on(self) -> bytes:
        self.powered = True
        return self._atr

    def power_off(self) -> None:
        self.powered = False

    def reset(self, warm: bool = True) -> bytes:
        self.powered = True
        return self._atr

    def transmit(self, apdu: bytes) -> bytes:
        self.apdus += 1
        if self.read_data and len(apdu) == 5 and apdu[1] == 0xB0:
            # Case 2 short READ BINARY: Le bytes (00 = 256), contents irrelevant.
            return bytes(apdu[4] or 256) + OK
        return OK


def default_atr() -> bytes:
    from mynaemu.card.image import ATR_PROFILES

    return ATR_PROFILES["contact"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="where vpcd (pcscd) listens (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=35963,
                        help="35963 = reader 'Virtual PCD 00 00', 35964 = '... 00 01' (default 35963)")
    parser.add_argument("--atr", default=None, help="ATR in hex (default: the JPKI contact ATR)")
    parser.add_argument("--read-data", action="store_true",
                        help="answer READ BINARY with Le zero bytes (diagnostic: same bytes as a real card)")
    args = parser.parse_args(argv)
    if not 0 < args.port < 65536:
        parser.error(f"--port {args.port} out of range 1..65535")
    try:
        atr = bytes.fromhex(args.atr) if args.atr else default_atr()
        card = EchoCard(atr, read_data=args.read_data)
    except ValueError as exc:
        parser.error(f"--atr: {exc}")

    from mynaemu.card.transport.vpcd import run

    # Same logging set-up as `mynaemu card serve`: the door's connection events at INFO, so
    # both servers do the same (tiny) logging work per session and none per APDU.
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("mynaemu.vpcd").setLevel(logging.INFO)
    print(f"echo card on vpcd {args.host}:{args.port} (ATR {card.atr.hex().upper()})", file=sys.stderr)
    return run(card, host=args.host, port=args.port)


if __name__ == "__main__":
    sys.exit(main())

"""Secure-messaging cost (card-interface.md §13.2): an SM read of kenhojo EF 0002 vs a plain one.

Both run in this process against the same card (an adult persona, seed 0), the card core
called directly (`Card.transmit`), same run, alternating turns (plain, SM, SM, plain, ...)
so both see the same machine load:

- plain: `00 B0 82 00 00` (READ BINARY of EF 0002 by SFI, 256 bytes = the whole file with
         its filler, §13.3) after the PIN;
- SM:    `08 B0 82 00 000005 96 03 000000 0000` in a session opened once by SET SESSION KEY; the
         terminal side is included (the command's 96 object is fixed, the answer's `86`
         cryptogram is decrypted and checked against the plain read), so the figure is what a
         client pays per read, not only the card.

Before timing both answers are checked: the SM plaintext equals the plain read. The figure
is the ratio of the per-read times (SM / plain), each side's best turn, and the median of the
per-round ratios. Run from the repository root: `python -m bench.bench_sm`
(`--seconds 0.5 --rounds 5` by default); it prints the table and writes bench/results/sm.md.
"""
from __future__ import annotations

import argparse
import datetime
import statistics
import sys
import time
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from mynaemu.card.aid import AID
from mynaemu.card.ids import KenhojoEF, KenhojoPin
from mynaemu.card.status import SW

RESULTS = Path(__file__).resolve().parent / "results" / "sm.md"
SELECT_KENHOJO = bytes.fromhex("00A4040C0A") + AID.KENHOJO
_SFI_BASIC4 = 0x80 | KenhojoEF.BASIC4              # READ BINARY P1: SFI of EF 0002 (§2.4)
PLAIN_READ = bytes((0x00, 0xB0, _SFI_BASIC4)) + bytes.fromhex("0000")
# extended Lc/Le: EF 0002 has filler
SM_READ = bytes((0x08, 0xB0, _SFI_BASIC4)) + bytes.fromhex("00000005960300000000" "00")
SECRET = bytes(range(32))


def make_card():
    from mynaemu.card.core import Card
    from mynaemu.issuance.personas import build_persona

    image, info = build_persona("adult", seed=0)
    card = Card(image)
    card.power_on()
    pin = info.pins["kenhojo"].encode()

    def ok(raw):
        resp = card.transmit(raw)
        if resp[-2:] != SW.OK.bytes:
            raise SystemExit(f"bench_sm: {raw[:4].hex()} answered {resp[-2:].hex()}")
        return resp[:-2]

    ok(SELECT_KENHOJO)
    ok(bytes((0x00, 0x20, 0x00, 0x80 | KenhojoPin.MAIN, len(pin))) + pin)
    ef6 = image.application("kenhojo").efs[KenhojoEF.SESSION_KEY].data
    from mynaemu.card import sm, tlv
    from mynaemu.card.apps import kenhojo
    public = tlv.decode_rsa_public_key(tlv.expect(ef6, kenhojo.T_SESSION_KEY).value)
    block = public.encrypt(sm.KEY_DELIVERY_PREFIX + SECRET, padding.OAEP(
        mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None))
    ok(bytes.fromhex("80AE0000000100") + block)
    return card, ok


class SmTerminal:
    """Decrypts the 86 answers (IV = AES-ECB(key, N)), counting N as the card does."""

    def __init__(self, key: bytes):
        self.key = key
        self.n = 0
        self.ecb = Cipher(algorithms.AES(key), modes.ECB())

    def read(self, card) -> bytes:
        self.n += 1
        resp = card.transmit(SM_READ)
        if resp[-2:] != SW.OK.bytes:
            raise SystemExit(f"bench_sm: SM read answered {resp[-2:].hex()}")
        data = resp[:-2]
        pos = 2 if data[1] < 0x80 else 2 + (data[1] - 0x80)
        e = self.ecb.encryptor()
        iv = e.update(self.n.to_bytes(16, "big")) + e.finalize()
        d = Cipher(algorithms.AES(self.key), modes.CBC(iv)).decryptor()
        plain = (d.update(data[pos + 1:]) + d.finalize()).rstrip(b"\x00")
        return plain[:-1]


def turn(fn, seconds: float) -> float:
    """Seconds per call over a turn of about `seconds`."""
    count, start = 0, time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(50):
            fn()
        count += 50
        now = time.perf_counter()
        if now >= deadline:
            return (now - start) / count


def run(seconds: float, rounds: int) -> dict:
    card, ok = make_card()
    terminal = SmTerminal(SECRET[:16])
    reference = ok(PLAIN_READ)
    if terminal.read(card) != reference:
        raise SystemExit("bench_sm: the SM read does not decrypt to the plain read")

    def plain():
        card.transmit(PLAIN_READ)

    def secured():
        terminal.read(card)

    plain_t, sm_t, ratios = [], [], []
    for r in range(rounds):
        order = (plain, secured) if r % 2 == 0 else (secured, plain)
        times = {f: turn(f, seconds) for f in order}
        plain_t.append(times[plain])
        sm_t.append(times[secured])
        ratios.append(times[secured] / times[plain])
    return {"plain_us": min(plain_t) * 1e6, "sm_us": min(sm_t) * 1e6,
            "best_ratio": min(sm_t) / min(plain_t), "median_ratio": statistics.median(ratios),
            "bytes": len(reference), "rounds": rounds, "seconds": seconds}


def report(res: dict) -> str:
    return "\n".join([
        f"# SM read vs plain read of kenhojo EF 0002 ({res['bytes']} bytes), in-process",
        "",
        f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, "
        f"{res['rounds']} alternating rounds of {res['seconds']} s per side, `python -m bench.bench_sm`",
        "",
        "| read | µs per read (best turn) |",
        "|---|---|",
        f"| plain `00 B0 82 00 00` | {res['plain_us']:.1f} |",
        f"| SM `08 B0 82 00 000005 96 03 000000 0000` + terminal decryption | {res['sm_us']:.1f} |",
        "",
        f"SM / plain: **{res['best_ratio']:.2f}** (best turns), {res['median_ratio']:.2f} "
        "(median of per-round ratios).",
        "",
    ])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_sm", description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=0.5)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--no-write", action="store_true", help="Print only; do not write bench/results/sm.md.")
    args = parser.parse_args(argv)
    if args.seconds <= 0 or args.rounds < 1:
        parser.error("--seconds must be > 0 and --rounds >= 1")
    text = report(run(args.seconds, args.rounds))
    print(text)
    if not args.no_write:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())

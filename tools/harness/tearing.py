"""Tearing harness: kill -9 the card at random points during VERIFY and CHANGE, then check the file.

Issue 5 item 3. `python -m mynaemu.tools.harness.tearing --trials 500` runs trials on one card image
file (a persona card, created in a temporary folder unless --image is given). Each trial:

1. starts the card on the file - through the real stack by default (`--door pcsc`: a
   `python -m mynaemu.tools.cli card serve FILE` subprocess behind a private pcscd + vpcd,
   driven with pyscard), or as a plain child process speaking hex lines on its stdin/stdout
   (`--door child`: Card.from_file, no PC/SC; much faster, for bulk runs);
2. checks that the restarted card agrees with the file: the retry query of every tracked PIN
   answers 63Cn with the file's n (spec §4.2), and the PIN left by the previous trial's
   interrupted operation verifies with the value the file holds;
3. streams VERIFY (wrong and right), CHANGE REFERENCE DATA (00 24 01, spec §4.4), JICSAP CHANGE
   KEY (80 32 00, 共通/住基 001C) and retry queries over the card's PINs, in the SELECT-EF and
   SFI forms of §2.3/§2.4, while a timer kills the card process with SIGKILL at a random instant;
4. after the kill, loads the file (a torn or unreadable image is a violation) and compares every
   PIN with what the card had acknowledged before the kill. With no operation in flight on a PIN,
   its value and counter must be exactly the acknowledged ones (no rollback: every failure
   acknowledged is in the file). With one in flight: a wrong VERIFY may have cost its try or
   not; a correct VERIFY may have left the counter as it was, one lower (the decrement is
   written before the comparison), or reset; a CHANGE leaves the old or the new value, never
   anything else.

Between trials the harness acts as the issuer when a counter runs low (remaining <= 1): it
resets the counter in the file, counted as an "issuer reset" (the only legitimate rise besides
a correct PIN). Temporary files a kill leaves behind (`.FILE.*.tmp`) are counted and removed.

Output: per trial nothing unless it fails; at the end the counts (what was in flight at each
kill and what the file showed), time per trial, and "no violation" or the first violation
(PIN values are never printed: they appear as "old"/"new"). Exit status 1 on a violation.
"""
from __future__ import annotations

import argparse
import collections
import dataclasses
import random
import sys
import tempfile
import threading
import time
from pathlib import Path

from mynaemu.card.image import CardImage, CardImageError, PinEF
from mynaemu.card.status import RETRIES_BASE, SW
# The doors a trial kills the card through, and the errors they raise (re-exported: callers
# and tests name them tearing.TearingViolation & co.).
from mynaemu.tools.harness.tearing_doors import (  # noqa: F401
    CHILD, ChildDoor, ExclusiveConnection, HarnessError, PcscDoor, TearingViolation, Torn)


# -- the client's model ---------------------------------------------------------------------------

@dataclasses.dataclass
class Pin:
    app: str
    aid: bytes
    fid: int
    value: bytes
    remaining: int
    max_tries: int
    pattern: str
    change: str           # "iso", "jicsap" or "none"
    new: bytes | None = None   # value of a CHANGE in flight


@dataclasses.dataclass
class Op:
    kind: str             # select, wrong, correct, change, query
    pin: Pin | None
    apdu: bytes
    new: bytes | None = None


@dataclasses.dataclass
class Stats:
    trials: int = 0
    apdus: int = 0
    inflight: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    outcomes: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    issuer_resets: int = 0
    stale_temp_files: int = 0
    restart_retries: int = 0
    seconds: float = 0.0

    def format(self) -> str:
        per = self.seconds / self.trials if self.trials else 0.0
        lines = [f"{self.trials} trials, {self.apdus:,} APDUs acknowledged, {self.seconds:.1f} s "
                 f"({per * 1000:.0f} ms per trial)",
                 "operation in flight at the kill: " + ", ".join(f"{k} {v}" for k, v in sorted(self.inflight.items())),
                 "what the file showed for it: " + ", ".join(f"{k} {v}" for k, v in sorted(self.outcomes.items())),
                 f"issuer resets (counter <= 1 reset between trials): {self.issuer_resets}",
                 f"temporary files left by a kill mid-save (removed): {self.stale_temp_files}",
                 f"restarts retried because the door failed (pcscd shared/restarted): {self.restart_retries}"]
        return "\n".join(lines)


def tracked_pins(image: CardImage) -> list:
    """Every PIN a holder can present (not blocked as issued), with what the file says."""
    pins = []
    for app in image.applications:
        for fid, ef in sorted(app.efs.items()):
            if isinstance(ef, PinEF) and ef.value and ef.remaining > 0:
                pins.append(Pin(app.name, app.aid, fid, ef.value, ef.remaining, ef.max_tries, ef.pattern,
                                ef.change))
    return pins


def _new_value(rng: random.Random, pin: Pin) -> bytes:
    if pin.pattern.startswith("[0-9]"):
        n = len(pin.value)
        alphabet = "0123456789"
    else:
        n = rng.randint(6, 16)
        alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    while True:
        value = "".join(rng.choice(alphabet) for _ in range(n)).encode("ascii")
        if value != pin.value:
            return value


def _wrong_value(rng: random.Random, pin: Pin) -> bytes:
    return _new_value(rng, pin)   # well-formed and different: a wrong PIN that counts


class Session:
    """The client side of one trial: builds operations, checks answers, tracks acknowledgements."""

    def __init__(self, door, pins: list, rng: random.Random, stats: Stats):
        self.door = door
        self.pins = pins
        self.rng = rng
        self.stats = stats
        self.current = None          # AID of the selected application
        self.verified = set()        # (app, fid) verified in this session
        self.inflight: Op | None = None

    def send(self, op: Op) -> bytes:
        self.inflight = op
        resp = self.door.transmit(op.apdu)
        self.inflight = None
        self.stats.apdus += 1
        self.ack(op, resp)
        return resp

    def ack(self, op: Op, resp: bytes) -> None:
        sw = int.from_bytes(resp[-2:], "big")
        pin = op.pin

        def expect(want: int, what: str):
            if sw != want:
                where = f"{pin.app}/{pin.fid:04X}" if pin else "card"
                raise TearingViolation(f"{what} on {where} answered {sw:04X}, expected {want:04X}")

        if op.kind == "select":
            expect(SW.OK, "SELECT AID")
            if op.apdu[5:] != self.current:
                self.verified = set()        # spec §4.5: another DF clears the status
            self.current = op.apdu[5:]
            return
        if op.kind == "select_ef":
            expect(SW.OK, "SELECT PIN EF")
            return
        key = (pin.app, pin.fid)
        if op.kind == "query":
            expect(RETRIES_BASE | pin.remaining, "retry query")
        elif op.kind == "wrong":
            if pin.remaining == 0:
                expect(SW.REFERENCE_BLOCKED, "VERIFY of a blocked PIN")
            else:
                expect(RETRIES_BASE | (pin.remaining - 1), "wrong VERIFY")
                pin.remaining -= 1
                self.verified.discard(key)
        elif op.kind == "correct":
            if pin.remaining == 0:
                expect(SW.REFERENCE_BLOCKED, "VERIFY of a blocked PIN")
            else:
                expect(SW.OK, "correct VERIFY")
                pin.remaining = pin.max_tries
                self.verified.add(key)
        elif op.kind == "change":
            expect(SW.OK, "CHANGE")
            pin.value, pin.remaining = op.new, pin.max_tries

    def select(self, pin: Pin) -> None:
        if self.current != pin.aid:
            self.send(Op("select", None, b"\x00\xA4\x04\x0C" + bytes((len(pin.aid),)) + pin.aid))

    def _ref(self, pin: Pin) -> int:
        """P2 for the PIN: its SFI (§2.4) or, after SELECT EF (§2.3), the current EF."""
        if self.rng.random() < 0.5:
            return 0x80 | pin.fid
        self.send(Op("select_ef", pin, b"\x00\xA4\x02\x0C\x02" + pin.fid.to_bytes(2, "big")))
        return 0x80

    def verify(self, pin: Pin, value: bytes, kind: str) -> None:
        p2 = self._ref(pin)
        self.send(Op(kind, pin, bytes((0x00, 0x20, 0x00, p2, len(value))) + value))

    def step(self) -> None:
        rng = self.rng
        pin = rng.choice(self.pins)
        self.select(pin)
        roll = rng.random()
        if pin.remaining == 0:
            kind = "query"
        elif roll < 0.40 and pin.remaining >= 2:
            kind = "wrong"
        elif roll < 0.70 or pin.change == "none":
            kind = "correct" if roll < 0.9 else "query"
        else:
            kind = "change"
        if kind == "query":
            p2 = self._ref(pin)
            self.send(Op("query", pin, bytes((0x00, 0x20, 0x00, p2))))
        elif kind == "wrong":
            self.verify(pin, _wrong_value(rng, pin), "wrong")
        elif kind == "correct":
            self.verify(pin, pin.value, "correct")
        else:
            if (pin.app, pin.fid) not in self.verified:
                self.verify(pin, pin.value, "correct")
            new = _new_value(rng, pin)
            p2 = self._ref(pin)
            head = (0x00, 0x24, 0x01) if pin.change == "iso" else (0x80, 0x32, 0x00)
            self.send(Op("change", pin, bytes(head + (p2, len(new))) + new, new))


# -- a trial ---------------------------------------------------------------------------------------

def check_restart(session: Session, previous: Op | None) -> None:
    """The restarted card agrees with the file: retry counters, and the interrupted PIN's value."""
    for pin in session.pins:
        session.select(pin)
        session.send(Op("query", pin, bytes((0x00, 0x20, 0x00, 0x80 | pin.fid))))
    if previous is not None and previous.pin is not None and previous.pin.remaining > 0:
        pin = previous.pin
        session.select(pin)
        session.verify(pin, pin.value, "correct")


def check_file(path: Path, pins: list, inflight: Op | None, stats: Stats) -> None:
    """After the kill: the image loads and every PIN is as acknowledged (module docstring, 4)."""
    try:
        image = CardImage.load(path)
    except CardImageError as exc:
        raise TearingViolation(f"the image does not load after the kill: {exc}") from None
    for pin in pins:
        ef = image.pin(pin.app, pin.fid)
        value, remaining = ef.value, ef.remaining
        allowed = {(pin.value, pin.remaining): "as acknowledged"}
        op = inflight if inflight is not None and inflight.pin is pin else None
        if op is not None and op.kind == "wrong" and pin.remaining > 0:
            allowed[(pin.value, pin.remaining - 1)] = "try counted"
        if op is not None and op.kind == "correct" and pin.remaining > 0:
            allowed[(pin.value, pin.remaining - 1)] = "decrement written, reset not yet"
            allowed[(pin.value, pin.max_tries)] = "reset written"
        if op is not None and op.kind == "change":
            allowed[(op.new, pin.max_tries)] = "new value written"
        outcome = allowed.get((value, remaining))
        if outcome is None:
            label = "old" if value == pin.value else "new" if op is not None and value == op.new else "unknown"
            raise TearingViolation(
                f"{pin.app}/{pin.fid:04X} after the kill: value {label}, {remaining}/{pin.max_tries} tries; "
                f"acknowledged {pin.remaining}, in flight: {op.kind if op else 'nothing on this PIN'}")
        if op is not None:
            stats.outcomes[f"{op.kind}: {outcome}"] += 1
        pin.value, pin.remaining = value, remaining
    leftovers = list(path.parent.glob(f".{path.name}.*.tmp"))
    stats.stale_temp_files += len(leftovers)
    for leftover in leftovers:
        leftover.unlink()


def issuer_reset(path: Path, pins: list, stats: Stats) -> None:
    """The issuer's counter reset (not an APDU of the card) for PINs about to block."""
    low = [p for p in pins if p.remaining <= 1]
    if not low:
        return
    image = CardImage.load(path)
    for pin in low:
        image.pin(pin.app, pin.fid).remaining = pin.max_tries
        pin.remaining = pin.max_tries
        stats.issuer_resets += 1
    image.save(path)


def run_trial(door, path: Path, pins: list, rng: random.Random, stats: Stats, previous: Op | None,
              *, kill_window: tuple) -> Op | None:
    """One trial (module docstring, 1-4); returns the operation that was in flight at the kill."""
    for _attempt in range(3):
        door.start(path)
        session = Session(door, pins, rng, stats)
        try:
            check_restart(session, previous)
            break
        except Torn:
            # Nothing of ours killed it (pcscd went away under a shared run): still a tear, so
            # the file must hold what was acknowledged; then try the restart again.
            door.kill()
            door.wait_dead()
            check_file(path, pins, session.inflight, stats)
            previous = session.inflight or previous
            stats.restart_retries += 1
    else:
        raise HarnessError("the card went away three times during the restart check")
    delay = rng.uniform(*kill_window)
    timer = threading.Timer(delay, door.kill)
    timer.start()
    deadline = time.monotonic() + delay + 10.0
    inflight = None
    try:
        while True:
            if time.monotonic() > deadline:
                raise TearingViolation("the card kept answering 10 s after SIGKILL")
            session.step()
    except Torn:
        inflight = session.inflight
    finally:
        timer.cancel()
        door.kill()
        door.wait_dead()
    stats.inflight[inflight.kind if inflight else "none"] += 1
    check_file(path, pins, inflight, stats)
    issuer_reset(path, pins, stats)
    stats.trials += 1
    return inflight


def unique_atr(rng: random.Random) -> bytes:
    """3B E8 00 FF 81 31 FE 45 + 8 historical bytes + TCK: spec §1.2's contact ATR (T=1, IFSC 254)
    with historical bytes added; TCK is the XOR of T0 .. the last historical byte."""
    body = bytes.fromhex("E800FF8131FE45") + b"TEAR" + rng.randbytes(4)
    tck = 0
    for b in body:
        tck ^= b
    return b"\x3B" + body + bytes((tck,))


def run(trials: int, *, door_name: str = "pcsc", seed: int = 0, image_path: Path | None = None,
        kill_window: tuple = (0.0, 0.25), port: int | None = None, progress=None, progress_every: int = 50) -> Stats:
    """Run `trials` trials; raises TearingViolation on the first violation."""
    rng = random.Random(seed)
    stats = Stats()
    with tempfile.TemporaryDirectory(prefix="mynaemu-tearing-") as tmp:
        path = Path(tmp) / "card.json"
        if image_path is not None:
            path.write_bytes(Path(image_path).read_bytes())
        else:
            from mynaemu.issuance.personas import build_persona

            build_persona("adult")[0].save(path)
        image = CardImage.load(path)
        if door_name == "pcsc":
            # A card of its own: the contact ATR of spec §1.2 with 8 random historical bytes, so
            # the harness never mistakes another session's card in a shared pcscd for this one.
            image.atr = unique_atr(rng).hex().upper()
            image.save(path)
        pins = tracked_pins(image)
        door = PcscDoor(port) if door_name == "pcsc" else ChildDoor()
        if door_name == "pcsc":
            door.open()
        start = time.perf_counter()
        previous = None
        try:
            for n in range(trials):
                previous = run_trial(door, path, pins, rng, stats, previous, kill_window=kill_window)
                if progress and (n + 1) % progress_every == 0:
                    progress(n + 1, time.perf_counter() - start)
            # The last restart: the card still agrees with the file.
            door.start(path)
            try:
                check_restart(Session(door, pins, rng, stats), previous)
            finally:
                door.kill()
                door.wait_dead()
        finally:
            stats.seconds = time.perf_counter() - start
            door.close()
    return stats


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mynaemu.tools.harness.tearing",
                                     description="kill -9 the card during VERIFY/CHANGE and check the image.")
    parser.add_argument("--trials", type=int, default=500)
    parser.add_argument("--door", choices=("pcsc", "child"), default="pcsc",
                        help="pcsc: card serve behind pcscd+vpcd (default); child: a child process on pipes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--port", type=int, default=None,
                        help="vpcd port for the pcsc door: 35963 or 35964 (default 35964, 'Virtual PCD 00 01')")
    parser.add_argument("--image", type=Path, default=None,
                        help="card image to start from (copied; default: a fresh adult persona)")
    args = parser.parse_args(argv)
    if args.trials < 1:
        parser.error("--trials must be at least 1")
    print(f"tearing: {args.trials} trials through the {args.door} door (seed {args.seed})", flush=True)

    from mynaemu.tools.cli.progress import TerminalProgress

    bar = TerminalProgress(args.trials, f"tearing ({args.door})")     # total + ETA on a terminal only

    def progress(n, seconds):
        if bar.enabled:
            bar.set(n)
        else:
            print(f"  {n:>5} trials, {seconds:7.1f} s", flush=True)

    try:
        with bar:
            stats = run(args.trials, door_name=args.door, seed=args.seed, image_path=args.image, port=args.port,
                        progress=progress, progress_every=1 if bar.enabled else 50)
    except TearingViolation as exc:
        print(f"VIOLATION: {exc}", file=sys.stderr)
        print(f"replay: python -m mynaemu.tools.harness.tearing --trials {args.trials} --door {args.door} --seed {args.seed}",
              file=sys.stderr)
        return 1
    except (HarnessError, OSError) as exc:  # the harness itself could not run (no pcscd, not root, ...)
        print(f"tearing: cannot run: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    print(stats.format())
    print("no violation")
    return 0


if __name__ == "__main__":
    sys.exit(main())

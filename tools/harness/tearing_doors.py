"""The doors of the tearing harness (tools/harness/tearing.py): how a trial reaches the card it kills.

`ChildDoor` runs the card as a child process on the image file, APDUs as hex lines over pipes
(`--door child`); `PcscDoor` serves the file with `mynaemu card serve` behind a private pcscd +
vpcd and drives it with pyscard through an `ExclusiveConnection` (`--door pcsc`, the real
stack). Both raise `Torn` when the kill lands mid-exchange and `TearingViolation` when the card
does not start on the file; `HarnessError` is a harness that cannot run (not a card fault).
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mynaemu.card.image import CardImage

CHILD = r"""
import sys
from mynaemu.card.core import Card
card = Card.from_file(sys.argv[1])
card.power_on()
sys.stdout.write("ready\n"); sys.stdout.flush()
for line in sys.stdin:
    sys.stdout.write(card.transmit(bytes.fromhex(line.strip())).hex() + "\n")
    sys.stdout.flush()
"""


class TearingViolation(AssertionError):
    """The card broke a tearing invariant; the message holds no PIN value."""


class Torn(Exception):
    """The card went away mid-exchange (the kill landed)."""


# -- doors --------------------------------------------------------------------------------------

class ChildDoor:
    """The card as a child process on the file; APDUs as hex lines over pipes."""

    name = "child"

    def __init__(self):
        self.proc = None

    def start(self, path: Path) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", CHILD, str(path)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, bufsize=0)
        line = self.proc.stdout.readline()
        if line.strip() != b"ready":
            self.proc.kill()
            self.proc.wait()
            raise TearingViolation(f"the card did not start on the file (said {line[:80]!r})")

    @property
    def pid(self) -> int:
        return self.proc.pid

    def transmit(self, apdu: bytes) -> bytes:
        try:
            self.proc.stdin.write(apdu.hex().encode() + b"\n")
            line = self.proc.stdout.readline()
        except (BrokenPipeError, OSError):
            raise Torn() from None
        if not line:
            raise Torn()
        return bytes.fromhex(line.decode().strip())

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)

    def wait_dead(self) -> None:
        self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                stream.close()
            except OSError:
                pass

    def close(self) -> None:
        if self.proc is not None:
            self.kill()
            self.wait_dead()


class HarnessError(RuntimeError):
    """The harness could not run a trial (no pcscd, the reader busy, ...): not a card fault."""


class ExclusiveConnection:
    """pyscard, T=1, SCARD_SHARE_EXCLUSIVE: no other PC/SC client (another session's OpenSC
    probing every reader, say) can slip a SELECT between the harness's APDUs."""

    def __init__(self, reader: str):
        from smartcard import Exceptions, System
        from smartcard.CardConnection import CardConnection
        from smartcard.scard import SCARD_SHARE_EXCLUSIVE

        from mynaemu.tools.terminal.errors import TransportError

        self._errors = (Exceptions.SmartcardException, OSError)
        self._transport_error = TransportError
        matches = [r for r in System.readers() if str(r) == reader]
        if not matches:
            raise TransportError(f"no reader {reader!r}")
        self._conn = matches[0].createConnection()
        try:
            self._conn.connect(CardConnection.T1_protocol, mode=SCARD_SHARE_EXCLUSIVE)
        except self._errors as exc:
            raise TransportError(f"{reader}: cannot connect exclusively: {exc}") from None
        self.atr = bytes(self._conn.getATR())

    def transmit(self, apdu: bytes) -> bytes:
        try:
            data, sw1, sw2 = self._conn.transmit(list(apdu))
        except self._errors as exc:
            raise self._transport_error(f"transmit failed: {exc}") from None
        return bytes(data) + bytes((sw1, sw2))

    def close(self) -> None:
        try:
            self._conn.disconnect()
            release = getattr(self._conn, "release", None)
            if release:
                release()
        except self._errors:
            pass


class PcscDoor:
    """The card as `mynaemu card serve FILE --port PORT` behind pcscd + vpcd, driven by pyscard.

    The serve process is started and killed here by PID (pcscd_ctl.start_card_server would do
    the start, but it cannot hand back the PID when pcscd vanishes while it waits). Port 35964
    (reader "Virtual PCD 00 01") by default, so a test session using 35963 is not disturbed.
    pcscd is reused when one with vpcd runs (other sessions may share it); when it goes away
    between trials it is brought up again.
    """

    name = "pcsc"

    # pcscd polls the vpcd slot about every 0.4 s; a card served again before pcscd has seen the
    # old one go is not noticed until much later (measured: ~8 s), so wait out one poll.
    SETTLE = 0.45

    def __init__(self, port: int | None = None, start_timeout: float = 3.0, attempts: int = 5):
        from mynaemu.tools.harness import pcscd as pcscd_ctl

        self.ctl = pcscd_ctl
        self.port = port or pcscd_ctl.VPCD_PORT + 1
        self.reader = pcscd_ctl.reader_for_port(self.port)
        self.start_timeout = start_timeout
        self.attempts = attempts
        self.atr = None             # the served card's ATR, to tell it from another session's card
        self._died = 0.0
        self.pcscd = None
        self.proc = None
        self.conn = None
        fd, name = tempfile.mkstemp(prefix="mynaemu-tearing-serve-", suffix=".log")
        os.close(fd)
        self.log_path = Path(name)

    def open(self) -> None:
        self._ensure_pcscd()

    def _ensure_pcscd(self) -> None:
        running = self.ctl.running_pcscd_pid()
        if self.pcscd is None or running is None or not self.ctl.vpcd_listening(self.port):
            try:
                handle = self.ctl.ensure_pcscd()
            except self.ctl.PcscdError as exc:
                raise HarnessError(str(exc)) from None
            if self.pcscd is None or handle.owned:
                self.pcscd = handle

    def start(self, path: Path) -> None:
        from mynaemu.tools.terminal.errors import TransportError

        self.atr = CardImage.load(path).atr_bytes
        last = None
        for _attempt in range(self.attempts):
            self._ensure_pcscd()
            try:
                if self.ctl.reader_state(self.reader)[0]:
                    self.ctl.wait_for_card(False, reader=self.reader, timeout=self.start_timeout)
                    self._died = time.monotonic()
            except self.ctl.PcscdError as exc:
                last = exc
                continue
            pause = self._died + self.SETTLE - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            with open(self.log_path, "ab") as log:
                self.proc = subprocess.Popen(
                    [sys.executable, "-m", "mynaemu.tools.cli", "card", "serve", str(path), "--port", str(self.port)],
                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
            try:
                deadline = time.monotonic() + self.start_timeout
                while self.ctl.reader_state(self.reader) != (True, self.atr):
                    if self.proc.poll() is not None:
                        raise HarnessError(f"card serve exited with status {self.proc.returncode} (log {self.log_path})")
                    if time.monotonic() > deadline:
                        raise self.ctl.PcscdError(f"no card in {self.reader!r} within {self.start_timeout:.0f} s")
                    time.sleep(0.02)
                self.conn = ExclusiveConnection(self.reader)
                if self.conn.atr != self.atr:
                    raise self.ctl.PcscdError(f"{self.reader!r} holds another card (ATR {self.conn.atr.hex()})")
                return
            except (self.ctl.PcscdError, TransportError) as exc:
                last = exc
                if self.conn is not None:
                    self.conn.close()
                    self.conn = None
                self.kill()
                self.proc.wait()
                self._died = time.monotonic()
        raise HarnessError(f"cannot serve the card through pcscd: {last}")

    @property
    def pid(self) -> int:
        return self.proc.pid

    def transmit(self, apdu: bytes) -> bytes:
        from mynaemu.tools.terminal.errors import TransportError

        try:
            return self.conn.transmit(apdu)
        except TransportError:
            raise Torn() from None

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)

    def wait_dead(self) -> None:
        self.proc.wait()
        self._died = time.monotonic()
        if self.conn is not None:
            self.conn.close()
            self.conn = None
        try:
            # pcscd notices the vanished card at its next poll (~0.3 s): wait, so the next
            # card served on this port is not taken for this one.
            self.ctl.wait_for_card(False, reader=self.reader, timeout=self.start_timeout)
        except self.ctl.PcscdError:
            pass

    def close(self) -> None:
        if self.proc is not None:
            self.kill()
            self.wait_dead()
        if self.pcscd is not None:
            self.pcscd.stop()

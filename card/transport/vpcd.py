"""The PC/SC door: expose a card as the reader "Virtual PCD 00 00" through vsmartcard's vpcd.

pcscd's vpcd driver *listens* on TCP 35963 (slot "Virtual PCD 00 00"; 35964 is slot 00 01) and
the card is the TCP *client* (pcsc.md: the "reversed" mode crashes bookworm's pcscd). Messages
both ways are a 2-byte big-endian length and a payload. A 1-byte payload from vpcd is a control
byte: 00 power off, 01 power on, 02 reset - none of them answered - and 04 get ATR, answered with
the ATR. Any longer payload is a command APDU, answered with the response APDU.

Latency (pcsc.md, "the 40 ms stall"): bookworm's vpcd writes length and payload with two send()
calls, so with Nagle on one side and delayed ACK on the other every message waits ~40 ms. The
card side fixes it: TCP_NODELAY on the socket, TCP_QUICKACK after *every* recv() (Linux clears
quick-ack by itself), and length+payload in a single sendall().

When pcscd goes away (restart, crash) the card keeps reconnecting with a capped backoff until it
is stopped. While disconnected the card is powered off, so its security status is cleared as on
a real card taken out of the reader (card-interface.md §4.5). PIN state is persisted by the card
itself through its own `persist` callback; this module never touches the image file.

Logs never show PINs: VERIFY, CHANGE REFERENCE DATA, RESET RETRY COUNTER and CHANGE KEY have their
data field redacted, and responses are logged as length + status word only (a READ BINARY of
kenhojo EF 0001 would otherwise put the 個人番号 in the log).
"""
from __future__ import annotations

import logging
import signal
import socket
import threading
from typing import Callable, Optional, Union

from mynaemu.card.redact import redact_command

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 35963          # vpcd slot "Virtual PCD 00 00" (/etc/reader.conf.d/vpcd, 0x8C7B)
READER_NAME = "Virtual PCD 00 00"


def reader_for(port: int) -> str:
    """vpcd's slot name for a port: 35963 -> "Virtual PCD 00 00", 35964 -> "... 00 01"."""
    return f"Virtual PCD 00 {port - DEFAULT_PORT:02d}" if 0 <= port - DEFAULT_PORT < 100 else f"vpcd:{port}"

# Control payloads from vpcd (vsmartcard vpcd protocol, pcsc.md).
CTRL_POWER_OFF = 0x00
CTRL_POWER_ON = 0x01
CTRL_RESET = 0x02
CTRL_GET_ATR = 0x04

MAX_PAYLOAD = 0xFFFF          # the 2-byte length field

# Instructions whose data field is a PIN or a new PIN (spec §4.2, §4.4): never logged.
# 20 VERIFY, 24 CHANGE REFERENCE DATA, 2C RESET RETRY COUNTER, 32 JICSAP CHANGE KEY (CLA 80).

# Reconnect backoff: the first retry comes quickly (pcscd restarts take ~0.1-0.5 s), later ones
# are spaced out so a machine without pcscd is not hammered.
BACKOFF_START = 0.05
BACKOFF_MAX = 2.0

Log = Union[logging.Logger, Callable[[str], None], None]

_QUICKACK = getattr(socket, "TCP_QUICKACK", None)   # Linux only; elsewhere there is no stall fix


class VpcdProtocolError(Exception):
    """vpcd sent something that is not a valid message (e.g. a zero-length frame)."""


def redact_apdu(apdu: bytes) -> str:
    """Hex of a command APDU for logs, with the data field of PIN-carrying commands hidden."""
    return redact_command(apdu)


def frame(payload: bytes) -> bytes:
    """One vpcd message: 2-byte big-endian length, then the payload."""
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"vpcd payload of {len(payload)} bytes exceeds {MAX_PAYLOAD}")
    return len(payload).to_bytes(2, "big") + payload


class VpcdServer:
    """Connects `card` to vpcd at host:port and serves it until stop() is called.

    Despite the name (it *serves a card*), the TCP role is client: vpcd listens.
    `log` is a logging.Logger, a callable taking one line of text, or None for the
    "mynaemu.vpcd" logger. APDU traffic is logged at DEBUG level, connection events at INFO.
    """

    def __init__(self, card, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, *, log: Log = None,
                 backoff_start: float = BACKOFF_START, backoff_max: float = BACKOFF_MAX,
                 eject_after: Optional[int] = None, timing=None):
        if not 0 < int(port) < 65536:
            raise ValueError(f"port {port} out of range 1..65535")
        if not 0 < backoff_start <= backoff_max:
            raise ValueError("need 0 < backoff_start <= backoff_max")
        self.card = card
        self.host = host
        self.port = int(port)
        self.backoff_start = backoff_start
        self.backoff_max = backoff_max
        self._stop = threading.Event()
        self._connected = threading.Event()
        self._sock: Optional[socket.socket] = None
        self.connections = 0          # successful connects so far (tests and status lines)
        self.apdus = 0                # command APDUs answered so far
        # Card in or out of the reader: eject() pulls it (the connection to vpcd is closed, which
        # pcscd reports as a card removal), insert() puts it back (reconnect).
        self._inserted = threading.Event()
        self._inserted.set()
        if eject_after is not None and int(eject_after) < 1:
            raise ValueError("eject_after must be at least 1")
        self.eject_after = None if eject_after is None else int(eject_after)
        self.timing = timing          # card/transport/timing.py RealTiming, or None: answer at once
        if log is None:
            log = logging.getLogger("mynaemu.vpcd")
        if isinstance(log, logging.Logger):
            self._logger = log
            self._info = log.info
            self._debug_enabled = lambda: log.isEnabledFor(logging.DEBUG)
            self._debug = log.debug
        else:
            self._logger = None
            self._info = log
            self._debug_enabled = lambda: True
            self._debug = log

    # -- control -----------------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def wait_connected(self, timeout: float | None = None) -> bool:
        """Block until a connection to vpcd is up (True) or the timeout passes (False)."""
        return self._connected.wait(timeout)

    def stop(self) -> None:
        """Ask serve_forever() to return. Thread-safe, never blocks (call it from any thread).

        Shutting the socket down wakes a recv() blocked in the serving thread at once.
        """
        self._stop.set()
        sock = self._sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # not connected yet, or already closed: the loop sees _stop anyway

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    @property
    def inserted(self) -> bool:
        return self._inserted.is_set()

    def eject(self) -> None:
        """Pull the card out of the reader (thread- and signal-safe: sets a flag, shuts the socket).

        pcscd sees the card removed; the card is powered off, so its security status is gone as
        on a real card taken out (spec §4.5). It stays out until insert()."""
        if not self._inserted.is_set():
            return
        self._inserted.clear()
        sock = self._sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def insert(self) -> None:
        """Put the card back: the door reconnects to vpcd and pcscd sees a card inserted."""
        self._inserted.set()

    def serve_in_thread(self, name: str = "vpcd") -> threading.Thread:
        """Start serve_forever() in a daemon thread and return it (tests, benchmarks)."""
        thread = threading.Thread(target=self.serve_forever, name=name, daemon=True)
        thread.start()
        return thread

    # -- main loop ---------------------------------------------------------------------------
    def serve_forever(self) -> None:
        """Connect, serve, reconnect with backoff when the connection drops; return after stop()."""
        delay = self.backoff_start
        refused_logged = False
        try:
            while not self._stop.is_set():
                if not self._inserted.is_set():
                    self._stop.wait(0.05)        # pulled out: wait for insert() or stop()
                    continue
                sock = self._connect()
                if sock is None and (self._stop.is_set() or not self._inserted.is_set()):
                    continue                     # stopped or pulled out while connecting
                if sock is None:
                    if not refused_logged:
                        self._info(f"vpcd: nothing listening on {self.host}:{self.port} yet "
                                   f"(is pcscd with vsmartcard-vpcd running?); retrying")
                        refused_logged = True
                    self._stop.wait(delay)
                    delay = min(delay * 2, self.backoff_max)
                    continue
                refused_logged = False
                delay = self.backoff_start
                self.connections += 1
                self._connected.set()
                self._info(f"vpcd: connected to {self.host}:{self.port} as the card in "
                           f"{reader_for(self.port)!r}")
                reason = "stopped"
                try:
                    self._session(sock)
                    reason = "closed by vpcd" if not self._stop.is_set() else "stopped"
                except (OSError, VpcdProtocolError) as exc:
                    reason = f"{type(exc).__name__}: {exc}"
                finally:
                    self._connected.clear()
                    self._sock = None
                    try:
                        sock.close()
                    except OSError:
                        pass
                    # Out of the reader means no power: clear security status (spec §4.5).
                    self._power_off()
                if not self._inserted.is_set():
                    self._info("vpcd: card pulled out of the reader (eject); waiting for insert")
                elif not self._stop.is_set():
                    self._info(f"vpcd: connection lost ({reason}); reconnecting")
                    self._stop.wait(delay)
        finally:
            self._power_off()
            self._info("vpcd: stopped")

    def _connect(self) -> Optional[socket.socket]:
        try:
            sock = socket.create_connection((self.host, self.port), timeout=2.0)
        except OSError:
            return None
        self._sock = sock
        # stop() or eject() may have run before _sock was visible to them (each changes its flag
        # first, then shuts the socket it sees): look at the flags again now that it is visible.
        if self._stop.is_set() or not self._inserted.is_set():
            sock.close()
            self._sock = None
            return None
        sock.settimeout(None)
        # pcsc.md: Nagle off here, quick-ack on after every recv, one sendall per message.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._quickack(sock)
        return sock

    @staticmethod
    def _quickack(sock: socket.socket) -> None:
        if _QUICKACK is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, _QUICKACK, 1)
            except OSError:
                pass  # socket just went down; the next recv reports it

    def _recv_exact(self, sock: socket.socket, n: int) -> Optional[bytes]:
        """n bytes, or None on an orderly close before the first byte of a message."""
        chunks = []
        got = 0
        while got < n:
            chunk = sock.recv(n - got)
            # Linux drops out of quick-ack mode by itself; re-arm after every recv (pcsc.md).
            self._quickack(sock)
            if not chunk:
                if got == 0 and n == 2:
                    return None
                raise VpcdProtocolError(f"connection closed inside a message ({got}/{n} bytes)")
            chunks.append(chunk)
            got += len(chunk)
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def _session(self, sock: socket.socket) -> None:
        while not self._stop.is_set():
            head = self._recv_exact(sock, 2)
            if head is None:
                return
            length = int.from_bytes(head, "big")
            if length == 0:
                raise VpcdProtocolError("zero-length message from vpcd")
            payload = self._recv_exact(sock, length)
            reply = self.handle(payload)
            if reply is not None:
                if self.timing is not None and len(payload) > 1:
                    pause = self.timing.delay(payload, reply)
                    if pause > 0 and self._stop.wait(pause):
                        return
                sock.sendall(frame(reply))
                if self.eject_after is not None and len(payload) > 1 and self.apdus == self.eject_after:
                    self._info(f"vpcd: pulling the card after APDU {self.apdus} (--eject-after)")
                    self.eject()
                    return

    # -- one message -------------------------------------------------------------------------
    def handle(self, payload: bytes) -> Optional[bytes]:
        """Answer one message from vpcd: the reply payload, or None when none is due."""
        if len(payload) == 1:
            code = payload[0]
            if code == CTRL_GET_ATR:
                # Answered at any time, powered or not (pcsc.md pitfall 4): pcscd polls it
                # every ~400 ms to see whether the card is still there.
                return bytes(self.card.atr)
            if code == CTRL_POWER_OFF:
                self._info("vpcd: power off")
                self.card.power_off()
            elif code == CTRL_POWER_ON:
                self._info("vpcd: power on")
                self.card.power_on()
            elif code == CTRL_RESET:
                # vpcd's reset is the warm reset of a reader; security status survives a warm
                # reset on the real card (spec §4.5).
                self._info("vpcd: reset (warm)")
                self.card.reset(warm=True)
            else:
                self._info(f"vpcd: unknown control byte {code:02X} ignored")
            return None
        self.apdus += 1
        debug = self._debug_enabled()
        if debug:
            self._debug(f"vpcd: > {redact_apdu(payload)}")
        try:
            response = bytes(self.card.transmit(payload))
        except Exception as exc:
            # No response APDU (e.g. an APDU to an unpowered card): a zero-length reply makes
            # vpcd report a communication error for this exchange only (pcsc.md framing).
            self._info(f"vpcd: no response to {redact_apdu(payload)[:14]}...: {type(exc).__name__}: {exc}")
            return b""
        if debug:
            sw = response[-2:].hex().upper() if len(response) >= 2 else "??"
            self._debug(f"vpcd: < {len(response) - 2} data bytes, SW {sw}")
        return response

    def _power_off(self) -> None:
        try:
            self.card.power_off()
        except Exception as exc:  # a failing card must not keep the door from reconnecting
            self._info(f"vpcd: power off failed: {type(exc).__name__}: {exc}")


def run(card, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, *, log: Log = None, **options) -> int:
    """Serve `card` in the foreground until SIGTERM or SIGINT; the CLI's `card serve` uses this.

    Returns the process exit status (0). The card is powered off on the way out.
    """
    return run_many([VpcdServer(card, host, port, log=log, **options)])


def run_many(servers) -> int:
    """Serve several cards (one VpcdServer per vpcd slot) until SIGTERM or SIGINT.

    SIGUSR1 pulls every served card out of its reader, SIGUSR2 puts them back (`card serve`).
    """
    servers = list(servers)
    if threading.current_thread() is not threading.main_thread():
        threads = [s.serve_in_thread() for s in servers]   # signals only work on the main thread
        for t in threads:
            t.join()
        return 0
    # The doors run in worker threads; the signal handler only records the signal (taking no
    # lock, so it cannot deadlock on one the interrupted code holds) and this thread acts on it.
    requested = []

    def _on_signal(signum, _frame):
        requested.append(signum)

    handled = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1, signal.SIGUSR2)
    previous = {sig: signal.signal(sig, _on_signal) for sig in handled}
    workers = [threading.Thread(target=s.serve_forever, name=f"vpcd-{s.port}", daemon=True) for s in servers]
    try:
        for worker in workers:
            worker.start()
        while any(w.is_alive() for w in workers):
            while requested:
                signum = requested.pop(0)
                for server in servers:
                    if signum == signal.SIGUSR1:
                        server.eject()
                    elif signum == signal.SIGUSR2:
                        server.insert()
                    else:
                        server.stop()
            for worker in workers:
                worker.join(0.05)
    finally:
        for server in servers:
            server.stop()
        for worker in workers:
            worker.join(5)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


__all__ = ["VpcdServer", "run", "run_many", "redact_apdu", "frame", "READER_NAME", "DEFAULT_HOST", "DEFAULT_PORT",
           "VpcdProtocolError"]

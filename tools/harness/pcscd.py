"""Start and stop a private pcscd with vsmartcard's vpcd reader, and serve card images through it.

Used by the PC/SC tests, the APDU benchmark and demos. Facts it relies on (pcsc.md):

* Debian's vsmartcard-vpcd installs /etc/reader.conf.d/vpcd, so a pcscd started after it was
  installed listens on TCP 35963 ("Virtual PCD 00 00") and 35964 ("Virtual PCD 00 01").
* A pcscd started before vsmartcard-vpcd was installed has no virtual reader: restart it.
* Whether vpcd listens is read from /proc/net/tcp{,6}, never by connecting: vpcd takes the
  first client that connects as the card.
* `pcscd -f` stays in the foreground (no syslog in containers); we put it in its own session
  (setsid) in the background and remember its PID. Only what we started is ever stopped, by PID.

Command line (demos): `python -m mynaemu.tools.harness.pcscd start|stop|status`. `start` leaves
pcscd running and records its PID in a state file so that `stop` stops only that one.
"""
from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Optional

from mynaemu.card.transport.vpcd import reader_for

PIDFILE = Path("/run/pcscd/pcscd.pid")
SOCKET = Path("/run/pcscd/pcscd.comm")
VPCD_CONF = Path("/etc/reader.conf.d/vpcd")
VPCD_PORT = 35963
READER = "Virtual PCD 00 00"
STATE_FILE = Path(tempfile.gettempdir()) / "mynaemu-pcscd.pid"
DEFAULT_LOG = Path(tempfile.gettempdir()) / "mynaemu-pcscd.log"


class PcscdError(RuntimeError):
    """pcscd or the vpcd driver cannot be used here; the message is one line saying why."""


class ForeignPcscd(PcscdError):
    """A pcscd this tool did not start is running without the vpcd reader. On a tester's
    workstation that is the daemon serving their real readers: it is never stopped, restarted
    or reconfigured (tests skip, the demo and the bench say so and stop)."""


# -- facts about the machine -------------------------------------------------------------------

def listening_ports() -> set:
    """TCP ports in LISTEN state (IPv4 and IPv6), read from /proc/net: no connection is made."""
    ports = set()
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(name) as fh:
                next(fh, None)
                for line in fh:
                    fields = line.split()
                    if len(fields) > 3 and fields[3] == "0A":       # 0A = TCP_LISTEN
                        ports.add(int(fields[1].rsplit(":", 1)[1], 16))
        except OSError:
            continue
    return ports


def vpcd_listening(port: int = VPCD_PORT) -> bool:
    return port in listening_ports()


def _comm(pid: int) -> Optional[str]:
    """Command name of a live process, None if gone. A zombie (killed, not yet reaped - e.g.
    reparented to a container init that never reaps) counts as gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    name, rest = stat.split("(", 1)[1].rsplit(")", 1)
    return None if rest.split()[0] in ("Z", "X") else name


def _start_time(pid: int) -> Optional[str]:
    """Field 22 of /proc/PID/stat: tells a recycled PID from the process we remember."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def running_pcscd_pid() -> Optional[int]:
    """PID of a live pcscd named in /run/pcscd/pcscd.pid, or None."""
    try:
        text = PIDFILE.read_text()
    except OSError:
        return None
    digits = "".join(ch for ch in text if ch.isdigit())
    if not digits:
        return None
    pid = int(digits)
    return pid if _comm(pid) == "pcscd" else None


def vpcd_driver_path() -> Optional[Path]:
    """The driver library named by /etc/reader.conf.d/vpcd, if both exist."""
    try:
        conf = VPCD_CONF.read_text()
    except OSError:
        return None
    for line in conf.splitlines():
        parts = line.split(None, 1)
        if len(parts) == 2 and parts[0] == "LIBPATH":
            lib = Path(parts[1].strip().strip('"'))
            return lib if lib.exists() else None
    return None


def missing_tools(*, opensc: bool = False) -> list:
    """What is missing to run a PC/SC card here (empty list when all is present)."""
    missing = []
    if shutil.which("pcscd") is None and not Path("/usr/sbin/pcscd").exists():
        missing.append("pcscd (apt-get install pcscd)")
    if vpcd_driver_path() is None:
        missing.append("vpcd driver (apt-get install vsmartcard-vpcd)")
    if opensc:
        for tool in ("pkcs15-tool", "pkcs11-tool", "opensc-tool"):
            if shutil.which(tool) is None:
                missing.append(f"{tool} (apt-get install opensc)")
                break
    try:
        import smartcard.scard  # noqa: F401
    except ImportError:
        missing.append("pyscard (pip install pyscard)")
    return missing


def _pcscd_binary() -> str:
    return shutil.which("pcscd") or "/usr/sbin/pcscd"


# -- pcscd -------------------------------------------------------------------------------------

@dataclasses.dataclass
class PcscdHandle:
    """A pcscd with the vpcd listener up. `owned` is True only when this process started it."""

    pid: int
    owned: bool
    log_path: Optional[Path] = None
    _popen: Optional[subprocess.Popen] = dataclasses.field(default=None, repr=False)
    _start: Optional[str] = dataclasses.field(default=None, repr=False)

    def alive(self) -> bool:
        return _comm(self.pid) == "pcscd" and (self._start is None or _start_time(self.pid) == self._start)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop pcscd if we started it (SIGTERM, then SIGKILL after `timeout`); else do nothing."""
        if not self.owned:
            return
        self.owned = False
        if self.alive():
            _kill_and_wait(self.pid, timeout, self._popen)
        elif self._popen is not None:
            self._popen.poll()
        _forget_state(self.pid)


def _kill_and_wait(pid: int, timeout: float, popen: Optional[subprocess.Popen] = None) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if popen is not None and popen.poll() is not None:
            return
        if _comm(pid) != "pcscd":
            return
        time.sleep(0.05)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    if popen is not None:
        popen.wait(timeout=timeout)


def ensure_pcscd(*, timeout: float = 10.0, log_path=None, debug: bool = False) -> PcscdHandle:
    """A pcscd with the vpcd listener on 35963: reuse a running one, or start our own.

    A running pcscd without the listener (started before vsmartcard-vpcd was installed, pcsc.md)
    is restarted only when `pcscd_ctl start` started it (its PID and start time are in
    STATE_FILE); any other is somebody's daemon and raises ForeignPcscd, untouched. Raises
    PcscdError with a one-line reason when no pcscd can be brought up.
    """
    pid = running_pcscd_pid()
    if pid is not None and vpcd_listening():
        return PcscdHandle(pid=pid, owned=False)
    if pid is not None and not _started_by_us(pid):
        raise ForeignPcscd(f"a pcscd this tool did not start (PID {pid}) is running without the vpcd "
                           f"reader (nothing listens on {VPCD_PORT}); it may be serving real readers, "
                           f"so it is left alone. To use the virtual reader, restart it yourself once "
                           f"vsmartcard-vpcd is installed (e.g. `systemctl restart pcscd`)")
    missing = [m for m in missing_tools() if not m.startswith("pyscard")]
    if missing:
        raise PcscdError("cannot start pcscd: missing " + ", ".join(missing))
    if os.geteuid() != 0:
        raise PcscdError("starting pcscd needs root (it owns /run/pcscd); run as root or start pcscd yourself")
    if pid is not None:
        # pcsc.md: a pcscd without the vpcd listener never grows one; restart it.
        _kill_and_wait(pid, timeout)
    log_path = Path(log_path) if log_path else DEFAULT_LOG
    args = [_pcscd_binary(), "-f"]
    if debug:
        args += ["-d", "-a"]           # logs every APDU, ~3x slower (pcsc.md)
    with open(log_path, "wb") as log:
        popen = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                 start_new_session=True, close_fds=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if popen.poll() is not None:
            raise PcscdError(f"pcscd exited with status {popen.returncode}: {_tail(log_path)} (log {log_path})")
        if SOCKET.exists() and vpcd_listening():
            break
        time.sleep(0.05)
    else:
        _kill_and_wait(popen.pid, 2.0, popen)
        raise PcscdError(f"pcscd started but vpcd did not listen on {VPCD_PORT} within {timeout:.0f} s "
                         f"(log {log_path})")
    return PcscdHandle(pid=popen.pid, owned=True, log_path=log_path, _popen=popen,
                       _start=_start_time(popen.pid))


def _started_by_us(pid: int) -> bool:
    """Whether STATE_FILE (written by `pcscd_ctl start`) names this very process."""
    try:
        pid_text, start = STATE_FILE.read_text().split()
    except (OSError, ValueError):
        return False
    return pid_text == str(pid) and start == str(_start_time(pid))


def vpcd_ports(limit: int = 16) -> list:
    """The vpcd slots pcscd offers now: 35963 + slot for every slot whose port is listening."""
    listening = listening_ports()
    return [VPCD_PORT + slot for slot in range(limit) if VPCD_PORT + slot in listening]


def _tail(path) -> str:
    try:
        lines = [ln for ln in Path(path).read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return "no log"
    return lines[-1].strip() if lines else "empty log"


def _remember_state(handle: PcscdHandle) -> None:
    STATE_FILE.write_text(f"{handle.pid} {handle._start}\n")


def _forget_state(pid: int) -> None:
    try:
        if STATE_FILE.read_text().split()[0] == str(pid):
            STATE_FILE.unlink()
    except (OSError, IndexError):
        pass


# -- the card in the reader --------------------------------------------------------------------

def reader_state(reader: str = READER):
    """(present, atr) of `reader` as pcscd sees it, or (False, None) when the reader is unknown."""
    from smartcard import scard

    rc, ctx = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
    if rc != scard.SCARD_S_SUCCESS:
        raise PcscdError(f"cannot talk to pcscd: {scard.SCardGetErrorMessage(rc)}")
    try:
        rc, readers = scard.SCardListReaders(ctx, [])
        if rc != scard.SCARD_S_SUCCESS or reader not in readers:
            return False, None
        rc, states = scard.SCardGetStatusChange(ctx, 0, [(reader, scard.SCARD_STATE_UNAWARE)])
        if rc != scard.SCARD_S_SUCCESS:
            return False, None
        _name, event, atr = states[0]
        present = bool(event & scard.SCARD_STATE_PRESENT) and not bool(event & scard.SCARD_STATE_MUTE)
        return present, (bytes(atr) if present else None)
    finally:
        scard.SCardReleaseContext(ctx)


def wait_for_card(present: bool = True, *, reader: str = READER, timeout: float = 10.0,
                  atr: Optional[bytes] = None) -> None:
    """Poll until a card is (or is no longer) in `reader`; PcscdError on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        now_present, now_atr = reader_state(reader)
        if now_present == present and (not present or atr is None or now_atr == atr):
            return
        if time.monotonic() > deadline:
            what = "appear" if present else "go away"
            raise PcscdError(f"card did not {what} in {reader!r} within {timeout:.0f} s")
        time.sleep(0.05)


def cli_can_serve() -> bool:
    """Whether `python -m mynaemu.tools.cli card serve` exists yet (the lead's CLI)."""
    try:
        done = subprocess.run([sys.executable, "-m", "mynaemu.tools.cli", "card", "serve", "--help"],
                              capture_output=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


@dataclasses.dataclass
class CardServerHandle:
    """A card image being served on a vpcd port, as a subprocess (pid) or an in-process thread."""

    path: Path
    port: int
    reader: str
    pid: Optional[int] = None
    log_path: Optional[Path] = None
    _popen: Optional[subprocess.Popen] = dataclasses.field(default=None, repr=False)
    _server: object = dataclasses.field(default=None, repr=False)
    _thread: Optional[threading.Thread] = dataclasses.field(default=None, repr=False)
    _stopped: bool = dataclasses.field(default=False, repr=False)
    _own_card: object = dataclasses.field(default=None, repr=False)   # opened here: released by stop()

    def stop(self, timeout: float = 10.0, *, wait_removed: bool = True) -> None:
        """Stop the server (SIGTERM by PID, SIGKILL after `timeout`) and wait for card removal.

        A second call does nothing (the reader may by then hold another server's card)."""
        if self._stopped:
            return
        self._stopped = True
        if self._popen is not None and self._popen.poll() is None:
            self._popen.send_signal(signal.SIGTERM)
            try:
                self._popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self._popen.kill()
                self._popen.wait(timeout)
        if self._server is not None:
            self._server.stop()
            if self._thread is not None:
                self._thread.join(timeout)
        if self._own_card is not None:
            self._own_card.close()         # out of the reader: the image's lock is released
        if wait_removed:
            # pcscd notices a vanished card at its next get-ATR poll (~400 ms); wait for it so
            # the next card served on this port is not mistaken for this one.
            try:
                wait_for_card(False, reader=self.reader, timeout=timeout)
            except PcscdError:
                pass
            # pcscd reports the slot empty at once but registers the removal ~0.4 s later; a
            # card served again inside that window goes unseen for seconds.
            time.sleep(0.45)

    @property
    def returncode(self) -> Optional[int]:
        return None if self._popen is None else self._popen.poll()


def reader_for_port(port: int) -> str:
    """vpcd slot name for a port: 35963 -> "Virtual PCD 00 00", 35964 -> "... 00 01"."""
    # vpcd's two default slots, or a further slot pcscd listens on now (more reader.conf entries)
    if port not in (VPCD_PORT, VPCD_PORT + 1) and port not in vpcd_ports():
        raise ValueError(f"vpcd listens on {VPCD_PORT} and {VPCD_PORT + 1} (and any further configured "
                         f"slot that is listening), not {port}")
    return reader_for(port)


def start_card_server(path, *, port: int = VPCD_PORT, timeout: float = 20.0, in_process: Optional[bool] = None,
                      log_path=None, env: Optional[dict] = None, card=None,
                      command: Optional[list] = None) -> CardServerHandle:
    """Serve the card image at `path` through vpcd and wait until pcscd sees it inserted.

    By default runs `python -m mynaemu.tools.cli card serve PATH --port PORT` as a subprocess
    (output to `log_path`, a temp file by default); `command` runs another server process instead
    (e.g. the benchmark's echo card); `in_process=True`, a CLI without `card serve`, or an
    explicit `card` object serves it from a thread of this process instead.
    """
    path = Path(path)
    reader = reader_for_port(port)
    if card is not None:
        in_process = True
    if in_process is None:
        in_process = command is None and not cli_can_serve()
    if reader_state(reader)[0]:
        raise PcscdError(f"{reader!r} already holds a card; stop its server first")
    if in_process:
        from mynaemu.card.transport.vpcd import VpcdServer

        own = load_card(path) if card is None else None
        server = VpcdServer(card if card is not None else own, port=port)
        handle = CardServerHandle(path, port, reader, _server=server, _thread=server.serve_in_thread(),
                                  _own_card=own)
    else:
        # Never a pipe: an unread pipe fills up with log lines and then blocks the card.
        if log_path is None:
            fd, name = tempfile.mkstemp(prefix="mynaemu-card-", suffix=".log")
            os.close(fd)
            log_path = name
        log_path = Path(log_path)
        with open(log_path, "ab") as out:
            argv = command or [sys.executable, "-m", "mynaemu.tools.cli", "card", "serve", str(path),
                               "--port", str(port)]
            popen = subprocess.Popen([str(a) for a in argv], stdin=subprocess.DEVNULL, stdout=out,
                                     stderr=subprocess.STDOUT, env=env)
        handle = CardServerHandle(path, port, reader, pid=popen.pid, log_path=log_path, _popen=popen)
    deadline = time.monotonic() + timeout
    try:
        while True:
            if handle._popen is not None and handle._popen.poll() is not None:
                raise PcscdError(f"card serve exited with status {handle._popen.returncode}: "
                                 f"{_tail(handle.log_path)} (log {handle.log_path})")
            if reader_state(reader)[0]:
                return handle
            if time.monotonic() > deadline:
                raise PcscdError(f"no card appeared in {reader!r} within {timeout:.0f} s")
            time.sleep(0.05)
    except BaseException:
        # whatever went wrong (pcscd vanished, timeout, Ctrl-C), never leave the server running
        handle.stop(wait_removed=False)
        raise


def load_card(path):
    """A Card on the image at `path` that saves its PIN state back to the same file."""
    from mynaemu.card.core import Card

    return Card.from_file(path, door="card served in-process by pcscd_ctl")


# -- command line ------------------------------------------------------------------------------

def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    cmd = argv[0] if argv else "status"
    try:
        if cmd == "start":
            handle = ensure_pcscd()
            if handle.owned:
                _remember_state(handle)
                print(f"pcscd started, PID {handle.pid}, log {handle.log_path}")
                print("stop it with: python -m mynaemu.tools.harness.pcscd stop")
            else:
                print(f"pcscd already running, PID {handle.pid}, vpcd on {VPCD_PORT} (left alone)")
            print(f"a card connects to 127.0.0.1:{VPCD_PORT} -> reader {READER!r}")
            return 0
        if cmd == "stop":
            try:
                pid_text, start = STATE_FILE.read_text().split()
                pid = int(pid_text)
            except (OSError, ValueError):
                print("no pcscd started by pcscd_ctl is recorded; nothing stopped")
                return 0
            handle = PcscdHandle(pid=pid, owned=True, _start=None if start == "None" else start)
            was_alive = handle.alive()
            handle.stop()
            print(f"pcscd {pid} stopped" if was_alive else f"pcscd {pid} was not running")
            return 0
        if cmd == "status":
            pid = running_pcscd_pid()
            listening = vpcd_listening()
            print(f"pcscd: {'PID ' + str(pid) if pid else 'not running'}; "
                  f"vpcd {'listening' if listening else 'NOT listening'} on {VPCD_PORT}")
            if pid and listening and not missing_tools():
                present, atr = reader_state()
                print(f"{READER}: " + (f"card present, ATR {atr.hex(' ').upper()}" if present else "empty"))
            return 0 if pid and listening else 1
    except PcscdError as exc:
        print(f"pcscd_ctl: {exc}", file=sys.stderr)
        return 2
    print("usage: python -m mynaemu.tools.harness.pcscd start|stop|status", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())

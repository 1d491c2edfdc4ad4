"""`card serve --control FIFO`: pull one served card out of its reader and put it back by name.

Signals (SIGUSR1 eject, SIGUSR2 insert) act on every card a `card serve` process serves; the
control FIFO addresses one: a test script writes a line per action,

    eject 0        pull the first card (FILES order) out of its reader
    insert 0       put it back
    eject all      / insert all

and reads nothing back (the effect is seen through PC/SC: the reader goes empty / full). The
FIFO is created by `card serve` (0600; an existing FIFO is reused, anything else at the path —
a regular file, a symlink — is refused) and removed on exit if it created it. Unknown lines are
logged and ignored; a line longer than 256 bytes is dropped.
"""
from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

MAX_LINE = 256


class ControlError(OSError):
    """The control path cannot be used (exists and is not a FIFO, a symlink, ...)."""


def open_fifo(path) -> tuple[int, bool]:
    """(fd, created): the FIFO at `path`, opened read-write so open() never blocks and the reader
    never sees EOF when a writer closes."""
    path = Path(path)
    created = False
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        os.mkfifo(path, 0o600)
        created = True
        st = os.lstat(path)
    if not stat.S_ISFIFO(st.st_mode):
        raise ControlError(f"{path}: exists and is not a FIFO; refusing to use it as the control channel")
    fd = os.open(path, os.O_RDWR | getattr(os, "O_NOFOLLOW", 0))
    return fd, created


class ControlFifo:
    """Reads control lines from a FIFO in a daemon thread and applies them to `servers`."""

    def __init__(self, path, servers, log=None):
        self.path = Path(path)
        self.servers = list(servers)
        self._log = log or (lambda line: None)
        self.fd, self.created = open_fifo(self.path)
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="card-control", daemon=True)

    def start(self) -> "ControlFifo":
        self._thread.start()
        return self

    def apply(self, line: str) -> bool:
        """Apply one line; False (and a log line) when it is not understood."""
        words = line.split()
        if len(words) != 2 or words[0] not in ("eject", "insert"):
            self._log(f"control: ignored {line[:40]!r} (expected 'eject N|all' or 'insert N|all')")
            return False
        if words[1] == "all":
            targets = self.servers
        elif words[1].isdigit() and int(words[1]) < len(self.servers):
            targets = [self.servers[int(words[1])]]
        else:
            self._log(f"control: no card {words[1][:10]!r} (0..{len(self.servers) - 1} or all)")
            return False
        for server in targets:
            server.eject() if words[0] == "eject" else server.insert()
        return True

    def _loop(self) -> None:
        buf = b""
        while not self._stopped.is_set():
            try:
                chunk = os.read(self.fd, 1024)
            except OSError:
                return
            if not chunk or self._stopped.is_set():
                continue
            buf += chunk
            while b"\n" in buf:
                raw, buf = buf.split(b"\n", 1)
                if len(raw) <= MAX_LINE:
                    self.apply(raw.decode("ascii", "replace"))
            if len(buf) > MAX_LINE:
                buf = b""                       # an over-long line without a newline: dropped

    def close(self) -> None:
        self._stopped.set()
        try:
            os.write(self.fd, b"\n")           # wake the reader thread
        except OSError:
            pass
        self._thread.join(2)
        try:
            os.close(self.fd)
        except OSError:
            pass
        if self.created:
            try:
                os.unlink(self.path)
            except OSError:
                pass

"""Socket-level reading for the services' server base (issuance/http/keepalive.py): a request reader
bounded by a deadline, and a close that does not destroy the answer with a reset.
"""
from __future__ import annotations

import socket
import time


class DeadlineReader:
    """The handler's rfile: buffered reads from the connection, each bounded by a deadline.

    While a request is being read (`deadline` set: request line, headers and body together) a
    read waits at most until that instant, so a client sending a byte now and then (slowloris)
    or stopping halfway through its body gets TimeoutError, not a thread held forever. Between
    requests the wait is bounded by the idle timeout instead. `buffered` says whether bytes of
    a next (pipelined) request are already here, which a poll on the socket cannot see.
    """

    def __init__(self, sock: socket.socket, idle_timeout: float):
        self._sock = sock
        self._buf = bytearray()
        self._eof = False
        self.idle_timeout = idle_timeout
        self.deadline: float | None = None
        self.timed_out = False

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def _fill(self) -> bool:
        """Read more bytes into the buffer; False at end of stream."""
        if self._eof:
            return False
        if self.deadline is None:
            wait = self.idle_timeout
        else:
            wait = self.deadline - time.monotonic()
            if wait <= 0:
                self.timed_out = True
                raise TimeoutError("request deadline passed")
        self._sock.settimeout(wait)
        try:
            chunk = self._sock.recv(65536)
        except TimeoutError:
            self.timed_out = self.deadline is not None
            raise
        except ConnectionError:
            chunk = b""                        # a reset peer: the same as its end of stream
        if not chunk:
            self._eof = True
            return False
        self._buf += chunk
        return True

    def readline(self, limit: int = -1) -> bytes:
        while True:
            end = self._buf.find(b"\n")
            if end >= 0 and (limit < 0 or end < limit):
                n = end + 1
                break
            if 0 <= limit <= len(self._buf):
                n = limit
                break
            if not self._fill():
                n = len(self._buf)
                break
        line = bytes(self._buf[:n])
        del self._buf[:n]
        return line

    def read(self, n: int = -1) -> bytes:
        if n < 0:
            while self._fill():
                pass
            n = len(self._buf)
        while len(self._buf) < n and self._fill():
            pass
        data = bytes(self._buf[:n])
        del self._buf[:n]
        return data

    def close(self) -> None:
        self._buf.clear()


def linger_close(sock: socket.socket, seconds: float, limit: int = 1 << 20) -> None:
    """Half-close, then read and discard what the peer still sends (at most `seconds`, `limit`
    bytes): closing with unread bytes would send a reset that can destroy the answer before the
    peer reads it."""
    try:
        sock.shutdown(socket.SHUT_WR)
        end = time.monotonic() + seconds
        got = 0
        while got < limit:
            wait = end - time.monotonic()
            if wait <= 0:
                break
            sock.settimeout(wait)
            chunk = sock.recv(65536)
            if not chunk:
                break
            got += len(chunk)
    except OSError:
        pass


__all__ = ["DeadlineReader", "linger_close"]

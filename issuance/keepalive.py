"""Kept-alive HTTP/1.1 for the back office's service links: a client pool and a server base.

Two links use it: kiosk → 証明書交付センター (tools/kiosk.py) and centre → the JPKI validity
service's OCSP responder (issuance/ocsp.py). On loopback a fresh connection per request costs a
connect, an accept and a new server thread every time, which was most of the kiosk's decision
time (bench P4); a long-lived link between two services is also what such services keep in
practice.

Client (`KeepAliveClient`): idle connections are pooled (one per concurrent caller) and reused
while younger than KEEPALIVE_IDLE, Nagle is off (http.client writes headers and body apart; with
delayed ACK on the far side a reused connection would stall ~40 ms). A reused connection that
turns out closed by the server before it answered is replaced once by a fresh one: the servers
here answer every request they read, so nothing was processed on it.

Server (`KeepAliveServer` + `KeepAliveHandler`): HTTP/1.1 with Nagle off and one buffered write
per answer (headers and body together); `shutdown()` also ends the kept-alive connections, so a
stopped service answers nothing more; an idle connection is closed after the handler timeout
(10 s), and a peer that drops its connection is routine, logged at DEBUG only.
"""
from __future__ import annotations

import http.client
import logging
import socket
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

log = logging.getLogger("mynaemu.http")

# A kept-alive connection idle longer than this is closed rather than reused: the servers drop
# idle connections after their handler timeout (10 s), and a fresh connection beats a stale one.
KEEPALIVE_IDLE = 5.0
SERVER_IDLE_TIMEOUT = 10


class AnswerTooLarge(http.client.HTTPException):
    """The answer's body is longer than the caller allowed."""


class KeepAliveClient:
    """Requests to one http(s) base URL over pooled, kept-alive connections. Thread-safe."""

    def __init__(self, url: str, *, timeout: float):
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"need an http(s) URL with a host, got {url!r}")
        self.url = url.rstrip("/")
        self.timeout = timeout
        self._https = parts.scheme == "https"
        self._host, self._port = parts.hostname, parts.port
        self.base_path = parts.path.rstrip("/")
        self._idle: list = []             # (connection, time it went idle)
        self._lock = threading.Lock()

    def close(self) -> None:
        """Close the idle connections (the client stays usable: new ones open on demand)."""
        with self._lock:
            idle, self._idle = self._idle, []
        for conn, _ in idle:
            conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass  # interpreter shutdown: the sockets go with the process

    def _connection(self):
        """(connection, reused): an idle kept-alive connection, or a new one."""
        now = time.monotonic()
        with self._lock:
            while self._idle:
                conn, since = self._idle.pop()
                if now - since < KEEPALIVE_IDLE:
                    return conn, True
                conn.close()
        cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
        return cls(self._host, self._port, timeout=self.timeout), False

    def _keep(self, conn, response) -> None:
        if response.will_close:
            conn.close()
            return
        with self._lock:
            self._idle.append((conn, time.monotonic()))

    def exchange(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None, *,
                 limit: int | None = None):
        """One request to base path + `path`: (status, headers, payload).

        `limit` caps the body read (AnswerTooLarge beyond it; that connection is dropped).
        Transport failures raise OSError or http.client.HTTPException.
        """
        for attempt in (0, 1):
            conn, reused = self._connection()
            try:
                if conn.sock is None:
                    conn.connect()
                    conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                conn.request(method, (self.base_path + path) or "/", body=body, headers=headers or {})
                response = conn.getresponse()
                payload = response.read() if limit is None else response.read(limit + 1)
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                conn.close()
                if reused and attempt == 0:
                    continue          # the server closed the idle connection first: go fresh
                raise
            except BaseException:
                conn.close()
                raise
            if limit is not None and len(payload) > limit:
                conn.close()          # the rest of the body is unread: the connection is unusable
                raise AnswerTooLarge(f"answer longer than {limit} bytes")
            self._keep(conn, response)
            return response.status, response.headers, payload
        raise AssertionError("unreachable")


class KeepAliveServer(ThreadingHTTPServer):
    """A threading HTTP server whose shutdown() also ends its kept-alive connections."""

    daemon_threads = True

    def __init__(self, address, handler):
        if ":" in address[0]:
            self.address_family = socket.AF_INET6  # e.g. "::1"
        self._open: set = set()            # connections being served (kept alive between requests)
        self._open_lock = threading.Lock()
        super().__init__(address, handler)

    def process_request(self, request, client_address):
        with self._open_lock:
            self._open.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request):
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request, client_address):
        # With kept-alive connections a peer that goes away (reset, broken pipe) is routine and
        # is not worth a traceback on stderr (the stdlib default); anything else is logged.
        exc = sys.exc_info()[1]
        if isinstance(exc, ConnectionError):
            log.debug("%s connection dropped: %s", client_address[0], exc)
            return
        log.exception("HTTP error with %s", client_address[0])

    def shutdown(self) -> None:
        super().shutdown()
        self.server_close()
        with self._open_lock:
            still_open = list(self._open)
        for sock in still_open:
            try:
                sock.shutdown(socket.SHUT_RDWR)   # wakes the handler's readline: it ends
            except OSError:
                pass  # already closed by the peer


class KeepAliveHandler(BaseHTTPRequestHandler):
    """HTTP/1.1, Nagle off, one write per answer; idle connections end after the timeout."""

    timeout = SERVER_IDLE_TIMEOUT
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    # A buffered wfile (flushed by the stdlib after each request) sends headers and body in one
    # write: two writes woke the client for the headers and then made it wait for the body.
    wbufsize = 1 << 18

    def log_error(self, format, *args):
        if format.startswith("Request timed out"):
            # An idle kept-alive connection reaching the handler timeout: routine, not an error.
            log.debug("%s idle connection closed after %s s", self.client_address[0], self.timeout)
            return
        self.log_refusal(format, *args)

    def log_refusal(self, format, *args):
        """Where log_error's other messages go (a subclass may redact them)."""
        log.warning("%s http error: %s", self.client_address[0], format % args)


__all__ = ["KeepAliveClient", "KeepAliveServer", "KeepAliveHandler", "AnswerTooLarge", "KEEPALIVE_IDLE"]

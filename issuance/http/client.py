"""The client side of the back office's kept-alive links (`KeepAliveClient`): a pool of idle
HTTP/1.1 connections reused while young, Nagle off, one retry on a connection the server had
closed. The server side and the reasons are in keepalive.py."""
from __future__ import annotations

import http.client
import socket
import threading
import time
import urllib.parse

# A kept-alive connection idle longer than this is closed rather than reused: the servers drop
# idle connections after their handler timeout (10 s), and a fresh connection beats a stale one.
KEEPALIVE_IDLE = 5.0


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

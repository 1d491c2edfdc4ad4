"""Kept-alive HTTP/1.1 for the back office's service links: a client pool (client.py) and a server base.

Two links use it: kiosk → 証明書交付センター (tools/terminal/kiosk.py) and centre → the JPKI validity
service's OCSP responder (issuance/pki/ocsp.py). On loopback a fresh connection per request costs a
connect, an accept and a new server thread every time, which was most of the kiosk's decision
time (bench P4); a long-lived link between two services is also what such services keep in
practice.

Client (`KeepAliveClient`, client.py): idle connections are pooled (one per concurrent caller) and reused
while younger than KEEPALIVE_IDLE, Nagle is off (http.client writes headers and body apart; with
delayed ACK on the far side a reused connection would stall ~40 ms). A reused connection that
turns out closed by the server before it answered is replaced once by a fresh one: the servers
here answer every request they read, so nothing was processed on it.

Server (`KeepAliveServer` + `KeepAliveHandler`), the base of every back-office service (the
centre, behind which the municipalities answer, and the OCSP/CRL responder), so each trust-
boundary rule is kept once, here:
- listen backlog 1024 (the stdlib's 5 reset most of 200 simultaneous clients);
- a bounded worker pool (`max_workers`, default 64) fed by a bounded queue (`max_pending`); a
  connection finding the queue full gets 503 + Retry-After, never a silent drop; once a queued
  connection has waited `patience` (50 ms) the workers idling on kept-alive links hand them
  back to the accepting thread, which queues each again when its next request arrives (so 200
  kept-alive clients share 64 threads without being disconnected);
- `request_deadline` (10 s) for reading a whole request (line, headers, body): a slowloris or
  a half-sent body gets 408 and the connection closes, freeing the worker; `idle_timeout` (10 s)
  between kept-alive requests;
- bodies only with one valid Content-Length (`read_body`): Transfer-Encoding (chunked) → 400,
  malformed/repeated length or a short body → 400, none → 411, over the limit → 413; the
  stdlib's own errors (request line, header limits, version, method) go through the service's
  `refuse()` format; an exception in a handler → 500 without detail, never a dropped
  connection; refusals whose request may be partly unread are closed by `linger_close` so the
  answer is not destroyed by a reset. HTTP/1.1 with Nagle off and one buffered write per answer.
"""
from __future__ import annotations

import logging
import queue
import re
import select
import selectors
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

from mynaemu.issuance.http.client import KEEPALIVE_IDLE, AnswerTooLarge, KeepAliveClient  # noqa: F401  (re-exported)
from mynaemu.issuance.http.reader import DeadlineReader, linger_close

log = logging.getLogger("mynaemu.http")

SERVER_IDLE_TIMEOUT = 10
# Reading one request (request line, headers, body) may take at most this long (slowloris).
REQUEST_DEADLINE = 10.0
_LENGTH_RE = re.compile(r"[0-9]{1,12}")


class KeepAliveServer(HTTPServer):
    """An HTTP server with a bounded worker pool whose shutdown() also ends kept-alive links.

    The pattern every service of the back office shares (the centre, the OCSP/CRL responder and,
    behind the centre, the municipalities), fixed here once:

    - Listen backlog `request_queue_size` (1024; the stdlib's 5 reset most of 200 simultaneous
      clients).
    - A pool of at most `max_workers` threads, started as needed, takes accepted connections
      from a queue of at most `max_pending`. A connection that finds that queue full is answered
      503 with Retry-After (never dropped silently). When a connection has waited for a worker
      longer than `patience`, workers idling on kept-alive connections hand them back (parked,
      watched by serve_forever, queued again when readable), so idle links cannot starve
      waiting clients and are not disconnected either.
    - `request_deadline` (s) bounds reading one request: request line, headers and body together
      (408 and close after it); `idle_timeout` bounds the wait for the next request on a
      kept-alive connection.
    """

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024
    max_workers = 64
    max_pending = 1024
    request_deadline = REQUEST_DEADLINE
    idle_timeout = SERVER_IDLE_TIMEOUT
    patience = 0.05     # s a queued connection may wait before kept-alive links make way for it

    def __init__(self, address, handler, *, max_workers: int | None = None, max_pending: int | None = None,
                 request_deadline: float | None = None, idle_timeout: float | None = None,
                 listener: socket.socket | None = None):
        """`listener`: an already listening socket to accept on instead of binding `address`
        (worker processes sharing their parent's socket, issuance/http/prefork.py)."""
        if listener is not None:
            address = listener.getsockname()
        if ":" in address[0]:
            self.address_family = socket.AF_INET6  # e.g. "::1"
        for name, value in (("max_workers", max_workers), ("max_pending", max_pending),
                            ("request_deadline", request_deadline), ("idle_timeout", idle_timeout)):
            if value is not None:
                if not value > 0:
                    raise ValueError(f"{name} must be positive, got {value!r}")
                setattr(self, name, value)
        self._open: set = set()            # connections accepted and not yet closed
        self._open_lock = threading.Lock()
        self._queue: queue.Queue = queue.Queue(maxsize=int(self.max_pending))
        self._workers: list[threading.Thread] = []
        self._idle_workers = 0
        self._pool_lock = threading.Lock()
        self._stopping = False
        # Written to when connections wait for a worker: wakes the workers idling on kept-alive
        # connections (KeepAliveHandler._await_request) so they give their connection up.
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        # Idle kept-alive connections handed back by workers while others wait: the accepting
        # thread watches them and queues each again when its next request arrives.
        self._park_r, self._park_w = socket.socketpair()
        self._park_r.setblocking(False)
        self._park_w.setblocking(False)
        self._to_park: list = []
        self._parked: dict = {}            # socket -> (client address, parked since); accept thread
        super().__init__(address, handler, bind_and_activate=listener is None)
        if listener is not None:
            # Shared with other processes: accept() must not block when another one took the
            # connection (socketserver then just returns to the loop).
            self.socket.close()
            self.socket = listener
            listener.setblocking(False)
            self.server_address = listener.getsockname()
            self.server_name, self.server_port = str(self.server_address[0]), self.server_address[1]

    # -- the pool ---------------------------------------------------------------------------
    def waiting(self) -> bool:
        """Whether an accepted connection has waited for a worker longer than `patience`.

        Not merely "the queue is not empty": a burst of connects is queued for a moment until
        the pool picks it up, and closing kept-alive links at every such moment made their
        clients reconnect, which queued more (a collapse to a fraction of the rate)."""
        try:
            oldest = self._queue.queue[0]
        except IndexError:
            return False
        if oldest is None:
            return True         # stopping (a worker's end marker): give kept-alive links up
        return time.monotonic() - oldest[2] > self.patience

    def process_request(self, request, client_address):
        with self._open_lock:
            self._open.add(request)
        self._enqueue(request, client_address)

    def _enqueue(self, request, client_address) -> None:
        try:
            self._queue.put_nowait((request, client_address, time.monotonic()))
        except queue.Full:
            self._overloaded(request, client_address)
            return
        with self._pool_lock:
            spawn = self._queue.qsize() > self._idle_workers and len(self._workers) < self.max_workers
            if spawn:
                worker = threading.Thread(target=self._work, name=f"{type(self).__name__}-worker",
                                          daemon=self.daemon_threads)
                self._workers.append(worker)
        if spawn:
            worker.start()
        elif self._queue.qsize() > self._idle_workers:
            # No free worker will take it: the ones idling on kept-alive links must look
            # (_await_request). Only then: waking them all for every connection is a herd.
            self._wake()

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"!")
        except (BlockingIOError, OSError):
            pass  # the pipe is full (already signalled) or closed (stopping)

    def drain_wake(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except (BlockingIOError, OSError):
            pass

    def _work(self) -> None:
        while True:
            with self._pool_lock:
                self._idle_workers += 1
            try:
                item = self._queue.get()
            finally:
                with self._pool_lock:
                    self._idle_workers -= 1
            if item is None:
                return
            request, client_address, _ = item
            handler = None
            try:
                handler = self.RequestHandlerClass(request, client_address, self)
            except Exception:
                self.handle_error(request, client_address)
            if handler is not None and handler.parked and not self._stopping:
                self._park(request, client_address)
            else:
                self.shutdown_request(request)

    # -- parked kept-alive connections -----------------------------------------------------
    def _park(self, request, client_address) -> None:
        with self._pool_lock:
            self._to_park.append((request, client_address))
        try:
            self._park_w.send(b"!")
        except (BlockingIOError, OSError):
            pass  # already signalled, or stopping (serve_forever's end closes what is left)

    def serve_forever(self, poll_interval=0.5):
        """The stdlib loop, also watching parked connections: one that becomes readable is
        queued for a worker again; one idle longer than `idle_timeout` is closed."""
        self._BaseServer__is_shut_down.clear()
        try:
            with selectors.DefaultSelector() as selector:
                selector.register(self, selectors.EVENT_READ, None)
                selector.register(self._park_r, selectors.EVENT_READ, None)
                next_sweep = time.monotonic() + poll_interval
                while not self._BaseServer__shutdown_request:
                    ready = selector.select(poll_interval)
                    if self._BaseServer__shutdown_request:
                        break
                    for key, _ in ready:
                        if key.fileobj is self:
                            self._handle_request_noblock()
                        elif key.fileobj is self._park_r:
                            self._take_parked(selector)
                        else:
                            selector.unregister(key.fileobj)
                            address, _ = self._parked.pop(key.fileobj)
                            self._enqueue(key.fileobj, address)
                    now = time.monotonic()
                    if now >= next_sweep:
                        next_sweep = now + poll_interval
                        for sock, (_, since) in list(self._parked.items()):
                            if now - since > self.idle_timeout:
                                selector.unregister(sock)
                                del self._parked[sock]
                                self.shutdown_request(sock)
                    self.service_actions()
        finally:
            for sock in list(self._parked):
                self.shutdown_request(sock)
            self._parked.clear()
            self._BaseServer__shutdown_request = False
            self._BaseServer__is_shut_down.set()

    def _take_parked(self, selector) -> None:
        try:
            while self._park_r.recv(4096):
                pass
        except (BlockingIOError, OSError):
            pass
        with self._pool_lock:
            new, self._to_park = self._to_park, []
        now = time.monotonic()
        for sock, address in new:
            try:
                selector.register(sock, selectors.EVENT_READ, None)
            except (ValueError, OSError):      # closed meanwhile (shutdown)
                self.shutdown_request(sock)
                continue
            self._parked[sock] = (address, now)

    def _overloaded(self, request, client_address) -> None:
        """The queue is full: answer 503 at once from the accepting thread, then close."""
        log.warning("%s refused: %d connections already wait for a worker", client_address[0], self.max_pending)
        body = b"busy: too many connections wait for a worker; retry shortly\n"
        answer = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=us-ascii\r\n"
                  b"Retry-After: 1\r\nConnection: close\r\nContent-Length: %d\r\n\r\n" % len(body)) + body
        try:
            request.setblocking(False)     # the accepting thread must not wait on one client
            request.send(answer)
            while request.recv(65536):     # what already arrived: closing on unread bytes
                pass                       # would reset the connection before the 503 is read
        except OSError:
            pass
        self.shutdown_request(request)

    # -- lifecycle --------------------------------------------------------------------------
    def shutdown_request(self, request):
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request, client_address):
        # With kept-alive connections a peer that goes away (reset, broken pipe) is routine and
        # is not worth a traceback on stderr (the stdlib default); anything else is logged.
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError)):
            log.debug("%s connection dropped: %s", client_address[0], exc)
            return
        log.exception("HTTP error with %s", client_address[0])

    def server_close(self) -> None:
        super().server_close()
        self._stopping = True
        with self._pool_lock:
            workers = list(self._workers)
        for _ in workers:
            try:
                self._queue.put_nowait(None)
            except queue.Full:
                break  # daemon workers end with the process; shutdown() closed their sockets
        with self._pool_lock:
            left, self._to_park = self._to_park, []
        for sock, _ in left:
            self.shutdown_request(sock)
        for end in (self._wake_w, self._wake_r, self._park_w, self._park_r):
            end.close()

    def shutdown(self) -> None:
        super().shutdown()
        with self._open_lock:
            still_open = list(self._open)
        for sock in still_open:
            try:
                sock.shutdown(socket.SHUT_RDWR)   # wakes the handler's read: it ends
            except OSError:
                pass  # already closed by the peer
        self.server_close()


class KeepAliveHandler(BaseHTTPRequestHandler):
    """HTTP/1.1, Nagle off, one write per answer, every read under the server's deadline.

    Subclasses answer through `refuse(status, reason)` for every 4xx/5xx (the stdlib's own
    errors included) and read a body with `read_body(limit)`; an exception escaping a do_*
    method becomes a 500 with no detail (logged here), never a dropped connection.
    """

    timeout = SERVER_IDLE_TIMEOUT
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    # A buffered wfile (flushed after each request) sends headers and body in one write: two
    # writes woke the client for the headers and then made it wait for the body.
    wbufsize = 1 << 18
    server: KeepAliveServer
    parked = False     # the connection was handed back to the server idle (see _await_request)

    def setup(self):
        super().setup()
        self.rfile.close()
        self.rfile = DeadlineReader(self.connection, self.server.idle_timeout)
        # The first request's deadline runs from the accept: a client that connects and sends
        # nothing is a slowloris too.
        self.rfile.deadline = time.monotonic() + self.server.request_deadline
        self._linger = False

    def handle(self):
        self.close_connection = True
        self.handle_one_request()
        while not self.close_connection and self._await_request():
            self.handle_one_request()

    def _await_request(self) -> bool:
        """Wait for the next request on a kept-alive connection: True once its first bytes are
        here; False after the idle timeout or, with `parked` set, when other connections wait
        for a worker: this idle one is then handed back to the server (KeepAliveServer.
        serve_forever watches it and queues it again when its next request comes)."""
        if self.rfile.buffered:     # a pipelined request is here already (only this reader has it)
            self.rfile.deadline = time.monotonic() + self.server.request_deadline
            return True
        if self.server.waiting():
            # Others have waited longer than `patience`: go to the back of the line even if the
            # next request is already on its way (a busy link must not keep its worker forever).
            self.parked = True
            return False
        poller = select.poll()
        poller.register(self.connection, select.POLLIN | select.POLLPRI)
        server = self.server
        try:
            poller.register(server._wake_r, select.POLLIN)
        except (OSError, ValueError):
            return False  # the server is stopping
        alone = select.poll()          # this connection only, while a queued one is young
        alone.register(self.connection, select.POLLIN | select.POLLPRI)
        end = time.monotonic() + server.idle_timeout
        while True:
            if server.waiting():
                self.parked = True
                return False
            wait = end - time.monotonic()
            if wait <= 0:
                log.debug("%s idle connection closed after %s s", self.client_address[0], server.idle_timeout)
                return False
            if server._queue.qsize():
                # Someone is queued but not yet for long: look again when it would be.
                events = dict(alone.poll(min(wait, server.patience) * 1000))
            else:
                events = dict(poller.poll(wait * 1000))
            if self.connection.fileno() in events:
                self.rfile.deadline = time.monotonic() + server.request_deadline
                return True
            if events and not server._queue.qsize():
                server.drain_wake()   # a stale signal: nobody waits any more
                if server._stopping:
                    return False

    def handle_one_request(self):
        # Until parse_request sets them (an answer to a request line that never came needs them).
        self.command = self.path = self.requestline = ""
        self.request_version = self.protocol_version
        self._status = None
        try:
            self._one_request()
        except TimeoutError:
            self.close_connection = True
            if self.rfile.timed_out and self._status is None:
                self.refuse(408, "the request did not arrive within "
                                 f"{self.server.request_deadline:g} s")
                self._flush()
                self._linger = False   # a slow sender: what it sent is read; do not wait on it
            log.info("%s request not complete within the deadline: connection closed", self.client_address[0])
        except ConnectionError:
            self.close_connection = True
        except Exception:
            self.close_connection = True
            log.exception("%s internal error in %s %s", self.client_address[0], self.command,
                          getattr(self, "_route", "-"))
            if self._status is None:
                self.refuse(500, "internal error")
                self._flush()
        finally:
            self.rfile.deadline = None
            self.rfile.timed_out = False

    def _flush(self) -> None:
        try:
            self.wfile.flush()
        except OSError:
            self.close_connection = True

    def _one_request(self):
        # The stdlib's handle_one_request without its catch of TimeoutError (handled above).
        self.raw_requestline = self.rfile.readline(65537)
        if len(self.raw_requestline) > 65536:
            self.requestline = self.request_version = self.command = ""
            self.send_error(414)
            return
        if not self.raw_requestline:
            self.close_connection = True
            return
        if not self.parse_request():
            return
        if self.request_version == "HTTP/0.9":
            self.send_error(400, "HTTP/0.9 is not supported")
            return
        method = getattr(self, "do_" + self.command, None)
        if method is None:
            self.send_error(501, f"unsupported method {self.command[:16]!r}")
            return
        method()
        self.wfile.flush()

    def finish(self):
        super().finish()
        if self._linger:
            linger_close(self.connection, 1.0)

    # -- answers ----------------------------------------------------------------------------
    def send_response_only(self, code, message=None):
        self._status = code
        super().send_response_only(code, message)

    def end_headers(self):
        # The answer is written under the deadline too (the reader left the socket's timeout
        # at what remained of it).
        self.connection.settimeout(self.server.request_deadline)
        if self.close_connection and self._status is not None and self._status >= 400:
            self._linger = True   # the request may be partly unread: see linger_close
        super().end_headers()

    def send_error(self, code, message=None, explain=None):
        """The stdlib's errors (bad request line, header limits, …) in the service's format."""
        self.close_connection = True
        if message is None:
            message = self.responses.get(code, ("error",))[0]
        # A request line that did not parse leaves the stdlib's HTTP/0.9 default in place, which
        # would answer without a status line; nobody here speaks HTTP/0.9.
        self.request_version = self.protocol_version
        self.refuse(code, message)

    def refuse(self, status: int, reason: str) -> None:
        """Answer `status` with a short `reason` (plain text here; a service may use its format).
        Sets close_connection when the request's end is unknown (any 4xx/5xx before the body was
        read: the caller does that by setting close_connection first)."""
        self.log_refusal("%d %s", status, reason)
        body = (reason + "\n").encode("utf-8", "replace")
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def read_body(self, limit: int) -> bytes | None:
        """The request body (Content-Length framing, at most `limit` bytes), or None after a
        4xx answer: 400 for chunked or any other Transfer-Encoding, a malformed or repeated
        Content-Length or a body shorter than announced; 411 without a length; 413 over
        `limit`. The connection closes after every refusal (where the next request starts is
        unknown). Reading is bounded by the request deadline (TimeoutError → 408)."""
        self.close_connection = True
        if self.headers.get_all("Transfer-Encoding"):
            self.refuse(400, "Transfer-Encoding is not supported: send the body with Content-Length")
            return None
        lengths = self.headers.get_all("Content-Length") or []
        if not lengths:
            self.refuse(411, "Content-Length required")
            return None
        if len(set(v.strip() for v in lengths)) != 1 or not _LENGTH_RE.fullmatch(lengths[0].strip()):
            self.refuse(400, "Content-Length must be one decimal number")
            return None
        length = int(lengths[0].strip())
        if length > limit:
            self.refuse(413, f"request body over {limit} bytes")
            return None
        body = self.rfile.read(length)
        if len(body) != length:
            self.refuse(400, f"the body ended after {len(body)} of {length} bytes")
            return None
        self.close_connection = False
        return body

    # -- logging ----------------------------------------------------------------------------
    def log_error(self, format, *args):
        self.log_refusal(format, *args)

    def log_refusal(self, format, *args):
        """Where refusals are logged (a subclass may redact them)."""
        log.warning("%s http error: %s", self.client_address[0], format % args)


__all__ = ["KeepAliveClient", "KeepAliveServer", "KeepAliveHandler", "AnswerTooLarge", "KEEPALIVE_IDLE",
           "REQUEST_DEADLINE", "linger_close"]

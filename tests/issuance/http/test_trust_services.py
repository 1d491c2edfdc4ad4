"""Trust boundaries of the back office's HTTP services (issuance/http/keepalive.py's server base, used
by the centre and the OCSP/CRL responder) and of `mynaemu kiosk verify-pdf` at the CLI.

Real sockets on 127.0.0.1 only; every loop is bounded. The time bounds below are behaviour (a
deadline is enforced), not speed: each is several times the configured deadline.
"""
from __future__ import annotations

import datetime as _dt
import http.client
import json
import select
import socket
import threading
import time

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509 import ocsp

from mynaemu.issuance.kiosk import documents, lgpki
from mynaemu.issuance.pki.ca import default_test_pki
from mynaemu.issuance.clock import SettableClock
from mynaemu.issuance.kiosk.centre import Centre
from mynaemu.issuance.kiosk.centre_http import CentreHTTPServer
from mynaemu.issuance.kiosk.residents import MemoryResidentDirectory, synthesize_resident
from mynaemu.issuance.kiosk.wire import request_mac
from mynaemu.issuance.identity import Identity
from mynaemu.issuance.http.keepalive import KeepAliveServer
from mynaemu.issuance.kiosk.keyfiles import load_or_create_signer
from mynaemu.issuance.kiosk.records import MemoryCentreTrail, MemoryKioskHistory
from mynaemu.issuance.kiosk.municipality import MunicipalityServer
from mynaemu.issuance.numbering import individual_number_from_juminhyo_code
from mynaemu.issuance.pki.ocsp import OcspHTTPServer, OcspResponder
from mynaemu.issuance.policy import JST
from mynaemu.issuance.pki.revocation import CrlPublisher, MemoryRevocationSource
from mynaemu.tools.cli import main

AT = _dt.datetime(2026, 3, 2, 12, 0, tzinfo=JST)
KIOSK_ID = "TEST-KIOSK-0042"
KIOSK_KEY = bytes(range(32))
N_CLIENTS = 200


# --- the two services, built but not yet serving ------------------------------------------------
@pytest.fixture(scope="module")
def pki():
    return default_test_pki()


@pytest.fixture(scope="module")
def ocsp_body(pki):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert = pki.auth_ca.issue_auth(key.public_key(), serial=0x4242, not_before=AT - _dt.timedelta(days=1),
                                  not_after=AT + _dt.timedelta(days=365), issue_id="TESTTRUST1")
    builder = ocsp.OCSPRequestBuilder().add_certificate(cert, pki.auth_ca.certificate, hashes.SHA1())
    return builder.build().public_bytes(serialization.Encoding.DER)


def _centre_server(pki, **options) -> CentreHTTPServer:
    centre = Centre(trust_anchor=pki.auth_ca.certificate, directory=MemoryResidentDirectory(),
                    municipalities={}, kiosk_keys={KIOSK_ID: KIOSK_KEY}, clock=SettableClock(AT),
                    trail=MemoryCentreTrail())
    return CentreHTTPServer(("127.0.0.1", 0), centre, **options)


def _ocsp_server(pki, **options) -> OcspHTTPServer:
    source = MemoryRevocationSource()
    source.add_issued("auth", 0x4242, AT + _dt.timedelta(days=365), at=AT - _dt.timedelta(days=1))
    responder = OcspResponder({"auth": pki.auth_ca, "sign": pki.sign_ca}, source, lambda: AT)
    return OcspHTTPServer(("127.0.0.1", 0), responder, CrlPublisher(responder.cas, source), **options)


class Running:
    """A server serving in a thread; stops it (and only it) on exit."""

    def __init__(self, server: KeepAliveServer):
        self.server = server
        self.port = server.server_address[1]
        self.thread = None

    def start(self):
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()
        return self

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.thread is not None:
            self.server.shutdown()
            self.thread.join(5)
        else:
            self.server.server_close()


def _post(path: str, body: bytes, headers: dict | None = None) -> bytes:
    head = {"Host": "127.0.0.1", "Content-Length": str(len(body)), **(headers or {})}
    lines = "".join(f"{k}: {v}\r\n" for k, v in head.items())
    return f"POST {path} HTTP/1.1\r\n{lines}\r\n".encode("latin-1") + body


def _centre_post(path: str, body: bytes, *, close=True) -> bytes:
    mac = request_mac(KIOSK_KEY, "POST", path, body).hex()
    extra = {"Connection": "close"} if close else {}
    return _post(path, body, {"Content-Type": "application/json", "X-Kiosk-Id": KIOSK_ID, "X-Kiosk-Mac": mac,
                              **extra})


def _ocsp_post(body: bytes) -> bytes:
    return _post("/", body, {"Content-Type": "application/ocsp-request", "Connection": "close"})


def _answer(sock: socket.socket) -> tuple[int, http.client.HTTPMessage, bytes]:
    response = http.client.HTTPResponse(sock)
    response.begin()
    return response.status, response.headers, response.read()


def _exchange(port: int, raw: bytes, *, shut_wr: bool = False, timeout: float = 10):
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(raw)
        if shut_wr:
            sock.shutdown(socket.SHUT_WR)
        return _answer(sock)


SERVICES = {
    "centre": (_centre_server, lambda pki, body: _centre_post("/v1/session", b'{"method": "shin"}')),
    "ocsp": (_ocsp_server, lambda pki, body: _ocsp_post(body)),
    "crl": (_ocsp_server, lambda pki, body: b"GET /crl/auth.crl HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
}


# --- 200 simultaneous connections: backlog and bounded pool --------------------------------------
@pytest.mark.parametrize("service", sorted(SERVICES))
def test_200_simultaneous_connections_are_all_answered(service, pki, ocsp_body):
    make, request = SERVICES[service]
    raw = request(pki, ocsp_body)
    server = make(pki)
    assert server.request_queue_size >= 512
    with Running(server) as run:
        # All 200 connect while the server is not yet accepting: they must fit in the listen
        # backlog (with the stdlib's 5 the connects beyond it hang and time out here).
        socks = []
        try:
            for _ in range(N_CLIENTS):
                socks.append(socket.create_connection(("127.0.0.1", run.port), timeout=2))
            run.start()
            results: list = [None] * N_CLIENTS
            barrier = threading.Barrier(N_CLIENTS)

            def client(i):
                try:
                    socks[i].settimeout(60)
                    barrier.wait(10)
                    socks[i].sendall(raw)
                    status, _, body = _answer(socks[i])
                    results[i] = status if body else "empty"
                except (OSError, http.client.HTTPException, threading.BrokenBarrierError) as exc:
                    results[i] = repr(exc)

            threads = [threading.Thread(target=client, args=(i,)) for i in range(N_CLIENTS)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(90)
        finally:
            for sock in socks:
                sock.close()
        assert [r for r in results if r != 200] == []
        # A bounded pool served them, not a thread per connection.
        assert 1 <= len(server._workers) <= server.max_workers < N_CLIENTS


def test_full_queue_is_answered_503_not_dropped(pki):
    server = _centre_server(pki, max_workers=1, max_pending=1, request_deadline=3)
    with Running(server).start() as run:
        holder = socket.create_connection(("127.0.0.1", run.port), timeout=10)
        holder.sendall(b"GET /v1/health HTTP/1.1\r\n")          # keeps the only worker reading
        for _ in range(200):
            if server._queue.qsize() == 0 and len(server._workers) == 1 and server._idle_workers == 0:
                break
            time.sleep(0.01)
        queued = socket.create_connection(("127.0.0.1", run.port), timeout=10)
        queued.sendall(b"GET /v1/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        for _ in range(200):
            if server._queue.qsize() == 1:
                break
            time.sleep(0.01)
        status, headers, body = _exchange(run.port, b"GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert status == 503 and headers["Retry-After"] == "1" and b"retry" in body
        # The queued client is served once the worker is free (the holder times out: 408).
        assert _answer(queued)[0] == 200
        assert _answer(holder)[0] == 408
        holder.close()
        queued.close()


def test_idle_kept_alive_connection_yields_its_worker(pki):
    server = _centre_server(pki, max_workers=1, idle_timeout=60)
    with Running(server).start() as run:
        kept = socket.create_connection(("127.0.0.1", run.port), timeout=10)
        kept.sendall(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n")
        status, headers, _ = _answer(kept)
        assert status == 200 and headers.get("Connection") != "close"   # kept alive, worker idle on it
        t0 = time.monotonic()
        status, _, _ = _exchange(run.port, b"GET /v1/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert status == 200 and time.monotonic() - t0 < 10      # not after the 60 s idle timeout
        # The idle link was handed back to the server, not closed: it is served again.
        assert server._parked or server._to_park
        kept.sendall(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n")
        status, _, _ = _answer(kept)
        assert status == 200 and len(server._workers) == 1
        kept.close()


def test_parked_connection_is_closed_after_the_idle_timeout(pki):
    server = _centre_server(pki, max_workers=1, idle_timeout=1)
    with Running(server).start() as run:
        kept = socket.create_connection(("127.0.0.1", run.port), timeout=10)
        kept.sendall(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert _answer(kept)[0] == 200
        holder = socket.create_connection(("127.0.0.1", run.port), timeout=10)
        holder.sendall(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n")   # kept alive too
        assert _answer(holder)[0] == 200
        t0 = time.monotonic()
        assert kept.recv(1) == b"" and holder.recv(1) == b""     # both closed, none held forever
        assert time.monotonic() - t0 < 8
        assert not server._parked
        kept.close()
        holder.close()


# --- request deadline ------------------------------------------------------------------------
def _until_closed(sock: socket.socket, trickle: bytes | None, limit: float = 15) -> tuple[float, bytes]:
    """Send `trickle` every 0.2 s (if any) until the server answers/closes: (seconds, bytes read)."""
    t0 = time.monotonic()
    got = b""
    while time.monotonic() - t0 < limit:
        readable, _, _ = select.select([sock], [], [], 0.2)
        if readable:
            chunk = sock.recv(65536)
            if not chunk:
                break
            got += chunk
            continue
        if trickle is not None:
            try:
                sock.sendall(trickle)
            except OSError:
                break
    return time.monotonic() - t0, got


@pytest.mark.parametrize("case", ["slow headers", "half a body", "nothing sent"])
@pytest.mark.parametrize("make", [_centre_server, _ocsp_server], ids=["centre", "ocsp"])
def test_slow_clients_are_cut_at_the_deadline_and_the_worker_is_freed(make, case, pki):
    server = make(pki, max_workers=1, request_deadline=1.0)
    with Running(server).start() as run:
        sock = socket.create_connection(("127.0.0.1", run.port), timeout=20)
        if case == "slow headers":       # slowloris: a header line every 0.2 s, forever
            sock.sendall(b"GET /crl/auth.crl HTTP/1.1\r\nHost: x\r\n")
            seconds, got = _until_closed(sock, b"X-Slow: 1\r\n")
        elif case == "half a body":
            path, ctype = ("/v1/session", "application/json") if make is _centre_server else \
                ("/", "application/ocsp-request")
            sock.sendall(_post(path, b"x" * 100, {"Content-Type": ctype})[:-50])
            seconds, got = _until_closed(sock, None)
        else:
            seconds, got = _until_closed(sock, None)
        sock.close()
        assert seconds < 6, f"held {seconds:.1f} s with a 1 s deadline"
        assert got.startswith(b"HTTP/1.1 408 ")
        # The only worker is free again: a normal request is answered.
        path = "/v1/health" if make is _centre_server else "/crl/auth.crl"
        status, _, _ = _exchange(run.port, f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode(),
                                 timeout=5)
        assert status == 200


# --- hostile bodies ----------------------------------------------------------------------------
JSON_BODIES = {
    "not JSON": b"{",
    "empty": b"",
    "deep nesting": b"[" * 100_000,
    "deep but balanced": b'{"method": ' + b"[" * 40 + b"]" * 40 + b"}",
    "not an object": b'["shin"]',
    "method a list": b'{"method": ["shin"]}',
    "method a number": b'{"method": 1}',
    "method missing": b"{}",
    "NaN": b'{"method": NaN}',
    "key twice": b'{"method": "shin", "method": "genko"}',
    "not UTF-8": b'{"method": "\xff\xfe"}',
    "UTF-8 BOM": b'\xef\xbb\xbf{"method": "shin"}',
    "UTF-16": '{"method": "shin"}'.encode("utf-16"),
}
ISSUE_BODIES = {
    "document a list": b'{"method": "shin", "document": ["juminhyo"], "nonce": "AA=="}',
    "with_number a string": b'{"method": "shin", "document": "juminhyo", "nonce": "AA==", "with_number": "yes"}',
    "nonce a number": b'{"method": "shin", "document": "juminhyo", "nonce": 5}',
    "certificate an object": b'{"method": "shin", "document": "juminhyo", "nonce": "AA==", "certificate": {}}',
}


@pytest.fixture(scope="module")
def centre(pki):
    with Running(_centre_server(pki, request_deadline=2)).start() as run:
        yield run


@pytest.fixture(scope="module")
def ocsp_service(pki):
    with Running(_ocsp_server(pki, request_deadline=2)).start() as run:
        yield run


@pytest.mark.parametrize("path,name,body", [("/v1/session", k, v) for k, v in JSON_BODIES.items()]
                         + [("/v1/issue", k, v) for k, v in ISSUE_BODIES.items()])
def test_hostile_json_body_gets_400_with_a_reason(centre, path, name, body):
    status, headers, answer = _exchange(centre.port, _centre_post(path, body, close=False))
    assert status == 400, (name, answer[:200])
    doc = json.loads(answer)
    assert doc["reason"] == "bad-request" and doc["message"] and len(doc["message"]) < 200
    assert "Traceback" not in doc["message"]
    assert headers["X-Centre-Mac"]                 # authenticated: the kiosk can trust the refusal


def _framing_cases(path: str, ctype: str, good: bytes) -> dict:
    head = f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {ctype}\r\n"
    return {
        "oversize": ((head + "Content-Length: 99999999\r\n\r\n").encode(), False, 413),
        "length not a number": ((head + "Content-Length: 12abc\r\n\r\n").encode() + good, False, 400),
        "length negative": ((head + "Content-Length: -1\r\n\r\n").encode() + good, False, 400),
        "length with a sign": ((head + "Content-Length: +5\r\n\r\n").encode() + good, False, 400),
        "two lengths": ((head + f"Content-Length: {len(good)}\r\nContent-Length: 3\r\n\r\n").encode() + good,
                        False, 400),
        "no length": ((head + "\r\n").encode() + good, True, 411),
        "chunked": ((head + "Transfer-Encoding: chunked\r\n\r\n").encode()
                    + b"%x\r\n" % len(good) + good + b"\r\n0\r\n\r\n", False, 400),
        "chunked and length": ((head + f"Transfer-Encoding: chunked\r\nContent-Length: {len(good)}\r\n\r\n")
                               .encode() + good, False, 400),
        "body shorter than length": ((head + f"Content-Length: {len(good) + 10}\r\n\r\n").encode() + good,
                                     True, 400),
        "bad request line": (b"GARBAGE\r\n\r\n", False, 400),
        "bad version": (b"GET / HTTP/9.9\r\n\r\n", False, 505),
        "header line too long": ((head + "X-Long: " + "a" * 70_000 + "\r\n\r\n").encode(), False, 431),
        "too many headers": ((head + "X-H: 1\r\n" * 150 + "\r\n").encode(), False, 431),
        "unknown method": (b"BREW / HTTP/1.1\r\nHost: x\r\n\r\n", False, 501),
    }


@pytest.mark.parametrize("name", sorted(_framing_cases("/", "x", b"")))
@pytest.mark.parametrize("service", ["centre", "ocsp"])
def test_malformed_framing_gets_4xx_with_a_reason(request, service, name, ocsp_body):
    run = request.getfixturevalue("centre" if service == "centre" else "ocsp_service")
    path, ctype, good = (("/v1/session", "application/json", b'{"method": "shin"}') if service == "centre"
                         else ("/", "application/ocsp-request", ocsp_body))
    raw, shut_wr, expected = _framing_cases(path, ctype, good)[name]
    status, headers, body = _exchange(run.port, raw, shut_wr=shut_wr)
    assert status == expected, body[:200]
    assert 0 < len(body) < 300 and b"Traceback" not in body
    assert headers["Connection"] == "close"
    if service == "centre":
        assert json.loads(body)["reason"] == "bad-request"
    # The service is unharmed.
    status, _, _ = _exchange(run.port, b"GET /crl/auth.crl HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                             if service == "ocsp" else
                             b"GET /v1/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert status == 200


def test_good_request_after_refused_one_is_served_on_a_new_connection(centre):
    status, _, _ = _exchange(centre.port, _centre_post("/v1/session", b"{", close=False))
    assert status == 400
    status, _, body = _exchange(centre.port, _centre_post("/v1/session", b'{"method": "shin"}'))
    assert status == 200 and json.loads(body)["nonce"]


# --- verify-pdf: the signer must be the named municipality's ----------------------------------
def _resident_directory():
    directory = MemoryResidentDirectory()
    code = "33333333333"
    identity = Identity(name="見本\u3000太郎", address="東京都清瀬市試験町１丁目２番３号", birth=_dt.date(1990, 1, 1),
                        sex="1", individual_number=individual_number_from_juminhyo_code(code, b"test"),
                        juminhyo_code=code, municipality_code="13221")
    directory.add(synthesize_resident(identity, on=AT.date()), auth_serials=[7])
    return directory


def test_cli_refuses_a_pdf_signed_by_another_municipality(tmp_path):
    """The document names 13221 (清瀬市) but 13222's mayor signed it, under the same TEST LGPKI
    root: intact as a signature, refused by `mynaemu kiosk verify-pdf` (exit 7)."""
    home = tmp_path / "home"
    kiyose = load_or_create_signer(home, "13221")
    other = lgpki.load_or_create_signer(home, "13222", name="TEST市13222", mayor="見本\u3000次郎")
    assert other.root == kiyose.root
    genuine = MunicipalityServer("13221", kiyose, _resident_directory(), history=MemoryKioskHistory()).produce_for_certificate(
        7, "zei", with_number=False, at=AT).pdf
    content = documents.inspect_pdf(genuine)["content"]
    forged = documents.render_pdf(content, lgpki.Signer("13221", other.key, other.certificate, other.root)).pdf
    good, bad = tmp_path / "good.pdf", tmp_path / "forged.pdf"
    good.write_bytes(genuine)
    bad.write_bytes(forged)
    runner = CliRunner()
    env = {"MYNAEMU_HOME": str(home)}
    ok = runner.invoke(main, ["kiosk", "verify-pdf", str(good)], env=env)
    assert ok.exit_code == 0 and "intact" in ok.output, ok.output
    refused = runner.invoke(main, ["kiosk", "verify-pdf", str(bad), "--json"], env=env)
    assert refused.exit_code == 7 and '"valid": false' in refused.output and "13222" in refused.output


# --- the centre's session table under a busy centre ---------------------------------------------
def test_expired_sessions_are_dropped_as_new_ones_open(pki):
    clock = SettableClock(AT)
    centre = Centre(trust_anchor=pki.auth_ca.certificate, directory=MemoryResidentDirectory(),
                    municipalities={}, kiosk_keys={KIOSK_ID: KIOSK_KEY}, clock=clock,
                    trail=MemoryCentreTrail())
    for _ in range(500):
        centre.open_session(KIOSK_ID, "shin")
    clock.advance(30)
    live = [centre.open_session(KIOSK_ID, "genko") for _ in range(3)]
    assert len(centre._sessions) == 503
    clock.advance(31)                  # the first 500 are past their 60 s, the last 3 are not
    centre.open_session(KIOSK_ID, "shin")
    assert len(centre._sessions) == 4
    assert {s.method for s in centre._sessions.values()} == {"genko", "shin"}
    assert len(live) == 3

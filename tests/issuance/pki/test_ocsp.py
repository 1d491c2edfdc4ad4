"""The OCSP responder, its loopback HTTP server and the client helpers (issuance/pki/ocsp.py)."""
import base64
import datetime as dt
import logging
import random
import re
import socket
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509 import ocsp

from mynaemu.issuance.pki.ca import TestCA
from mynaemu.issuance.http.keepalive import KeepAliveClient
from mynaemu.issuance.pki.ocsp import (
    CrlUnavailable, OcspClient, OcspResponder, OcspUnavailable, cert_id_hashes, crl_url, fetch_crl,
    ocsp_check, serve_ocsp,
)
from mynaemu.issuance.personas import synthetic_identity
from mynaemu.issuance.pki.revocation import CertStatus, CrlError, MemoryRevocationSource, status_from_crl

UTC = dt.timezone.utc
T0 = dt.datetime(2026, 4, 1, 9, 0, 0, tzinfo=UTC)
H = dt.timedelta(hours=1)
R = x509.ReasonFlags
NOT_AFTER = T0 + dt.timedelta(days=1000)
DER = serialization.Encoding.DER
SUCCESSFUL = ocsp.OCSPResponseStatus.SUCCESSFUL


def _key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def pki():
    start = T0 - dt.timedelta(days=365)
    auth, sign = TestCA.create("auth", key=_key(), not_before=start), TestCA.create("sign", key=_key(), not_before=start)
    ee = _key()
    certs = {
        serial: auth.issue_auth(ee.public_key(), serial=serial, not_before=T0 - dt.timedelta(days=1),
                                not_after=NOT_AFTER, issue_id=f"TESTISSUE{serial:X}")
        for serial in (0x10, 0x11, 0x12, 0x99)
    }
    identity = synthetic_identity(random.Random(7), age=40, on=T0.date())
    sign_cert = sign.issue_sign(ee.public_key(), identity, serial=0x10, not_before=T0 - dt.timedelta(days=1),
                                not_after=NOT_AFTER, issue_id="TESTSIGN10")
    # another generation of the auth CA: the same DN (§7.1), another key
    other_auth = TestCA.create("auth", key=_key(), not_before=start)
    foreign = other_auth.issue_auth(ee.public_key(), serial=0x10, not_before=T0 - dt.timedelta(days=1),
                                    not_after=NOT_AFTER, issue_id="TESTFOREIGN")
    return dict(auth=auth, sign=sign, certs=certs, sign_cert=sign_cert, identity=identity,
                other_auth=other_auth, foreign=foreign)


class Clock:
    def __init__(self, now):
        self.now = now

    def __call__(self):
        return self.now


@pytest.fixture
def source():
    src = MemoryRevocationSource()
    for serial in (0x10, 0x11, 0x12):  # 0x99 is never recorded: unknown
        src.add_issued("auth", serial, NOT_AFTER, at=T0 - dt.timedelta(days=1))
    src.add_issued("sign", 0x10, NOT_AFTER, at=T0 - dt.timedelta(days=1))
    return src


@pytest.fixture
def clock():
    return Clock(T0)


@pytest.fixture
def responder(pki, source, clock):
    return OcspResponder({"auth": pki["auth"], "sign": pki["sign"]}, source, clock)


def _request(cert, issuer, *, algorithm=None, nonce=None):
    builder = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer.certificate, algorithm or hashes.SHA1())
    if nonce is not None:
        builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
    return builder.build().public_bytes(DER)


def _ask(responder, cert, issuer, **kw):
    return ocsp.load_der_ocsp_response(responder.respond(_request(cert, issuer, **kw)))


# --- responder logic ------------------------------------------------------------------------
def test_good_answer_is_signed_by_the_ca(pki, responder):
    answer = _ask(responder, pki["certs"][0x10], pki["auth"])
    assert answer.response_status == SUCCESSFUL
    assert answer.certificate_status == ocsp.OCSPCertStatus.GOOD
    assert answer.serial_number == 0x10
    assert answer.this_update_utc == T0 and answer.next_update_utc == T0 + H
    # the CA is the responder: ResponderID byKey = SHA-1 of the CA key, no certificates attached
    assert answer.responder_key_hash == pki["auth"].certificate.extensions.get_extension_for_class(
        x509.SubjectKeyIdentifier).value.digest
    assert answer.certificates == []
    assert answer.signature_hash_algorithm.name == "sha256"
    pki["auth"].certificate.public_key().verify(answer.signature, answer.tbs_response_bytes,
                                                padding.PKCS1v15(), hashes.SHA256())


def test_hold_is_revoked_certificate_hold_until_released(pki, responder, source, clock):
    cert = pki["certs"][0x10]
    source.hold("auth", 0x10, at=T0 + H)
    clock.now = T0 + 2 * H
    held = _ask(responder, cert, pki["auth"])
    assert held.certificate_status == ocsp.OCSPCertStatus.REVOKED
    assert held.revocation_reason == R.certificate_hold
    assert held.revocation_time_utc == T0 + H
    source.release("auth", 0x10, at=T0 + 3 * H)
    clock.now = T0 + 4 * H
    assert _ask(responder, cert, pki["auth"]).certificate_status == ocsp.OCSPCertStatus.GOOD


def test_revocation_with_reason(pki, responder, source, clock):
    source.revoke("auth", 0x11, R.key_compromise, at=T0 + H)
    source.revoke("auth", 0x12, R.unspecified, at=T0 + H)
    clock.now = T0 + 2 * H
    revoked = _ask(responder, pki["certs"][0x11], pki["auth"])
    assert revoked.certificate_status == ocsp.OCSPCertStatus.REVOKED
    assert (revoked.revocation_reason, revoked.revocation_time_utc) == (R.key_compromise, T0 + H)
    unspecified = _ask(responder, pki["certs"][0x12], pki["auth"])
    assert unspecified.certificate_status == ocsp.OCSPCertStatus.REVOKED
    assert unspecified.revocation_reason is None


def test_signing_ca_answers_for_its_own_certificates(pki, responder, source, clock):
    # the signing certificate replaced at 異動 (MOV-1); the auth certificate with serial 0x10 stays good
    source.revoke("sign", 0x10, R.superseded, at=T0)
    answer = _ask(responder, pki["sign_cert"], pki["sign"])
    assert (answer.certificate_status, answer.revocation_reason) == (ocsp.OCSPCertStatus.REVOKED, R.superseded)
    assert answer.responder_key_hash == pki["sign"].certificate.extensions.get_extension_for_class(
        x509.SubjectKeyIdentifier).value.digest
    assert _ask(responder, pki["certs"][0x10], pki["auth"]).certificate_status == ocsp.OCSPCertStatus.GOOD


def test_unknown_serial(pki, responder):
    answer = _ask(responder, pki["certs"][0x99], pki["auth"])
    assert answer.response_status == SUCCESSFUL
    assert answer.certificate_status == ocsp.OCSPCertStatus.UNKNOWN


def test_not_yet_issued_is_unknown(pki, responder, clock):
    clock.now = T0 - dt.timedelta(days=2)
    assert _ask(responder, pki["certs"][0x10], pki["auth"]).certificate_status == ocsp.OCSPCertStatus.UNKNOWN


@pytest.mark.parametrize("algorithm", [hashes.SHA1(), hashes.SHA256(), hashes.SHA384()])
def test_cert_id_hashes(pki, responder, algorithm):
    answer = _ask(responder, pki["certs"][0x10], pki["auth"], algorithm=algorithm)
    assert answer.certificate_status == ocsp.OCSPCertStatus.GOOD
    assert answer.hash_algorithm.name == algorithm.name
    request = ocsp.load_der_ocsp_request(_request(pki["certs"][0x10], pki["auth"], algorithm=algorithm))
    assert cert_id_hashes(pki["auth"].certificate, algorithm) == (request.issuer_name_hash, request.issuer_key_hash)
    assert (answer.issuer_name_hash, answer.issuer_key_hash) == (request.issuer_name_hash, request.issuer_key_hash)


def test_wrong_issuer_is_unauthorized(pki, responder):
    # same DN, other key: the name hash matches, the key hash does not
    answer = _ask(responder, pki["foreign"], pki["other_auth"])
    assert answer.response_status == ocsp.OCSPResponseStatus.UNAUTHORIZED
    # an issuer name nobody serves
    request = ocsp.OCSPRequestBuilder().add_certificate_by_hash(b"\x01" * 32, b"\x02" * 32, 0x10,
                                                                hashes.SHA256()).build().public_bytes(DER)
    assert ocsp.load_der_ocsp_response(responder.respond(request)).response_status == \
        ocsp.OCSPResponseStatus.UNAUTHORIZED


def test_nonce_is_echoed(pki, responder):
    nonce = bytes(range(32))
    answer = _ask(responder, pki["certs"][0x10], pki["auth"], nonce=nonce)
    echoed = answer.extensions.get_extension_for_class(x509.OCSPNonce)
    assert echoed.value.nonce == nonce and not echoed.critical
    without = _ask(responder, pki["certs"][0x10], pki["auth"])
    assert not any(isinstance(ext.value, x509.OCSPNonce) for ext in without.extensions)


def _der(tag: int, body: bytes) -> bytes:
    n = len(body)
    length = bytes([n]) if n < 0x80 else bytes([0x80 | ((n.bit_length() + 7) // 8)]) + n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag]) + length + body


def _multi_request(one: bytes) -> bytes:
    # OCSPRequest { TBSRequest { requestList SEQUENCE OF Request } } with the Request twice
    assert one[1] < 0x80 and one[3] < 0x80 and one[5] < 0x80  # short-form lengths in this small request
    request = one[6:8 + one[7]]  # the first Request inside requestList
    assert request[0] == 0x30
    return _der(0x30, _der(0x30, _der(0x30, request * 2)))


def test_malformed_requests(pki, responder):
    good = _request(pki["certs"][0x10], pki["auth"])
    bad = [
        b"", b"garbage", good[:-3], good + b"\x00", "text",
        _multi_request(good),
        _request(pki["certs"][0x10], pki["auth"], nonce=b""),  # RFC 8954: empty nonce
        _request(pki["certs"][0x10], pki["auth"], nonce=b"n" * 129),  # RFC 8954: over 128 octets
        ocsp.OCSPRequestBuilder().add_certificate(pki["certs"][0x10], pki["auth"].certificate, hashes.SHA1())
        .add_extension(x509.UnrecognizedExtension(x509.ObjectIdentifier("1.2.3.4"), b"\x05\x00"), critical=True)
        .build().public_bytes(DER),
    ]
    for request in bad:
        answer = ocsp.load_der_ocsp_response(responder.respond(request))
        assert answer.response_status == ocsp.OCSPResponseStatus.MALFORMED_REQUEST, request


def test_multi_request_is_well_formed_der(pki):
    good = _request(pki["certs"][0x10], pki["auth"])
    # a valid DER request with two CertIDs: malformedRequest above is our one-CertID policy
    with pytest.raises(NotImplementedError):
        ocsp.load_der_ocsp_request(_multi_request(good))


def test_source_failure_is_internal_error(pki, clock):
    class Broken:
        def certificate_status(self, ca_kind, serial, at):
            raise RuntimeError("database down")

        def revoked_certificates(self, ca_kind, at):
            raise RuntimeError("database down")

    responder = OcspResponder({"auth": pki["auth"]}, Broken(), clock)
    answer = ocsp.load_der_ocsp_response(responder.respond(_request(pki["certs"][0x10], pki["auth"])))
    assert answer.response_status == ocsp.OCSPResponseStatus.INTERNAL_ERROR
    naive = OcspResponder({"auth": pki["auth"]}, MemoryRevocationSource(), lambda: dt.datetime(2026, 4, 1))
    answer = ocsp.load_der_ocsp_response(naive.respond(_request(pki["certs"][0x10], pki["auth"])))
    assert answer.response_status == ocsp.OCSPResponseStatus.INTERNAL_ERROR


def test_responder_checks_its_configuration(pki, source, clock):
    with pytest.raises(ValueError, match="expected"):
        OcspResponder({"sign": pki["auth"]}, source, clock)
    with pytest.raises(ValueError, match="at least one"):
        OcspResponder({}, source, clock)
    with pytest.raises(TypeError, match="clock"):
        OcspResponder({"auth": pki["auth"]}, source, T0)
    with pytest.raises(ValueError, match="validity"):
        OcspResponder({"auth": pki["auth"]}, source, clock, validity=dt.timedelta(0))


# --- HTTP -----------------------------------------------------------------------------------
@pytest.fixture
def server(responder):
    srv, thread, url = serve_ocsp(responder)
    yield url
    srv.shutdown()
    thread.join(5)
    assert not thread.is_alive()


def test_http_round_trips_post_and_get(pki, server, source, clock):
    cert, issuer = pki["certs"][0x10], pki["auth"].certificate
    assert server.startswith("http://127.0.0.1:")
    for method in ("POST", "GET"):
        assert ocsp_check(server, cert, issuer, method=method, at=T0) == CertStatus("good", not_after=NOT_AFTER)
    source.hold("auth", 0x10, at=T0 + H)
    clock.now = T0 + 2 * H
    for method in ("POST", "GET"):
        assert ocsp_check(server, cert, issuer, method=method, at=clock.now) == \
            CertStatus("hold", T0 + H, R.certificate_hold, NOT_AFTER)
    source.release("auth", 0x10, at=T0 + 3 * H)
    clock.now = T0 + 4 * H
    assert ocsp_check(server, cert, issuer, at=clock.now, hash_algorithm=hashes.SHA1()).status == "good"
    assert ocsp_check(server, pki["certs"][0x99], issuer, at=clock.now).status == "unknown"
    source.revoke("sign", 0x10, R.superseded, at=clock.now)
    assert ocsp_check(server, pki["sign_cert"], pki["sign"].certificate, at=clock.now, nonce=False) == \
        CertStatus("revoked", clock.now, R.superseded, NOT_AFTER)


def test_get_with_raw_base64_path(pki, server):
    # RFC 6960 A.1 asks for url-encoding, but many clients send '/' and '+' unescaped
    der = _request(pki["certs"][0x10], pki["auth"])
    path = base64.b64encode(der).decode()
    with urllib.request.urlopen(f"{server}/{path}", timeout=5) as answer:
        assert answer.headers["Content-Type"] == "application/ocsp-response"
        assert ocsp.load_der_ocsp_response(answer.read()).certificate_status == ocsp.OCSPCertStatus.GOOD
    with urllib.request.urlopen(f"{server}/not-base64!", timeout=5) as answer:
        assert ocsp.load_der_ocsp_response(answer.read()).response_status == \
            ocsp.OCSPResponseStatus.MALFORMED_REQUEST


def test_http_errors(pki, server):
    der = _request(pki["certs"][0x10], pki["auth"])
    cases = [
        (urllib.request.Request(server, data=der, method="POST",
                                headers={"Content-Type": "application/octet-stream"}), 415),
        (urllib.request.Request(server + "/ocsp/x", data=der, method="POST",
                                headers={"Content-Type": "application/ocsp-request"}), 404),
        (urllib.request.Request(server + "/crl/card.crl"), 404),
        (urllib.request.Request(server + "/crl/auth"), 404),
    ]
    for request, code in cases:
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(request, timeout=5)
        assert caught.value.code == code


def test_crl_over_http(pki, server, source, clock):
    source.hold("auth", 0x10, at=T0 + H)
    clock.now = T0 + 2 * H
    crl = fetch_crl(crl_url(server, "auth"), pki["auth"].certificate, at=clock.now)
    assert crl.last_update_utc == T0 + 2 * H
    assert status_from_crl(crl, pki["certs"][0x10]) == CertStatus("hold", T0 + H, R.certificate_hold, NOT_AFTER)
    assert status_from_crl(crl, pki["certs"][0x11]).status == "good"
    source.release("auth", 0x10, at=T0 + 3 * H)
    clock.now = T0 + 4 * H
    crl = fetch_crl(crl_url(server, "auth"), pki["auth"].certificate, at=clock.now)
    assert status_from_crl(crl, pki["certs"][0x10]).status == "good"
    sign_crl = fetch_crl(crl_url(server, "sign"), pki["sign"].certificate, at=clock.now)
    assert sign_crl.issuer == pki["sign"].certificate.subject
    with pytest.raises(CrlError, match="issuer"):
        fetch_crl(crl_url(server, "auth"), pki["sign"].certificate, at=clock.now)
    with pytest.raises(CrlError, match="stale"):
        fetch_crl(crl_url(server, "auth"), pki["auth"].certificate, at=clock.now + dt.timedelta(days=2))


def test_access_log_has_no_subject_or_serial(pki, server, caplog):
    caplog.set_level(logging.INFO, logger="mynaemu.issuance.pki.ocsp")
    ocsp_check(server, pki["certs"][0x11], pki["auth"].certificate, method="GET", at=T0)
    ocsp_check(server, pki["sign_cert"], pki["sign"].certificate, at=T0)
    fetch_crl(crl_url(server, "sign"), pki["sign"].certificate, at=T0)
    lines = [r.getMessage() for r in caplog.records if r.name == "mynaemu.issuance.pki.ocsp"]
    assert any("auth good" in line for line in lines) and any("sign good" in line for line in lines)
    assert any("sign crl" in line for line in lines)
    text = "\n".join(lines)
    identity = pki["identity"]
    for secret in ("TESTISSUE11", "TESTSIGN10", identity.name, identity.address, "0x11", "17"):
        assert secret not in text
    # client, method, route, HTTP status, outcome: nothing taken from the request itself
    line_re = re.compile(r"127\.0\.0\.1 (GET|POST) (ocsp|ocsp-get|crl) 200 (auth|sign) (good|crl)")
    assert all(line_re.fullmatch(line) for line in lines), lines


def test_unauthorized_over_http(pki, server):
    with pytest.raises(OcspUnavailable, match="UNAUTHORIZED") as caught:
        ocsp_check(server, pki["foreign"], pki["other_auth"].certificate, at=T0)
    assert caught.value.response_status == ocsp.OCSPResponseStatus.UNAUTHORIZED


def test_stale_or_future_answers_are_refused(pki, server):
    cert, issuer = pki["certs"][0x10], pki["auth"].certificate
    with pytest.raises(OcspUnavailable, match="stale"):
        ocsp_check(server, cert, issuer, at=T0 + 2 * H)
    with pytest.raises(OcspUnavailable, match="future"):
        ocsp_check(server, cert, issuer, at=T0 - H)


def test_caller_errors_are_not_unavailability(pki, server):
    with pytest.raises(ValueError, match="not issued by"):
        ocsp_check(server, pki["certs"][0x10], pki["sign"].certificate, at=T0)
    with pytest.raises(ValueError, match="url"):
        ocsp_check("ftp://127.0.0.1/", pki["certs"][0x10], pki["auth"].certificate, at=T0)
    with pytest.raises(ValueError, match="method"):
        ocsp_check(server, pki["certs"][0x10], pki["auth"].certificate, method="PUT", at=T0)


def _closed_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_closed_port_fails_fast(pki):
    url = f"http://127.0.0.1:{_closed_port()}"
    start = time.monotonic()
    with pytest.raises(OcspUnavailable, match="unreachable"):
        ocsp_check(url, pki["certs"][0x10], pki["auth"].certificate, at=T0)
    with pytest.raises(CrlUnavailable):
        fetch_crl(crl_url(url, "auth"), pki["auth"].certificate, at=T0)
    assert time.monotonic() - start < 2


def test_timeout_is_unavailable(pki):
    with socket.socket() as listener:  # accepts the connection, never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        start = time.monotonic()
        with pytest.raises(OcspUnavailable, match="unreachable"):
            ocsp_check(url, pki["certs"][0x10], pki["auth"].certificate, at=T0, timeout=0.3)
        assert time.monotonic() - start < 2


class _Static:
    """A one-route HTTP server answering every request with a fixed body (a bad responder)."""

    def __init__(self, body: bytes, content_type="application/ocsp-response"):
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self):
                if self.command == "POST":
                    self.rfile.read(int(self.headers["Content-Length"]))
                self.send_response(200)
                self.send_header("Content-Type", outer.content_type)
                self.send_header("Content-Length", str(len(outer.body)))
                self.end_headers()
                self.wfile.write(outer.body)

            do_GET = do_POST = _answer

            def log_message(self, *args):
                pass

        self.body, self.content_type = body, content_type
        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self):
        self.thread.start()
        return self.url

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


def test_bad_responses_are_unavailable(pki, responder):
    cert, issuer = pki["certs"][0x10], pki["auth"].certificate
    replay = responder.respond(_request(cert, pki["auth"], algorithm=hashes.SHA256()))  # no nonce
    other_serial = responder.respond(_request(pki["certs"][0x11], pki["auth"], algorithm=hashes.SHA256()))
    # a response for our certificate, but signed by another key claiming the CA's key id
    forged = (ocsp.OCSPResponseBuilder()
              .add_response(cert, issuer, hashes.SHA256(), ocsp.OCSPCertStatus.GOOD, T0, T0 + H, None, None)
              .responder_id(ocsp.OCSPResponderEncoding.HASH, pki["other_auth"].certificate)
              .sign(pki["other_auth"].key, hashes.SHA256()).public_bytes(DER))
    cases = [
        (b"not der", "undecodable"),
        (replay, "nonce"),
        (other_serial, "another certificate"),
        (forged, "not from the issuing CA"),
    ]
    for body, message in cases:
        with _Static(body) as url:
            with pytest.raises(OcspUnavailable, match=message):
                ocsp_check(url, cert, issuer, at=T0)
    with _Static(replay, content_type="text/html") as url:
        with pytest.raises(OcspUnavailable, match="Content-Type"):
            ocsp_check(url, cert, issuer, at=T0, nonce=False)
    with _Static(b"\x30\x00", content_type="application/pkix-crl") as url:
        with pytest.raises(CrlError, match="undecodable"):
            fetch_crl(url, issuer, at=T0)


def test_bad_signature_is_unavailable(pki, responder):
    cert, issuer = pki["certs"][0x10], pki["auth"].certificate
    good = bytearray(responder.respond(_request(cert, pki["auth"], algorithm=hashes.SHA256())))
    good[-1] ^= 1  # the signature is the last field of a response without certificates
    with _Static(bytes(good)) as url:
        with pytest.raises(OcspUnavailable, match="signature"):
            ocsp_check(url, cert, issuer, at=T0, nonce=False)
    with _Static(bytes(good[:-1]) + bytes([good[-1] ^ 1])) as url:  # the untouched answer passes
        assert ocsp_check(url, cert, issuer, at=T0, nonce=False).status == "good"


def test_server_stops_and_frees_its_port(responder, pki):
    srv, thread, url = serve_ocsp(responder)
    assert ocsp_check(url, pki["certs"][0x10], pki["auth"].certificate, at=T0).status == "good"
    srv.shutdown()
    thread.join(5)
    assert not thread.is_alive()
    with pytest.raises(OcspUnavailable):
        ocsp_check(url, pki["certs"][0x10], pki["auth"].certificate, at=T0, timeout=1)


# --- the kept-alive link (issuance/http/keepalive.py) --------------------------------------------
@pytest.fixture
def counted(responder, monkeypatch):
    """A running OCSP server that counts the TCP connections it accepts: (server, url, accepted)."""
    srv, thread, url = serve_ocsp(responder)
    accepted = []
    original = srv.process_request

    def process_request(request, client_address):
        accepted.append(client_address)
        return original(request, client_address)

    monkeypatch.setattr(srv, "process_request", process_request)
    yield srv, url, accepted
    srv.shutdown()
    thread.join(5)


def test_client_keeps_one_connection_for_many_checks(pki, counted, source, clock):
    _, url, accepted = counted
    cert, issuer = pki["certs"][0x10], pki["auth"].certificate
    with OcspClient(url) as client:
        for method in ("POST", "GET", "POST"):
            assert client.check(cert, issuer, method=method, at=T0).status == "good"
        source.hold("auth", 0x10, at=T0 + H)      # a change is seen at once on the same link
        clock.now = T0 + 2 * H
        assert client.check(cert, issuer, at=clock.now).status == "hold"
    assert len(accepted) == 1


def test_refused_request_ends_the_connection_and_the_next_check_works(pki, counted):
    _, url, accepted = counted
    cert = pki["certs"][0x10]
    with KeepAliveClient(url, timeout=5) as link:
        # The body of a refused request is never read, so the server must not read on from it.
        status, headers, _ = link.exchange("POST", "", _request(cert, pki["auth"]),
                                           {"Content-Type": "application/octet-stream"})
        assert status == 415 and headers["Connection"] == "close"
        status, headers, body = link.exchange("POST", "", _request(cert, pki["auth"]),
                                              {"Content-Type": "application/ocsp-request"})
        assert status == 200 and ocsp.load_der_ocsp_response(body).certificate_status == ocsp.OCSPCertStatus.GOOD
    assert len(accepted) == 2


def test_link_survives_the_server_dropping_an_idle_connection(pki, counted):
    srv, url, accepted = counted
    cert, issuer = pki["certs"][0x10], pki["auth"].certificate
    with OcspClient(url) as client:
        assert client.check(cert, issuer, at=T0).status == "good"
        # What the handler timeout does to an idle connection: the server closes its end.
        for sock in list(srv._open):
            sock.shutdown(socket.SHUT_RDWR)
        deadline = time.monotonic() + 5
        while srv._open and time.monotonic() < deadline:
            time.sleep(0.01)
        assert client.check(cert, issuer, at=T0).status == "good"
    assert len(accepted) == 2


def test_stopped_server_ends_kept_alive_links(pki, responder):
    srv, thread, url = serve_ocsp(responder)
    cert, issuer = pki["certs"][0x10], pki["auth"].certificate
    with OcspClient(url, timeout=2) as client:
        assert client.check(cert, issuer, at=T0).status == "good"
        srv.shutdown()
        thread.join(5)
        start = time.monotonic()
        with pytest.raises(OcspUnavailable, match="unreachable"):
            client.check(cert, issuer, at=T0)
        assert time.monotonic() - start < 2


def test_oversized_answer_is_unavailable_and_not_reused(pki, monkeypatch):
    from mynaemu.issuance.pki import ocsp as ocsp_module

    monkeypatch.setattr(ocsp_module, "MAX_RESPONSE_BYTES", 16)
    with _Static(b"\x30" * 64) as url:
        with pytest.raises(OcspUnavailable, match="longer than 16"):
            ocsp_check(url, pki["certs"][0x10], pki["auth"].certificate, at=T0)

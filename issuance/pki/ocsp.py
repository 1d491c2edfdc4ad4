"""OCSP (RFC 6960) for the TEST JPKI CAs: the responder, its loopback HTTP server, and the client.

The kiosk's 有効性の確認 (CVS-15, CVS-16) asks this responder whether a user-authentication
certificate is good; a held (一時保留) or revoked (失効) certificate must be refused. The
responder and the CRLs it also serves read one `RevocationSource` (issuance/pki/revocation.py).

Decisions (RFC 6960 leaves them to the responder; the JPKI sources give no OCSP profile,
card-interface.md §7.3, so these are ours):

- The CA is its own responder: each response is signed by the key of the CA that issued the
  certificate (RFC 6960 §4.2.2.2, first case), ResponderID byKey, no certificates attached.
  That is the simplest response a client can check with nothing but the CA certificate; no
  delegated OCSP-signing certificate has to be issued, rolled or checked.
- The CA is found by the CertID's issuerNameHash and issuerKeyHash, computed with the hash the
  request names (SHA-1, SHA-256, and the other SHA-2 sizes `cryptography` parses).
- Status: good; revoked with revocationTime and reason (reason omitted when unspecified); a
  hold is revoked with reason certificateHold (RFC 6960 §2.2); a serial the CA never issued
  (or did not yet issue at that instant) is unknown (RFC 6960 §2.2).
- A CertID naming an issuer we do not serve gets the unsigned status **unauthorized**
  (RFC 6960 §2.3; RFC 5019 §2.2.3 says so for a responder not authoritative for the issuer). A signed
  "unknown" would be useless there: our CA keys are not authorised to speak for another issuer.
- One CertID per request (RFC 5019 §2.1.1 clients send exactly one); a request with several, a
  request that does not parse, a CertID hash we cannot compute, an unrecognised critical
  request extension, or a nonce of 0 or more than 128 octets (RFC 8954 §2.1) → malformedRequest.
  An exception inside the responder → internalError. `respond()` never raises.
- A nonce (1..128 octets) is echoed as a non-critical extension (RFC 8954).
- thisUpdate = the responder's clock (whole seconds); nextUpdate = thisUpdate + `validity`
  (default 1 hour: a hold placed by phone, FLOW-SUSP-3, must reach kiosks quickly).
  producedAt is set by `cryptography` from the host clock; it cannot be injected.

HTTP (RFC 6960 Appendix A.1): POST `application/ocsp-request` to the responder URL, or GET
`{url}/{url-encoded base64 of the DER request}`; answers are `application/ocsp-response` with
HTTP 200, OCSP-level errors included. `GET /crl/<kind>.crl` serves the current DER CRL of that
CA (`application/pkix-crl`, RFC 2585) from the same source. The server binds loopback by
default; its access log names the client, method, route, HTTP status and the OCSP outcome (CA
kind and status), never a certificate subject, and not the serial either (JPKI-3: the serial
must not become a matching key).
"""
from __future__ import annotations

import base64
import binascii
import datetime as _dt
import http.client
import logging
import os
import socket
import threading
import urllib.parse
from typing import Callable

from asn1crypto import keys as asn1_keys
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp

from mynaemu.issuance.clock import utc_now   # the wall clock in UTC: the clock to give a live OcspResponder
from mynaemu.issuance.pki import revocation as rv
from mynaemu.issuance.http.client import KeepAliveClient
from mynaemu.issuance.http.keepalive import KeepAliveHandler, KeepAliveServer
from mynaemu.issuance.pki.revocation import CertStatus, CrlError, CrlPublisher, RevocationSource

log = logging.getLogger(__name__)

OCSP_REQUEST_TYPE = "application/ocsp-request"
OCSP_RESPONSE_TYPE = "application/ocsp-response"
CRL_TYPE = "application/pkix-crl"
DEFAULT_VALIDITY = _dt.timedelta(hours=1)
MAX_REQUEST_BYTES = 64 * 1024  # an OCSP request for one CertID is about 100 bytes
MAX_RESPONSE_BYTES = 4 * 1024 * 1024  # a client-side cap on what it will read (CRLs included)
NONCE_MAX = 128  # RFC 8954 §2.1
CERT_ID_HASHES = (hashes.SHA1, hashes.SHA224, hashes.SHA256, hashes.SHA384, hashes.SHA512)


class OcspUnavailable(Exception):
    """No trustworthy OCSP answer: connection error, timeout, HTTP error, or a bad response.

    `response_status` is the OCSPResponseStatus when the responder answered with one that is
    not successful (e.g. unauthorized), else None.
    """

    def __init__(self, message: str, response_status: ocsp.OCSPResponseStatus | None = None):
        super().__init__(message)
        self.response_status = response_status


class CrlUnavailable(CrlError):
    """The CRL could not be fetched (connection error, timeout, HTTP error)."""


# --- CertID hashes --------------------------------------------------------------------------
def public_key_bits(public_key) -> bytes:
    """The subjectPublicKey BIT STRING's bits (no tag, length or unused-bits octet): what the
    CertID issuerKeyHash hashes (RFC 6960 §4.1.1; the same bytes as the RFC 5280 key id)."""
    spki = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    bits = asn1_keys.PublicKeyInfo.load(spki)["public_key"]
    unused, *_ = bits.contents   # the BIT STRING's first octet counts its unused bits
    if unused != 0:
        raise ValueError("a public key BIT STRING with unused bits")
    return bits.contents[1:]


def _digest(algorithm: hashes.HashAlgorithm, data: bytes) -> bytes:
    h = hashes.Hash(algorithm)
    h.update(data)
    return h.finalize()


def cert_id_hashes(issuer_cert: x509.Certificate, algorithm: hashes.HashAlgorithm) -> tuple[bytes, bytes]:
    """(issuerNameHash, issuerKeyHash) of a CA certificate with `algorithm`."""
    return (_digest(algorithm, issuer_cert.subject.public_bytes()),
            _digest(algorithm, public_key_bits(issuer_cert.public_key())))


# --- responder ------------------------------------------------------------------------------
class OcspResponder:
    """Answers DER OCSP requests for the served CAs from a RevocationSource at `clock()`."""

    def __init__(self, cas: dict, source: RevocationSource, clock: Callable[[], _dt.datetime], *,
                 validity: _dt.timedelta = DEFAULT_VALIDITY):
        if not cas:
            raise ValueError("an OCSP responder needs at least one CA")
        for kind, ca in cas.items():
            rv.check_ca(ca, kind)
        if not callable(clock):
            raise TypeError("clock must be a callable returning an aware datetime")
        if not isinstance(validity, _dt.timedelta) or validity < _dt.timedelta(seconds=1):
            raise ValueError(f"validity must be a timedelta of at least one second, got {validity!r}")
        self.cas = dict(cas)
        self.source = source
        self.clock = clock
        self.validity = validity
        # (hash name, issuerNameHash, issuerKeyHash) -> kind, for every hash a CertID may use
        self._by_hash = {}
        for kind, ca in self.cas.items():
            for algorithm in CERT_ID_HASHES:
                name_hash, key_hash = cert_id_hashes(ca.certificate, algorithm())
                self._by_hash[(algorithm.name, name_hash, key_hash)] = kind

    def respond(self, request_der: bytes) -> bytes:
        """The DER OCSPResponse for `request_der`; never raises (errors become OCSP statuses)."""
        return self.answer(request_der)[0]

    def answer(self, request_der: bytes) -> tuple[bytes, str]:
        """(DER OCSPResponse, outcome for logs such as "auth good" or "malformedRequest")."""
        try:
            return self._answer(request_der)
        except Exception:  # a broken source or clock must not take the responder down
            log.exception("OCSP responder internal error")
            return _unsuccessful(ocsp.OCSPResponseStatus.INTERNAL_ERROR), "internalError"

    def _answer(self, request_der) -> tuple[bytes, str]:
        malformed = _unsuccessful(ocsp.OCSPResponseStatus.MALFORMED_REQUEST), "malformedRequest"
        if not isinstance(request_der, (bytes, bytearray)):
            return malformed
        try:
            request = ocsp.load_der_ocsp_request(bytes(request_der))
            algorithm = request.hash_algorithm
            name_hash, key_hash = request.issuer_name_hash, request.issuer_key_hash
            serial = request.serial_number
            extensions = request.extensions
        except (ValueError, NotImplementedError, UnsupportedAlgorithm):
            # NotImplementedError: more than one CertID (RFC 5019 §2.1.1 allows one).
            return malformed
        nonce = None
        for ext in extensions:
            if isinstance(ext.value, x509.OCSPNonce):
                nonce = ext.value.nonce
            elif ext.critical:
                return malformed
        if nonce is not None and not 1 <= len(nonce) <= NONCE_MAX:
            return malformed

        kind = self._by_hash.get((algorithm.name, name_hash, key_hash))
        if kind is None:
            return _unsuccessful(ocsp.OCSPResponseStatus.UNAUTHORIZED), "unauthorized"

        now = rv.instant(self.clock(), "clock()")
        # A serial RFC 5280 does not allow cannot have been issued: unknown, without asking.
        valid_serial = 0 < serial and serial.bit_length() <= 159
        state = self.source.certificate_status(kind, serial, now) if valid_serial else CertStatus(rv.UNKNOWN)
        if state.status == rv.GOOD:
            cert_status, revoked_at, reason = ocsp.OCSPCertStatus.GOOD, None, None
        elif state.status == rv.UNKNOWN:
            cert_status, revoked_at, reason = ocsp.OCSPCertStatus.UNKNOWN, None, None
        else:  # hold (reason certificateHold, RFC 6960 §2.2) or revoked
            cert_status = ocsp.OCSPCertStatus.REVOKED
            revoked_at = rv.instant(state.revoked_at, "revoked_at")
            reason = None if state.reason == x509.ReasonFlags.unspecified else state.reason

        ca = self.cas[kind]
        builder = (
            ocsp.OCSPResponseBuilder()
            .add_response_by_hash(
                issuer_name_hash=name_hash, issuer_key_hash=key_hash, serial_number=serial,
                algorithm=algorithm, cert_status=cert_status, this_update=now,
                next_update=now + self.validity, revocation_time=revoked_at, revocation_reason=reason,
            )
            .responder_id(ocsp.OCSPResponderEncoding.HASH, ca.certificate)
        )
        if nonce is not None:
            builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
        response = builder.sign(ca.key, hashes.SHA256())
        return response.public_bytes(serialization.Encoding.DER), f"{kind} {state.status}"


def _unsuccessful(status: ocsp.OCSPResponseStatus) -> bytes:
    return ocsp.OCSPResponseBuilder.build_unsuccessful(status).public_bytes(serialization.Encoding.DER)


# --- HTTP server ----------------------------------------------------------------------------
class OcspHTTPServer(KeepAliveServer):
    """The OCSP + CRL server (kept-alive HTTP/1.1, issuance/http/keepalive.py); `shutdown()` stops the
    loop, closes the listening socket and ends the kept-alive connections."""

    def __init__(self, address, responder: OcspResponder, publisher: CrlPublisher, **options):
        self.responder = responder
        self.publisher = publisher
        super().__init__(address, _Handler, **options)


class _Handler(KeepAliveHandler):
    server: OcspHTTPServer
    server_version = "mynaemu-TEST-OCSP/1"
    _route = "-"
    _outcome = "-"

    def _send(self, code: int, body: bytes, content_type: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        # Status can change at any moment (a hold by phone, FLOW-SUSP-3): no shared caching.
        self.send_header("Cache-Control", "no-cache")
        if self.close_connection:
            self.send_header("Connection", "close")   # a request body left unread: no reuse
        self.end_headers()
        self.wfile.write(body)

    def _error(self, code: int, message: str) -> None:
        self._outcome = message
        self._send(code, (message + "\n").encode("utf-8"), "text/plain; charset=utf-8")

    def refuse(self, status: int, reason: str) -> None:
        # The base's refusals (framing, deadline, stdlib errors): logged by code only (see
        # log_refusal), answered in this server's plain-text format.
        self.log_refusal("%d %s", status, reason)
        self._error(status, reason)

    def _ocsp(self, request_der: bytes) -> None:
        body, self._outcome = self.server.responder.answer(request_der)
        self._send(200, body, OCSP_RESPONSE_TYPE)

    def do_POST(self):
        self._route = "ocsp"
        # Until the body has been read, the next request's start on this connection is unknown:
        # every refusal before that ends the connection.
        self.close_connection = True
        path = urllib.parse.urlsplit(self.path).path
        if path not in ("", "/"):
            return self._error(404, "not found")
        content_type = self.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if content_type != OCSP_REQUEST_TYPE:
            return self._error(415, f"Content-Type must be {OCSP_REQUEST_TYPE}")
        request_der = self.read_body(MAX_REQUEST_BYTES)   # 400/411/413 (issuance/http/keepalive.py)
        if request_der is None:
            return
        self._ocsp(request_der)

    def do_GET(self):
        path = urllib.parse.urlsplit(self.path).path
        if path.startswith("/crl/"):
            self._route = "crl"
            name = path[len("/crl/"):]
            kind = name[:-len(".crl")] if name.endswith(".crl") else None
            if kind not in self.server.publisher.cas:
                return self._error(404, "no such CRL")
            try:
                crl = self.server.publisher.current(kind, self.server.responder.clock())
            except Exception:
                log.exception("CRL publisher internal error")
                return self._error(500, "internal error")
            self._outcome = f"{kind} crl"
            return self._send(200, rv.crl_der(crl), CRL_TYPE)
        # RFC 6960 A.1: GET {url}/{url-encoding of base-64 encoding of the DER OCSPRequest}
        self._route = "ocsp-get"
        encoded = urllib.parse.unquote(path[1:])
        try:
            request_der = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            request_der = b""  # answered as malformedRequest
        self._ocsp(request_der)

    def log_request(self, code="-", size="-"):
        # Replaces the default line, which would echo the GET path (the whole request, serial
        # included) into the log.
        log.info("%s %s %s %s %s", self.client_address[0], self.command, self._route, code, self._outcome)

    def log_refusal(self, format, *args):
        # send_error() passes (code, message); the message can quote the raw request line, and
        # with it a GET request's base64 (serial included), so only the code is logged.
        code = args[0] if args and isinstance(args[0], int) else "-"
        log.warning("%s http error %s", self.client_address[0], code)


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def serve_ocsp(responder: OcspResponder, host: str = "127.0.0.1", port: int = 0, *,
               crl_validity: _dt.timedelta = rv.DEFAULT_CRL_VALIDITY, **options):
    """Start the OCSP + CRL server in a daemon thread: (server, thread, url).

    `url` is the OCSP responder URL ("http://127.0.0.1:<port>", no trailing slash); the CRL of
    CA kind k is at `crl_url(url, k)`. `server.shutdown()` stops it and frees the port.
    `options` (max_workers, max_pending, request_deadline, idle_timeout) go to KeepAliveServer.
    """
    publisher = CrlPublisher(responder.cas, responder.source, next_update_after=crl_validity)
    server = OcspHTTPServer((host, port), responder, publisher, **options)
    if not server.server_address[0] in ("127.0.0.1", "::1", "localhost"):
        log.warning("OCSP server listening beyond loopback on %s", server.server_address[0])
    # A short poll so shutdown() returns within ~0.1 s (the stdlib default is 0.5 s).
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                              name="mynaemu-ocsp", daemon=True)
    thread.start()
    bound_host, bound_port = server.server_address[:2]
    return server, thread, f"http://{_url_host(bound_host)}:{bound_port}"


def crl_url(url: str, kind: str) -> str:
    """The CRL URL of CA `kind` on the server whose OCSP URL is `url`."""
    rv.check_kind(kind)
    return f"{url.rstrip('/')}/crl/{kind}.crl"


# --- client ---------------------------------------------------------------------------------
# No proxy: the responder is a TEST service next to the kiosk, and an *_proxy variable in the
# environment must not send revocation checks (or loopback traffic) through a third party;
# http.client (under KeepAliveClient) never looks at those variables.
_TRANSPORT_ERRORS = (http.client.HTTPException, OSError, socket.timeout)


def _check_url(url: str) -> str:
    if not isinstance(url, str) or urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise ValueError(f"url must be an http(s) URL, got {url!r}")
    return url


def _body(link: KeepAliveClient, method: str, path: str, expected_type: str, body: bytes | None = None,
          headers: dict | None = None) -> bytes:
    """The body of a 200 answer of `expected_type`; OSError-family and HTTP errors propagate."""
    status, answer_headers, payload = link.exchange(method, path, body, headers, limit=MAX_RESPONSE_BYTES)
    if status != 200:
        raise http.client.HTTPException(f"HTTP {status}")
    content_type = answer_headers.get("Content-Type", "").split(";")[0].strip().lower()
    if content_type != expected_type:
        raise http.client.HTTPException(f"Content-Type {content_type!r}, expected {expected_type}")
    return payload


class OcspClient:
    """Asks the OCSP responder at `url` over a kept-alive connection (issuance/http/keepalive.py).

    The centre keeps one for its validity service: a fresh connection per check (connect,
    accept, a server thread) cost more than the responder's signature (bench P4). Thread-safe;
    close() closes the idle connections.
    """

    def __init__(self, url: str, *, timeout: float = 5):
        self.url = _check_url(url)
        self._link = KeepAliveClient(url, timeout=timeout)

    def close(self) -> None:
        self._link.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def check(self, cert: x509.Certificate, issuer_cert: x509.Certificate, *, nonce: bool = True,
              method: str = "POST", hash_algorithm: hashes.HashAlgorithm | None = None,
              at: _dt.datetime | None = None) -> CertStatus:
        """`cert`'s status as a CertStatus; see ocsp_check for the checks and the errors."""
        if method not in ("POST", "GET"):
            raise ValueError(f"method must be 'POST' or 'GET', got {method!r}")
        try:
            cert.verify_directly_issued_by(issuer_cert)
        except (ValueError, TypeError, InvalidSignature) as exc:
            raise ValueError(f"the certificate was not issued by the given issuer: {exc}") from None
        algorithm = hash_algorithm if hash_algorithm is not None else hashes.SHA256()
        at = rv.instant(at if at is not None else utc_now())

        builder = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer_cert, algorithm)
        sent_nonce = os.urandom(32) if nonce else None
        if sent_nonce is not None:
            builder = builder.add_extension(x509.OCSPNonce(sent_nonce), critical=False)
        request_der = builder.build().public_bytes(serialization.Encoding.DER)
        try:
            if method == "POST":
                body = _body(self._link, "POST", "", OCSP_RESPONSE_TYPE, request_der,
                             {"Content-Type": OCSP_REQUEST_TYPE})
            else:
                encoded = urllib.parse.quote(base64.b64encode(request_der).decode("ascii"), safe="")
                body = _body(self._link, "GET", "/" + encoded, OCSP_RESPONSE_TYPE)
        except _TRANSPORT_ERRORS as exc:
            raise OcspUnavailable(f"OCSP responder unreachable: {exc}") from None

        try:
            response = ocsp.load_der_ocsp_response(body)
        except ValueError as exc:
            raise OcspUnavailable(f"undecodable OCSP response: {exc}") from None
        if response.response_status != ocsp.OCSPResponseStatus.SUCCESSFUL:
            raise OcspUnavailable(f"OCSP responder answered {response.response_status.name}",
                                  response.response_status)
        return _check_response(response, cert, issuer_cert, algorithm, sent_nonce, at)


def ocsp_check(url: str, cert: x509.Certificate, issuer_cert: x509.Certificate, *,
               timeout: float = 5, nonce: bool = True, method: str = "POST",
               hash_algorithm: hashes.HashAlgorithm | None = None,
               at: _dt.datetime | None = None) -> CertStatus:
    """Ask the OCSP responder at `url` about `cert` once (OcspClient keeps a link for many).

    Checks the answer fully: successful, signed by `issuer_cert`'s key with ResponderID naming
    that CA, the CertID we asked about, our nonce echoed, thisUpdate/nextUpdate current at `at`
    (default: now) within CLOCK_SKEW. Raises OcspUnavailable when any of that fails or the
    responder cannot be reached within `timeout` seconds. A caller error (cert not issued by
    `issuer_cert`, bad argument) raises ValueError/TypeError instead.
    """
    with OcspClient(url, timeout=timeout) as client:
        return client.check(cert, issuer_cert, nonce=nonce, method=method, hash_algorithm=hash_algorithm, at=at)


def _check_response(response, cert, issuer_cert, algorithm, sent_nonce, at) -> CertStatus:
    try:
        single = list(response.responses)
        if len(single) != 1:
            raise OcspUnavailable(f"the response holds {len(single)} answers, expected 1")
        single = single[0]
        name_hash, key_hash = cert_id_hashes(issuer_cert, algorithm)
        if (single.hash_algorithm.name != algorithm.name or single.issuer_name_hash != name_hash
                or single.issuer_key_hash != key_hash or single.serial_number != cert.serial_number):
            raise OcspUnavailable("the response answers for another certificate")
        # The CA is the responder (see module docstring): no delegated signer is accepted.
        if response.responder_key_hash is not None:
            if response.responder_key_hash != _digest(hashes.SHA1(), public_key_bits(issuer_cert.public_key())):
                raise OcspUnavailable("the response is not from the issuing CA")
        elif response.responder_name != issuer_cert.subject:
            raise OcspUnavailable("the response is not from the issuing CA")
        try:
            rv.verify_signature(issuer_cert.public_key(), response.signature,
                                response.tbs_response_bytes, response.signature_hash_algorithm)
        except (InvalidSignature, UnsupportedAlgorithm) as exc:
            raise OcspUnavailable(f"the response signature does not verify with the CA key: {exc}") from None
        if sent_nonce is not None:
            echoed = [ext.value.nonce for ext in response.extensions if isinstance(ext.value, x509.OCSPNonce)]
            if echoed != [sent_nonce]:
                raise OcspUnavailable("the response does not echo our nonce (possible replay)")
        this_update, next_update = single.this_update_utc, single.next_update_utc
        if this_update > at + rv.CLOCK_SKEW:
            raise OcspUnavailable(f"the response's thisUpdate {this_update.isoformat()} is in the future")
        if next_update is not None and at > next_update + rv.CLOCK_SKEW:
            raise OcspUnavailable(f"the response is stale: nextUpdate {next_update.isoformat()} has passed")
        not_after = cert.not_valid_after_utc
        if single.certificate_status == ocsp.OCSPCertStatus.GOOD:
            return CertStatus(rv.GOOD, not_after=not_after)
        if single.certificate_status == ocsp.OCSPCertStatus.UNKNOWN:
            return CertStatus(rv.UNKNOWN, not_after=not_after)
        reason = single.revocation_reason or x509.ReasonFlags.unspecified
        status = rv.HOLD if reason == x509.ReasonFlags.certificate_hold else rv.REVOKED
        return CertStatus(status, single.revocation_time_utc, reason, not_after)
    except OcspUnavailable:
        raise
    except (ValueError, UnsupportedAlgorithm) as exc:  # e.g. an unparsable field in the answer
        raise OcspUnavailable(f"bad OCSP response: {exc}") from None


def fetch_crl(url: str, issuer_cert: x509.Certificate, *, timeout: float = 5,
              at: _dt.datetime | None = None) -> x509.CertificateRevocationList:
    """GET the DER CRL at `url` and return it after `verify_crl` against `issuer_cert` at `at`
    (default: now). Raises CrlUnavailable on transport failure, CrlError if it is not valid."""
    _check_url(url)
    at = rv.instant(at if at is not None else utc_now())
    try:
        with KeepAliveClient(url, timeout=timeout) as link:
            body = _body(link, "GET", "", CRL_TYPE)
    except _TRANSPORT_ERRORS as exc:
        raise CrlUnavailable(f"CRL unreachable: {exc}") from None
    try:
        crl = x509.load_der_x509_crl(body)
    except ValueError as exc:
        raise CrlError(f"undecodable CRL: {exc}") from None
    rv.verify_crl(crl, issuer_cert, at=at)
    return crl

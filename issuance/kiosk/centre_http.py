"""The centre's HTTP door: the 証明書交付センター on loopback, over kept-alive HTTP/1.1.

The door authenticates the kiosk (its id and the MAC of the request, wire.py) before anything
else, checks the JSON body's shape (issuance/http/body.py), hands the request to the service
(centre.Centre) and MACs its answer. What a refusal class becomes in HTTP is decided here
(``HTTP_STATUS``); the body of a refusal is its wire form (wire.Refusal.to_json).
"""
from __future__ import annotations

import hmac
import json
import logging
import threading

from mynaemu.issuance.http.body import BadBody, check_fields, json_object
from mynaemu.issuance.http.keepalive import KeepAliveHandler, KeepAliveServer
from mynaemu.issuance.kiosk.centre import Centre
from mynaemu.issuance.kiosk.wire import (
    CENTRE_MAC_HEADER, HEALTH_PATH, KIOSK_ID_HEADER, KIOSK_MAC_HEADER, ROUTE_FIELDS, SESSION_PATH,
    Refusal, RefusalClass, request_mac, response_mac,
)

log = logging.getLogger("mynaemu.issuance.kiosk.centre")   # the centre's log, whichever door

MAX_BODY = 256 * 1024

# The HTTP status of each refusal class.
HTTP_STATUS = {
    RefusalClass.PIN_WRONG: 403,
    RefusalClass.PIN_BLOCKED: 403,
    RefusalClass.CERT_NOT_GOOD: 403,
    RefusalClass.CERT_DATES: 403,
    RefusalClass.CERT_INVALID: 403,
    RefusalClass.VALIDITY_UNAVAILABLE: 503,
    RefusalClass.CARD: 400,
    RefusalClass.OUTSIDE_HOURS: 403,
    RefusalClass.RESIDENT_UNKNOWN: 404,
    RefusalClass.CHALLENGE: 409,
    RefusalClass.AUTHENTICATION: 401,
    RefusalClass.CENTRE: 400,
    RefusalClass.FEE_UNPAID: 402,
    RefusalClass.NOT_OFFERED: 403,
}


class CentreHTTPServer(KeepAliveServer):
    """The centre on loopback (bounded worker pool, request deadline, strict bodies:
    issuance/http/keepalive.py); `shutdown()` stops the loop, closes the socket and ends every
    kept-alive connection, so a stopped centre answers nothing more."""

    def __init__(self, address, centre: Centre, **options):
        self.centre = centre
        super().__init__(address, _CentreHandler, **options)


class _CentreHandler(KeepAliveHandler):
    # HTTP/1.1 keeps a kiosk's connection open across its requests (issuance/http/keepalive.py): a
    # new connection and server thread per request dominated the decision time (bench P4).
    server: CentreHTTPServer
    server_version = "mynaemu-TEST-centre/1"
    _outcome = "-"

    def _reply(self, status: int, doc: dict, key: bytes | None, req_mac: bytes) -> None:
        body = json.dumps(doc, ensure_ascii=False).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        if self.close_connection:
            self.send_header("Connection", "close")   # e.g. after an unread body: no reuse
        if key is not None:
            self.send_header(CENTRE_MAC_HEADER, response_mac(key, req_mac, status, body).hex())
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path != HEALTH_PATH:
            self._outcome = "not found"
            return self._reply(404, {"status": "error", "message": "not found"}, None, b"")
        self._outcome = "health"
        self._reply(200, self.server.centre.health(), None, b"")

    def refuse(self, status: int, reason: str) -> None:
        # The base's refusals (framing, deadline, stdlib errors) in the centre's JSON format;
        # unMACed: they come before the kiosk is known.
        self._outcome = f"http {status}"
        self.log_refusal("%d %s", status, reason)
        kind = "centre-unavailable" if status in (500, 503) else "bad-request"   # 501, 505: the client's
        self._reply(status, Refusal(kind, reason).to_json(), None, b"")

    def do_POST(self):
        body = self.read_body(MAX_BODY)   # 400/411/413 (issuance/http/keepalive.py) when it is not one
        if body is None:
            return
        kiosk_id = self.headers.get(KIOSK_ID_HEADER, "")
        key = self.server.centre.kiosk_keys.get(kiosk_id)
        try:
            given = bytes.fromhex(self.headers.get(KIOSK_MAC_HEADER, ""))
        except ValueError:
            given = b""
        if key is None or not hmac.compare_digest(given, request_mac(key, "POST", self.path, body)):
            self._outcome = "kiosk-auth"
            log.warning("refused an unauthenticated request from kiosk %r", kiosk_id[:40])
            return self._reply(401, Refusal("kiosk-auth", "the kiosk is unknown or its MAC is wrong").to_json(),
                               None, b"")
        centre = self.server.centre
        try:
            doc = json_object(body)
            fields = ROUTE_FIELDS.get(self.path)
            if fields is None:
                self._outcome = "not found"
                return self._reply(404, {"status": "error", "message": "not found"}, key, given)
            check_fields(doc, fields[0], required=fields[1])
            if self.path == SESSION_PATH:
                answer = centre.open_session(kiosk_id, doc["method"])
            else:
                answer = centre.issue(kiosk_id, doc)
        except BadBody as exc:
            self._outcome = "bad body"
            return self._reply(400, Refusal("bad-request", str(exc)).to_json(), key, given)
        except Refusal as refusal:
            self._outcome = refusal.reason
            log.info("refused kiosk=%s reason=%s", kiosk_id, refusal.reason)
            return self._reply(HTTP_STATUS[refusal.refusal_class], refusal.to_json(), key, given)
        except Exception:  # a bug must not leave the kiosk hanging: answer, and log it
            log.exception("centre internal error")
            self._outcome = "internal error"
            return self._reply(500, {"status": "error", "message": "internal error"}, key, given)
        self._outcome = answer.get("status", "ok")
        self._reply(200, answer, key, given)

    def log_request(self, code="-", size="-"):
        log.info("%s %s %s %s %s", self.client_address[0], self.command, self.path, code, self._outcome)



def serve_centre(centre: Centre, host: str = "127.0.0.1", port: int = 0, **options):
    """Start the centre's HTTP service in a daemon thread: (server, thread, url). `options`
    (max_workers, max_pending, request_deadline, idle_timeout) go to KeepAliveServer."""
    server = CentreHTTPServer((host, port), centre, **options)
    thread = threading.Thread(target=server.serve_forever, name="mynaemu-centre", daemon=True)
    thread.start()
    bound_host, bound_port = server.server_address[:2]
    return server, thread, f"http://{bound_host}:{bound_port}"

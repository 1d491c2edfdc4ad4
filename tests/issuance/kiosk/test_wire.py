"""The kiosk ↔ centre wire contract (issuance/kiosk/wire.py) as data and as it is spoken.

vectors/kiosk/refusals.csv holds every refusal reason with its class, the number the wire's
`code` field carries, the HTTP status of the centre's door and the CLI's exit code; the reason,
class, code and status columns are checked here cell by cell (the exit codes in
tests/tools/cli/test_kiosk_exit_codes.py). Then a live kiosk and centre: the paths, and the
field names of each request and answer, are the ones the contract lists.
"""
from __future__ import annotations

import base64
import csv
import datetime as _dt
import json
import secrets
import tempfile

import pytest
from cryptography import x509

from mynaemu.card.apps import jorei
from mynaemu.card.core import Card
from mynaemu.card.image import CardImage
from mynaemu.issuance.kiosk import wire
from mynaemu.issuance.clock import SettableClock
from mynaemu.issuance.kiosk.centre_http import HTTP_STATUS
from mynaemu.issuance.kiosk.keyfiles import load_or_create_signer
from mynaemu.issuance.kiosk.records import MemoryCentreTrail, MemoryKioskHistory
from mynaemu.issuance.kiosk.municipality import MunicipalityServer
from mynaemu.issuance.kiosk.residents import MemoryResidentDirectory, synthesize_resident
from mynaemu.issuance.kiosk.services import start_services
from mynaemu.issuance.personas import build_persona
from mynaemu.issuance.pki.ca import default_test_pki
from mynaemu.issuance.pki.revocation import MemoryRevocationSource
from mynaemu.issuance.policy import JST
from mynaemu.tools.terminal.client import CardClient, InProcessConnection
from mynaemu.tools.terminal.kiosk import CentreClient, Kiosk
from tests.support import REPO

with (REPO / "vectors" / "kiosk" / "refusals.csv").open(encoding="utf-8", newline="") as _f:
    ROWS = list(csv.DictReader(_f))


# -- the table ------------------------------------------------------------------------------------

def test_the_table_names_every_reason_exactly_once():
    reasons = [row["reason"] for row in ROWS]
    assert len(reasons) == len(set(reasons))
    assert set(reasons) == set(wire.REASONS)


@pytest.mark.parametrize("row", ROWS, ids=lambda row: row["reason"])
def test_reason_class_and_wire_code(row):
    refusal = wire.Refusal(row["reason"], "one line", tries_left=2)
    assert refusal.refusal_class is wire.RefusalClass[row["class"]]
    assert refusal.code == int(row["code"])
    on_the_wire = json.dumps(refusal.to_json(), ensure_ascii=False)
    assert json.loads(on_the_wire) == {"status": "refused", "reason": row["reason"], "code": int(row["code"]),
                                       "message": "one line", "tries_left": 2}
    assert f'"code": {int(row["code"])},' in on_the_wire       # a JSON number, not an enum's name


@pytest.mark.parametrize("row", ROWS, ids=lambda row: row["reason"])
def test_http_status_of_the_reasons_class(row):
    assert HTTP_STATUS[wire.RefusalClass[row["class"]]] == int(row["http_status"])


def test_every_class_has_a_reason_and_an_http_status():
    assert set(wire.REASONS.values()) == set(wire.RefusalClass) == set(HTTP_STATUS)
    assert {row["class"] for row in ROWS} == {cls.name for cls in wire.RefusalClass}


# -- refusals across the wire ---------------------------------------------------------------------

@pytest.mark.parametrize("reason", sorted(wire.REASONS))
def test_a_refusal_survives_the_wire(reason):
    sent = wire.Refusal(reason, "why", source="ocsp")
    got = wire.Refusal.from_json(json.loads(json.dumps(sent.to_json())))
    assert (got.reason, got.message, got.details, got.code) == (reason, "why", {"source": "ocsp"}, sent.code)


@pytest.mark.parametrize("doc", [{"reason": "no-such-reason", "message": "x"}, {"message": "x"}, ["pin-wrong"],
                                 "pin-wrong", None, {"reason": ["pin-wrong"]}])
def test_an_answer_naming_no_known_reason_is_no_refusal(doc):
    assert wire.Refusal.from_json(doc) is None


def test_an_unknown_reason_cannot_be_raised():
    with pytest.raises(ValueError):
        wire.Refusal("pin-wrongish", "x")


def test_the_door_checks_only_fields_a_kiosk_sends():
    assert set(wire.ROUTE_FIELDS) == {wire.SESSION_PATH, wire.ISSUE_PATH}
    for path, fields in ((wire.SESSION_PATH, wire.SESSION_REQUEST_FIELDS), (wire.ISSUE_PATH, wire.ISSUE_REQUEST_FIELDS)):
        types, required = wire.ROUTE_FIELDS[path]
        assert set(required) <= set(types) <= set(fields)


# -- MACs -----------------------------------------------------------------------------------------

KEY = bytes(range(16))


def test_mac_known_answers():
    # Pinned: a kiosk and a centre built from different versions must still agree.
    assert wire.request_mac(KEY, "POST", "/v1/issue", b'{"a": 1}').hex() == \
        "264008938f5e5adb0daf5edac3d3f3f1d706f106708f5098e2695514cc81a5e5"
    assert wire.response_mac(KEY, b"\x01" * 32, 200, b'{"b": 2}').hex() == \
        "f246ac33666ca70e774af90cfc5b2186683f03f43dc21406069f379f6745db21"


def test_a_mac_binds_key_method_path_body_and_the_request_it_answers():
    base = wire.request_mac(KEY, "POST", wire.ISSUE_PATH, b"{}")
    assert len({base, wire.request_mac(bytes(16), "POST", wire.ISSUE_PATH, b"{}"),
                wire.request_mac(KEY, "GET", wire.ISSUE_PATH, b"{}"),
                wire.request_mac(KEY, "POST", wire.SESSION_PATH, b"{}"),
                wire.request_mac(KEY, "POST", wire.ISSUE_PATH, b"{ }")}) == 5
    answer = wire.response_mac(KEY, base, 200, b"{}")
    assert len({answer, wire.response_mac(KEY, bytes(32), 200, b"{}"), wire.response_mac(KEY, base, 403, b"{}"),
                wire.response_mac(KEY, base, 200, b"[]")}) == 4


@pytest.mark.parametrize("key", [b"", b"x" * 15, "x" * 32, None])
def test_a_kiosk_key_is_at_least_16_bytes(key):
    with pytest.raises(ValueError):
        wire.check_kiosk_key(key)


def test_service_hours_are_one_rule_for_both_sides():
    day = _dt.date(2026, 3, 2)
    at = lambda h, m: _dt.datetime.combine(day, _dt.time(h, m), JST)  # noqa: E731
    assert [wire.within_service_hours(at(h, m)) for h, m in ((6, 29), (6, 30), (22, 59), (23, 0))] == \
        [False, True, True, False]
    with pytest.raises(ValueError):
        wire.within_service_hours(_dt.datetime(2026, 3, 2, 12, 0))


# -- the contract as spoken -----------------------------------------------------------------------

MUNI = "13221"
ISSUE_AT = _dt.datetime(2026, 3, 2, 9, 0, tzinfo=JST)


class RecordingCentreClient(CentreClient):
    """The kiosk's own client, keeping each (path, request, answer) it exchanged."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.exchanges = []

    def _post(self, path, doc):
        answer = super()._post(path, doc)
        self.exchanges.append((path, dict(doc), answer))
        return answer


@pytest.fixture(scope="module")
def live():
    pki, source, directory = default_test_pki(), MemoryRevocationSource(), MemoryResidentDirectory()
    with tempfile.TemporaryDirectory() as home:
        municipality = MunicipalityServer(MUNI, load_or_create_signer(home, MUNI), directory,
                                          history=MemoryKioskHistory())
        key = secrets.token_bytes(32)
        services = start_services(pki=pki, source=source, directory=directory, municipalities={MUNI: municipality},
                                  trail=MemoryCentreTrail(),
                                  kiosk_keys={wire.DEFAULT_KIOSK_ID: key},
                                  clock=SettableClock(_dt.datetime(2026, 3, 2, 12, 0, tzinfo=JST)))
        image, info = build_persona("adult", at=ISSUE_AT)
        cert = x509.load_der_x509_certificate(image.application("jpki").efs[0x000A].data)
        source.add_issued("auth", cert.serial_number, cert.not_valid_after_utc, at=ISSUE_AT)
        directory.add(synthesize_resident(info.identity, on=ISSUE_AT.date(), user_id="USERID0000000009"),
                      auth_certificates=[cert])
        jorei.add_to_image(image, user_id="USERID0000000009", municipality_code=MUNI, pins={"juminhyo": "2222"})
        try:
            yield services, key, image
        finally:
            services.stop()


@pytest.mark.parametrize("method, pin", [("shin", "1234"), ("henkan", "1234"), ("genko", "2222")])
def test_requests_and_answers_carry_the_contracts_fields(live, method, pin):
    services, key, image = live
    client = RecordingCentreClient(services.centre_url, wire.DEFAULT_KIOSK_ID, key)
    card = Card(CardImage.from_json(image.to_json()))
    try:
        kiosk = Kiosk(client, clock=services.centre.clock)
        kiosk.issue(CardClient(InProcessConnection(card)), pin=pin, document="juminhyo", method=method)
    finally:
        client.close()
    (p1, session_request, session), (p2, issue_request, issued) = client.exchanges
    assert (p1, p2) == (wire.SESSION_PATH, wire.ISSUE_PATH)
    assert set(session_request) == set(wire.SESSION_REQUEST_FIELDS)
    assert set(session) == set(wire.SESSION_FIELDS)
    assert len(base64.b64decode(session["nonce"])) == wire.NONCE_BYTES
    assert set(issue_request) <= set(wire.ISSUE_REQUEST_FIELDS)
    assert set(wire.ROUTE_FIELDS[wire.ISSUE_PATH][1]) <= set(issue_request)
    assert ({"certificate", "signature"} <= set(issue_request)) == (method != "genko")
    assert ({"user_id", "municipality_code"} <= set(issue_request)) == (method == "genko")
    assert set(issued) == set(wire.ISSUED_FIELDS)


def test_health_carries_the_contracts_fields(live):
    services, key, _image = live
    client = CentreClient(services.centre_url, wire.DEFAULT_KIOSK_ID, key)
    try:
        assert set(client.health()) == set(wire.HEALTH_FIELDS)
        assert client.health()["service"] == wire.SERVICE_NAME
    finally:
        client.close()

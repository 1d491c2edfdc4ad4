"""The kiosk's issuance history in the store and the services' identities in the audit trail (issue
13; CVS-18 item 3; SEC-8): the history survives a restart of the services, the worker processes
of `kiosk serve --workers N` write one table and one chain, the centre's refusals are audited
under service:centre and the documents under service:municipality:<code>, `issue audit --verify`
stays intact, no personal data lands in either, and a hostile kiosk id gets a 4xx and no record."""
from __future__ import annotations

import base64
import datetime as _dt
import http.client
import json
import threading
import urllib.parse

import pytest

from mynaemu.card.core import Card
from mynaemu.card.image import CardImage
from mynaemu.issuance.clock import JST, SettableClock
from mynaemu.issuance.kiosk.keyfiles import load_or_create_kiosk_key
from mynaemu.issuance.kiosk.records import MemoryKioskHistory
from mynaemu.issuance.kiosk.services import services_from_home
from mynaemu.issuance.kiosk.wire import DEFAULT_KIOSK_ID, ISSUE_PATH, SESSION_PATH, Refusal, request_mac
from mynaemu.issuance.kiosk.workers import kiosk_stack_pool
from mynaemu.issuance.store import (
    CENTRE_OPERATOR, DB_NAME, Store, StoreCentreTrail, StoreKioskHistory, municipality_operator,
)
from mynaemu.tools.terminal.client import CardClient, InProcessConnection
from mynaemu.tools.terminal.kiosk import CentreClient, Kiosk
from tests.issuance.kiosk.test_trust_pki import T, _issue_card
from tests.support.cli import run_issue

MUNI_OPERATOR = municipality_operator("13221")


@pytest.fixture(scope="module")
def holder(tmp_path_factory):
    """A home with one delivered card: (home, application id, card file, the holder's personal data)."""
    home = tmp_path_factory.mktemp("kiosk-history-home")
    app_id, card = _issue_card(home, seed=11, name="holder.json")
    with Store.open(home) as store:
        person = store.person_of_card(app_id)
        personal = [person["name"], person["address"], person["juminhyo_code"], store.individual_number(person["id"])]
    return home, app_id, card, personal


def _kiosk(url: str, home, clock) -> Kiosk:
    return Kiosk(CentreClient(url, DEFAULT_KIOSK_ID, load_or_create_kiosk_key(home)), clock=clock)


def _issue(kiosk: Kiosk, card, **options):
    return kiosk.issue(CardClient(InProcessConnection(Card(CardImage.load(card)))), pin="1234", **options)


def _trail(home) -> list[dict]:
    with Store(home / DB_NAME) as store:
        return store.audit_rows()


def _history(home) -> list[dict]:
    return StoreKioskHistory(home / DB_NAME).entries()


def _verify(home, issue_staff, monkeypatch):
    monkeypatch.setenv("MYNAEMU_HOME", str(home))
    monkeypatch.delenv("MYNAEMU_DB", raising=False)
    issue_staff(home, staff_id="kh-officer", rights=["officer"])
    return run_issue("audit", "--verify", "--at", (T + _dt.timedelta(hours=1)).isoformat())


def test_a_home_backed_stack_writes_the_store_and_the_history_survives_a_restart(holder):
    home, app_id, card, personal = holder
    clock = SettableClock(T)
    services = services_from_home(home, clock=clock)
    try:
        municipality = services.centre.municipalities["13221"]
        # never the in-memory history or trail when the stack serves a home
        assert isinstance(municipality.history, StoreKioskHistory)
        assert isinstance(services.centre.trail, StoreCentreTrail)
        result = _issue(_kiosk(services.centre_url, home, clock), card, document="juminhyo", with_number=True)
    finally:
        services.stop()
    again = services_from_home(home, clock=clock)        # the services restarted
    try:
        entries = again.centre.municipalities["13221"].history.entries()
    finally:
        again.stop()
    entry = next(e for e in entries if e["serial"] == result.serial)
    assert (entry["verification_code"], entry["document"], entry["method"], entry["fee"], entry["with_number"],
            entry["application_id"], entry["kiosk_id"], entry["municipality_code"]) == \
        (result.verification_code, "juminhyo", "shin", result.fee, True, app_id, DEFAULT_KIOSK_ID, "13221")
    record = next(r for r in _trail(home) if r["operator"] == MUNI_OPERATOR and result.serial in (r["detail"] or ""))
    assert (record["operation"], record["target"], record["terminal"], record["outcome"]) == \
        ("kiosk issue", app_id, DEFAULT_KIOSK_ID, "ok")
    # no personal data: not in the history, not in the trail (the 個人番号 was printed on this one)
    text = json.dumps([_history(home), _trail(home)], ensure_ascii=False)
    for value in personal:
        assert value not in text


def _raw_post(url: str, path: str, doc: dict, *, kiosk_id: str, key: bytes) -> tuple[int, dict]:
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=20)
    try:
        body = json.dumps(doc).encode()
        conn.request("POST", path, body, {"Content-Type": "application/json", "X-Kiosk-Id": kiosk_id,
                                          "X-Kiosk-Mac": request_mac(key, "POST", path, body).hex()})
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def _auth_der(card) -> bytes:
    return CardImage.load(card).application("jpki").efs[0x000A].data


def test_centre_refusals_are_audited_under_service_centre(holder):
    home, app_id, card, personal = holder
    key = load_or_create_kiosk_key(home)
    services = services_from_home(home, clock=SettableClock(T))
    try:
        url = services.centre_url

        def attempt(**fields):
            status, session = _raw_post(url, SESSION_PATH, {"method": "shin"}, kiosk_id=DEFAULT_KIOSK_ID, key=key)
            assert status == 200
            doc = {"method": "shin", "document": "zei", "nonce": session["nonce"], **fields}
            return _raw_post(url, ISSUE_PATH, doc, kiosk_id=DEFAULT_KIOSK_ID, key=key)

        before = len(_trail(home))
        genuine = base64.b64encode(_auth_der(card)).decode()
        # the holder's genuine certificate, but not signed by the card: a failed access attempt on that card
        assert attempt(certificate=genuine, signature=base64.b64encode(bytes(256)).decode())[1]["reason"] == \
            "signature-invalid"
        # not a certificate at all: refused, nobody to name
        assert attempt(certificate=base64.b64encode(b"garbage").decode(), signature="")[1]["reason"] == "cert-invalid"
        # a replayed challenge
        status, session = _raw_post(url, SESSION_PATH, {"method": "shin"}, kiosk_id=DEFAULT_KIOSK_ID, key=key)
        replay = {"method": "shin", "document": "zei", "nonce": session["nonce"], "certificate": genuine,
                  "signature": ""}
        _raw_post(url, ISSUE_PATH, replay, kiosk_id=DEFAULT_KIOSK_ID, key=key)
        assert _raw_post(url, ISSUE_PATH, replay, kiosk_id=DEFAULT_KIOSK_ID, key=key)[1]["reason"] == \
            "challenge-replayed"
        # malformed (bad base64): a 400, deliberately not audited (no person, no attempt on a card)
        status, answer = attempt(certificate="%%%", signature="")
        assert (status, answer["reason"]) == (400, "bad-request")
    finally:
        services.stop()
    new = _trail(home)[before:]
    assert [(r["operator"], r["terminal"], r["operation"], r["outcome"], r["reason"], r["target"]) for r in new] == [
        (CENTRE_OPERATOR, DEFAULT_KIOSK_ID, "kiosk authenticate", "refused", "signature-invalid", app_id),
        (CENTRE_OPERATOR, DEFAULT_KIOSK_ID, "kiosk authenticate", "refused", "cert-invalid", None),
        (CENTRE_OPERATOR, DEFAULT_KIOSK_ID, "kiosk authenticate", "refused", "signature-invalid", app_id),
        (CENTRE_OPERATOR, DEFAULT_KIOSK_ID, "kiosk authenticate", "refused", "challenge-replayed", app_id),
    ]
    assert all(json.loads(r["detail"]) == {"method": "shin", "document": "zei"} for r in new)


def test_a_hostile_kiosk_id_gets_a_4xx_and_forges_no_record(holder):
    home, app_id, card, personal = holder
    key = load_or_create_kiosk_key(home)
    services = services_from_home(home, clock=SettableClock(T))
    hostile = "TEST-KIOSK-0001\x01 service:centre"
    try:
        before = _trail(home)
        # unknown to the centre: refused before anything (401), whatever it holds
        status, answer = _raw_post(services.centre_url, ISSUE_PATH, {"method": "shin"}, kiosk_id=hostile, key=key)
        assert (status, answer["reason"]) == (401, "kiosk-auth")
        # even one registered under such an id (a misconfiguration) cannot write it into the trail
        services.centre.kiosk_keys[hostile] = key
        status, answer = _raw_post(services.centre_url, ISSUE_PATH,
                                   {"method": "shin", "document": "zei", "nonce": "AAAA", "certificate": "AAAA",
                                    "signature": ""}, kiosk_id=hostile, key=key)
        assert (status, answer["reason"]) == (400, "bad-request")
        # and the service itself, called with a newline in the id (no HTTP header can carry one)
        for forged in ("TEST-KIOSK-0001\n2026-03-02 officer@cli audit ok", "", " x", "K" * 65):
            with pytest.raises(Refusal) as info:
                services.centre.issue(forged, {"method": "shin", "document": "zei"})
            assert info.value.reason == "bad-request"
        assert _trail(home) == before
    finally:
        services.stop()


def test_worker_processes_write_one_history_and_the_audit_verifies(holder, issue_staff, monkeypatch):
    home, app_id, card, personal = holder
    clock = SettableClock(T)
    stack = kiosk_stack_pool(home, db=None, clock=clock, host="127.0.0.1", centre_port=0, workers=2)
    stack.pool.start()
    results, errors = [], []

    def customer():
        try:
            for _ in range(2):   # a kiosk of its own each time: new connections, spread over the workers
                results.append(_issue(_kiosk(stack.centre_url, home, clock), card, document="juminhyo"))
        except Exception as exc:  # noqa: BLE001 — reported below
            errors.append(exc)
    try:
        before = {e["serial"] for e in _history(home)}
        threads = [threading.Thread(target=customer) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(240)
        key = load_or_create_kiosk_key(home)
        # and a refusal from a worker, in the same chain
        status, session = _raw_post(stack.centre_url, SESSION_PATH, {"method": "shin"}, kiosk_id=DEFAULT_KIOSK_ID,
                                    key=key)
        assert _raw_post(stack.centre_url, ISSUE_PATH,
                         {"method": "shin", "document": "zei", "nonce": session["nonce"],
                          "certificate": base64.b64encode(_auth_der(card)).decode(), "signature": ""},
                         kiosk_id=DEFAULT_KIOSK_ID, key=key)[1]["reason"] == "signature-invalid"
    finally:
        stack.pool.stop()
    assert errors == [] and len(results) == 6
    new = [e for e in _history(home) if e["serial"] not in before]
    assert sorted(e["serial"] for e in new) == sorted(r.serial for r in results)
    trail = _trail(home)
    serials = {e["serial"] for e in new}
    issued = [r for r in trail if r["operator"] == MUNI_OPERATOR and json.loads(r["detail"])["serial"] in serials]
    assert len(issued) == 6 and {r["target"] for r in issued} == {app_id}
    assert trail[-1]["operator"] == CENTRE_OPERATOR and trail[-1]["reason"] == "signature-invalid"
    verified = _verify(home, issue_staff, monkeypatch)
    assert verified.stdout.startswith("audit trail intact:")
    # the security officer's review finds each service by its identity (issue audit --by)
    when = (T + _dt.timedelta(hours=1)).isoformat()
    by_centre = json.loads(run_issue("audit", "--by", CENTRE_OPERATOR, "--json", "--at", when).stdout)
    assert by_centre and {r["operator"] for r in by_centre} == {CENTRE_OPERATOR}
    assert by_centre[-1]["reason"] == "signature-invalid"
    by_muni = json.loads(run_issue("audit", "--by", MUNI_OPERATOR, "--json", "--at", when).stdout)
    assert {r["id"] for r in issued} <= {r["id"] for r in by_muni}


def test_in_memory_history_has_the_stores_interface():
    """The explicit in-process history (records.py) answers entries() as the store's does."""
    from mynaemu.issuance.store import KioskIssue

    history = MemoryKioskHistory()
    at = _dt.datetime(2026, 3, 2, 12, 0, tzinfo=JST)
    for i, code in enumerate(("13221", "13222", "13221")):
        history.record(KioskIssue(at=at + _dt.timedelta(days=i), municipality_code=code, document="zei",
                                  method="genko", serial=f"S{i}", verification_code="V", fee=200,
                                  with_number=False, kiosk_id="K"))
    assert [e["serial"] for e in history.entries(municipality="13221")] == ["S0", "S2"]
    assert [e["serial"] for e in history.entries(since=at + _dt.timedelta(days=1))] == ["S1", "S2"]
    assert history.entries(until=at) == []
    assert history.entries()[0]["at"] == "2026-03-02T03:00:00+00:00"


def test_a_municipality_needs_a_history_chosen_explicitly(holder):
    from mynaemu.issuance.kiosk.directory import StoreDirectory
    from mynaemu.issuance.kiosk.keyfiles import load_or_create_signer
    from mynaemu.issuance.kiosk.municipality import MunicipalityServer

    home = holder[0]
    with pytest.raises(TypeError):
        MunicipalityServer("13221", load_or_create_signer(home, "13221"), StoreDirectory(home))
    with pytest.raises(TypeError):
        MunicipalityServer("13221", load_or_create_signer(home, "13221"), StoreDirectory(home), history=[])


def test_a_document_serial_never_reads_as_an_individual_number(monkeypatch):
    """The audit masks any run of 12 digits (a 個人番号): a serial holding one would lose its link
    between the audit record and the history row, so such a serial is never drawn."""
    from mynaemu.issuance.kiosk import municipality
    from mynaemu.issuance.store import scrub

    drawn = iter(["12345678", "9012ABCD", "0123ABCD", "EF456789"])   # token_hex(8) halves, upper-cased
    monkeypatch.setattr(municipality.secrets, "token_hex", lambda n: next(drawn) + next(drawn))
    assert municipality.document_serial() == "0123ABCDEF456789"
    monkeypatch.undo()
    assert all(scrub(s) == s for s in (municipality.document_serial() for _ in range(3000)))


def test_a_postgresql_backed_stack_keeps_the_history_there(tmp_path):
    """--db: the history and the services' records go into PostgreSQL, in one verified chain."""
    import itertools
    import random

    from mynaemu.issuance.lifecycle.workflow import Workflow
    from mynaemu.issuance.personas import DEFAULT_PINS, synthetic_identity
    from mynaemu.issuance.pki.keys import generate_rsa_key
    from tests.support.pg import fresh_pg_url

    with fresh_pg_url() as url:
        card = tmp_path / "pg-card.json"
        pool = itertools.cycle([generate_rsa_key(2048) for _ in range(3)])
        with Store(url) as store:
            wf = Workflow(store, operator="test", terminal="test", key_factory=lambda: next(pool))
            ident = synthetic_identity(random.Random(23), age=35, on=T.date())
            app_id = wf.apply(name=ident.name, birth=ident.birth, sex=ident.sex, address=ident.address,
                              at=T - _dt.timedelta(days=8))
            wf.generate(app_id, at=T - _dt.timedelta(days=1))
            wf.deliver(app_id, at=T - _dt.timedelta(hours=20), pins=dict(DEFAULT_PINS), identity_check="test",
                       write=lambda img: img.save(card))
        clock = SettableClock(T)
        services = services_from_home(tmp_path / "home", db=url, clock=clock)
        try:
            assert isinstance(services.centre.municipalities["13221"].history, StoreKioskHistory)
            result = _issue(_kiosk(services.centre_url, tmp_path / "home", clock), card, document="zei")
        finally:
            services.stop()
        with Store(url) as store:
            rows = store.kiosk_history()
            record = [r for r in store.audit_rows() if r["operator"] == MUNI_OPERATOR]
            assert store.verify_audit_chain()[1] is None
        assert [(r["serial"], r["application_id"], r["document"]) for r in rows] == [(result.serial, app_id, "zei")]
        assert [(r["target"], r["operation"]) for r in record] == [(app_id, "kiosk issue")]
